"""Example plugin: contiguous segmentation of blocks (every cluster a run of consecutive blocks).

Spectral clustering may group blocks that are far apart in depth. This plugin
keeps depth order by construction: it splits blocks ``0..N-1`` into ``k``
consecutive segments minimising the total within-segment sum of squares of the
unit-normalised representations. For unit vectors ``|x_i - x_j|^2 = 2 (1 - S[i, j])``,
so a segment C costs ``sum_{i<j in C} 2 (1 - S[i, j]) / |C|`` (the k-means
objective restricted to contiguous groups). The optimum is found exactly by
dynamic programming in ``O(k N^2)`` (Fisher 1958, "On Grouping for Maximum
Homogeneity", JASA 53:789-798).

Use: ``lorp prune --clustering contiguous ...`` or notebook parameter ``clustering = "contiguous"``.
"""

from __future__ import annotations

import numpy as np

import lorp

__version__ = "1.0"


def segment_costs(similarity: np.ndarray) -> np.ndarray:
    """``cost[a, b]`` for the segment of blocks ``a..b`` (inclusive): within-segment SS, ``[N, N]``."""
    s = np.asarray(similarity, dtype=np.float64)
    n = s.shape[0]
    dissim = 2.0 * (1.0 - s)
    cost = np.full((n, n), np.inf)
    for a in range(n):
        pair_sum = 0.0  # sum of dissim[i, j] over a <= i < j <= b, grown one block at a time
        for b in range(a, n):
            pair_sum += dissim[a:b, b].sum()
            cost[a, b] = pair_sum / (b - a + 1)
    return cost


def contiguous_segments(similarity: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Optimal split of blocks into ``k`` consecutive segments; int64 labels ``[N]`` (0..k-1 by depth).

    ``seed`` is unused (the optimum is exact); ties go to the earliest split.
    """
    cost = segment_costs(similarity)
    n = cost.shape[0]
    best = np.full((k + 1, n + 1), np.inf)   # best[c, m]: first m blocks in c segments
    cut = np.zeros((k + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for c in range(1, k + 1):
        for m in range(c, n + 1):
            options = [best[c - 1, j] + cost[j, m - 1] for j in range(c - 1, m)]
            j = int(np.argmin(options))
            best[c, m], cut[c, m] = options[j], j + c - 1
    labels = np.empty(n, dtype=np.int64)
    m = n
    for c in range(k, 0, -1):
        j = cut[c, m]
        labels[j:m] = c - 1
        m = j
    return labels


@lorp.hookimpl
def lorp_register_clustering_algorithms(register):
    register(lorp.ClusteringAlgorithm(
        name="contiguous",
        cluster=contiguous_segments,
        version=__version__,
        description="optimal contiguous segmentation (within-segment sum of squares, DP)",
        source="Fisher 1958 (grouping for maximum homogeneity)",
    ))
