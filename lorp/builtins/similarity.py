"""Builtin similarity metrics from the residual stream.

* ``cosine``: token-wise cosine between block inputs, ``[N, N]`` (LoRP eqs. 3-4).
* ``stream-cosine``: the same over all ``N + 1`` residual-stream states (block
  inputs and the last block's output), ``[N + 1, N + 1]``. Block Influence
  (ShortGPT) is ``1 - C[i, i + 1]``; LLM-Streamline scores spans by ``C[s, s + n]``.
* ``angular-distance``: Gromov et al.'s ``arccos(cos) / pi`` on each sequence's
  last token, averaged over sequences, ``[N + 1, N + 1]`` (a distance: 0 = same).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..plugins.components import SimilarityMetric
from ..plugins.hookspecs import hookimpl


class CosineAccumulator:
    """Streaming mean token-wise cosine similarity between block inputs.

    For blocks ``i, j`` and calibration tokens ``t`` (padding excluded),
    ``S[i, j] = mean_t <x_i,t / |x_i,t|, x_j,t / |x_j,t|>`` where ``x_i,t`` is the
    input hidden state of block ``i`` (LoRP paper, eqs. 3-4). Per batch the
    normalised states are multiplied in float32 and summed into a float64
    ``[N, N]`` total, so memory does not grow with the number of batches.
    """

    def __init__(self, num_blocks: int, include_output: bool = False):
        self.num_blocks = num_blocks
        self.size = num_blocks + int(include_output)
        self._sum = np.zeros((self.size, self.size), dtype=np.float64)
        self._tokens = 0

    def update(self, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one batch. ``hidden``: ``[N + 1, B, T, H]`` float; ``mask``: ``[B, T]`` bool."""
        mask = mask.bool()
        if bool(mask.all()):
            x = hidden[: self.size].flatten(1, 2)  # [N (+1), B*T, H], a view: no padding to drop
        else:
            x = hidden[: self.size][:, mask]  # [N (+1), M, H], real tokens only
        if x.shape[1] == 0:
            return
        x = F.normalize(x.float(), dim=-1).reshape(self.size, -1)
        self._sum += (x @ x.T).double().cpu().numpy()
        self._tokens += int(mask.sum())

    def result(self) -> np.ndarray:
        """Return ``S`` as float64 ``[N, N]`` (``[N + 1, N + 1]`` with the output): symmetric, diagonal exactly 1.

        Raises:
            RuntimeError: no token was accumulated.
        """
        if self._tokens == 0:
            raise RuntimeError("cosine similarity: no calibration tokens were seen")
        s = self._sum / self._tokens
        s = (s + s.T) / 2
        np.fill_diagonal(s, 1.0)
        return s


def stream_cosine(num_blocks: int) -> CosineAccumulator:
    """Cosine accumulator over all ``N + 1`` residual-stream states."""
    return CosineAccumulator(num_blocks, include_output=True)


class AngularDistanceAccumulator:
    """Mean angular distance between residual-stream states at each sequence's last token.

    ``D[l, m] = mean over sequences of arccos(clamp(cos(x_l, x_m), -1, 1)) / pi``
    (Gromov et al. 2024, arXiv 2403.17887, eq. 7), where ``x_l`` is the input of
    block ``l`` (``x_N`` the last block's output). Returns float64
    ``[N + 1, N + 1]`` with values in ``[0, 1]`` and a zero diagonal.
    """

    def __init__(self, num_blocks: int):
        self.size = num_blocks + 1
        self._sum = np.zeros((self.size, self.size), dtype=np.float64)
        self._sequences = 0

    def update(self, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """``hidden``: ``[N + 1, B, 1, H]`` (last tokens); ``mask``: ``[B, 1]``."""
        keep = mask[:, -1].bool()
        x = F.normalize(hidden[:, keep, -1].double(), dim=-1)      # [N+1, B', H]
        cos = torch.einsum("ibh,jbh->bij", x, x).clamp(-1.0, 1.0)  # [B', N+1, N+1]
        self._sum += (torch.arccos(cos) / torch.pi).sum(0).cpu().numpy()
        self._sequences += int(keep.sum())

    def result(self) -> np.ndarray:
        if self._sequences == 0:
            raise RuntimeError("angular distance: no calibration sequences were seen")
        d = self._sum / self._sequences
        d = (d + d.T) / 2
        np.fill_diagonal(d, 0.0)
        return d


@hookimpl
def lorp_register_similarity_metrics(register):
    register(
        SimilarityMetric(
            name="cosine",
            create=CosineAccumulator,
            needs="all_tokens",
            version="1",
            description="mean token-wise cosine similarity between block inputs",
            source="LoRP (arXiv 2605.27786), eqs. 3-4",
        )
    )
    register(
        SimilarityMetric(
            name="stream-cosine",
            create=stream_cosine,
            needs="all_tokens",
            states="stream",
            version="1",
            description="token-wise cosine between all residual-stream states (block inputs + last output)",
            source="ShortGPT Block Influence (arXiv 2403.03853); LLM-Streamline (ICLR 2025)",
        )
    )
    register(
        SimilarityMetric(
            name="angular-distance",
            create=AngularDistanceAccumulator,
            needs="last_token",
            states="stream",
            version="1",
            description="arccos(cos)/pi between residual-stream states at the last token (a distance)",
            source="Gromov et al. 2024 (arXiv 2403.17887), eq. 7",
        )
    )
