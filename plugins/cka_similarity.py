"""Example plugin: linear CKA between block inputs, computed streaming (minibatch CKA).

Linear Centered Kernel Alignment (Kornblith et al., ICML 2019, "Similarity of
Neural Network Representations Revisited") compares two sets of representations
of the same tokens, invariant to orthogonal transforms and isotropic scaling.
Holding all tokens is not streaming, so this uses minibatch CKA (Nguyen, Raghu
& Kornblith, ICLR 2021, "Do Wide and Deep Networks Learn the Same Things?"):
the unbiased HSIC estimator (Song et al., JMLR 2012) is averaged over
minibatches of tokens (each calibration sequence, cut into chunks of at most
``MAX_CHUNK`` tokens), and

    CKA[i, j] = mean HSIC_1(K_i, K_j) / sqrt(mean HSIC_1(K_i, K_i) * mean HSIC_1(K_j, K_j))

with K_i = X_i X_i^T the linear Gram matrix of block i's inputs. Memory is one
``[N, n, n]`` Gram stack per chunk plus an ``[N, N]`` running sum.

Use: ``lorp prune --similarity cka ...`` or notebook parameter ``similarity = "cka"``.
"""

from __future__ import annotations

import numpy as np
import torch

import lorp

__version__ = "1.0"
MAX_CHUNK = 512
MIN_CHUNK = 4  # the unbiased estimator needs n >= 4


def hsic_matrix(x: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC_1 between every pair of blocks for one minibatch.

    Args:
        x: float64 ``[N, n, H]``: n tokens' representations at N blocks, ``n >= 4``.
    Returns:
        float64 ``[N, N]`` with HSIC_1(K_i, K_j) (Song et al. 2012, eq. 5).
    """
    n_blocks, n, _ = x.shape
    gram = x @ x.transpose(1, 2)                       # [N, n, n]
    gram.diagonal(dim1=1, dim2=2).zero_()              # K~: zero diagonal
    flat = gram.reshape(n_blocks, -1)
    trace_term = flat @ flat.T                         # tr(K~_i K~_j)
    sums = flat.sum(dim=1)                             # 1^T K~ 1
    rows = gram.sum(dim=2)                             # K~ 1
    cross = rows @ rows.T                              # 1^T K~_i K~_j 1
    hsic = trace_term + torch.outer(sums, sums) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross
    return hsic / (n * (n - 3))


class MinibatchCKA:
    """Streaming minibatch linear CKA between block inputs (``[N, N]``, unit diagonal)."""

    def __init__(self, num_blocks: int):
        self.num_blocks = num_blocks
        self._hsic = torch.zeros(num_blocks, num_blocks, dtype=torch.float64)
        self._chunks = 0

    def update(self, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """``hidden``: ``[N + 1, B, T, H]``; ``mask``: ``[B, T]`` bool (real tokens)."""
        for b in range(hidden.shape[1]):
            x = hidden[: self.num_blocks, b][:, mask[b].bool()].double()  # [N, n, H]
            for lo in range(0, x.shape[1], MAX_CHUNK):
                chunk = x[:, lo:lo + MAX_CHUNK]
                if chunk.shape[1] >= MIN_CHUNK:
                    self._hsic += hsic_matrix(chunk).cpu()
                    self._chunks += 1

    def result(self) -> np.ndarray:
        if self._chunks == 0:
            raise RuntimeError(f"minibatch CKA needs sequences of at least {MIN_CHUNK} real tokens")
        h = self._hsic.numpy() / self._chunks
        diag = np.sqrt(np.clip(np.diag(h), 1e-300, None))
        cka = h / np.outer(diag, diag)
        cka = (cka + cka.T) / 2
        np.fill_diagonal(cka, 1.0)
        return cka


@lorp.hookimpl
def lorp_register_similarity_metrics(register):
    register(lorp.SimilarityMetric(
        name="cka",
        create=MinibatchCKA,
        needs="all_tokens",
        version=__version__,
        description="linear CKA between block inputs (minibatch, unbiased HSIC)",
        source="Kornblith et al. 2019; minibatch form: Nguyen et al. 2021",
    ))
