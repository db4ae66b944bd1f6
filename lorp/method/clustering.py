"""Stage 3: group blocks into K depth-ordered clusters (LoRP eq. 7).

The algorithm is a plugin (builtin: spectral); this module checks its answer
and renumbers clusters in depth order.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, PluginError
from ..plugins.components import ClusteringAlgorithm
from ..plugins.guard import plugin_code


def depth_ordered(labels: np.ndarray) -> np.ndarray:
    """Renumber labels by first appearance with depth.

    The cluster containing block 0 becomes 0, the next new label met going
    deeper becomes 1, and so on. Example: ``[2, 2, 0, 1, 0] -> [0, 0, 1, 2, 1]``.
    Returns int64 ``[N]``.
    """
    labels = np.asarray(labels)
    mapping: dict[int, int] = {}
    for lab in labels.tolist():
        mapping.setdefault(lab, len(mapping))
    return np.array([mapping[lab] for lab in labels.tolist()], dtype=np.int64)


def cluster_blocks(similarity: np.ndarray, k: int, algorithm: ClusteringAlgorithm, seed: int = 0) -> np.ndarray:
    """Cluster the ``N`` blocks into ``k`` depth-ordered clusters.

    Args:
        similarity: float64 ``[N, N]``.
        k: number of clusters, ``2 <= k <= N``.
        algorithm: the clustering component.
        seed: random seed passed to the algorithm.
    Returns:
        int64 labels ``[N]`` in ``0..k-1``, depth-ordered (:func:`depth_ordered`).
    Raises:
        ConfigError: ``k`` is out of range.
        PluginError: the algorithm returned labels of the wrong shape, type or
            range, not exactly ``k`` distinct clusters, or called ``sys.exit()``.
    """
    n = similarity.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise ConfigError(f"number of clusters K must be a whole number between 2 and {n} (the block count), got {k!r}")

    with plugin_code(f"clustering {algorithm.name!r}"):
        labels = np.asarray(algorithm.cluster(similarity, int(k), int(seed)))
    if labels.shape != (n,):
        raise PluginError(f"clustering {algorithm.name!r} returned labels of shape {labels.shape}, expected ({n},)")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= k:
        raise PluginError(f"clustering {algorithm.name!r} must return integer labels in 0..{k - 1}, got "
                          f"{labels.tolist()}")
    if len(set(labels.tolist())) != k:
        raise PluginError(f"clustering {algorithm.name!r} returned {len(set(labels.tolist()))} clusters, expected {k}")
    return depth_ordered(labels)
