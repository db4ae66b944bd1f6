"""Builtin similarity metric: token-wise cosine between block inputs (LoRP eqs. 3-4)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..components import SimilarityMetric
from ..hookspecs import hookimpl


class CosineAccumulator:
    """Streaming mean token-wise cosine similarity between block inputs.

    For blocks ``i, j`` and calibration tokens ``t`` (padding excluded),
    ``S[i, j] = mean_t <x_i,t / |x_i,t|, x_j,t / |x_j,t|>`` where ``x_i,t`` is the
    input hidden state of block ``i`` (LoRP paper, eqs. 3-4). Per batch the
    normalised states are multiplied in float32 and summed into a float64
    ``[N, N]`` total, so memory does not grow with the number of batches.
    """

    def __init__(self, num_blocks: int):
        self.num_blocks = num_blocks
        self._sum = np.zeros((num_blocks, num_blocks), dtype=np.float64)
        self._tokens = 0

    def update(self, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one batch. ``hidden``: ``[N + 1, B, T, H]`` float; ``mask``: ``[B, T]`` bool."""
        x = hidden[: self.num_blocks][:, mask.bool()]  # [N, M, H], real tokens only
        if x.shape[1] == 0:
            return
        x = F.normalize(x.float(), dim=-1).reshape(self.num_blocks, -1)
        self._sum += (x @ x.T).double().cpu().numpy()
        self._tokens += int(mask.sum())

    def result(self) -> np.ndarray:
        """Return ``S`` as float64 ``[N, N]``: symmetric, diagonal exactly 1.

        Raises:
            RuntimeError: no token was accumulated.
        """
        if self._tokens == 0:
            raise RuntimeError("cosine similarity: no calibration tokens were seen")
        s = self._sum / self._tokens
        s = (s + s.T) / 2
        np.fill_diagonal(s, 1.0)
        return s


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
