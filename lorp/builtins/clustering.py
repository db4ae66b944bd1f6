"""Builtin clustering: spectral clustering of the affinity (S + 1) / 2 (LoRP eq. 7)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import SpectralClustering

from ..plugins.components import ClusteringAlgorithm
from ..plugins.hookspecs import hookimpl


def spectral_clusters(similarity: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster blocks by scikit-learn spectral clustering.

    Args:
        similarity: float64 ``[N, N]`` symmetric matrix with unit diagonal.
        k: number of clusters.
        seed: ``random_state`` of the eigensolver and k-means.
    Returns:
        int64 labels ``[N]`` in ``0..k-1`` (not yet depth-ordered).

    The affinity ``A = (S + 1) / 2`` maps cosines from ``[-1, 1]`` to ``[0, 1]``
    (diagonal 1); labels are assigned with k-means (LoRP paper, eq. 7).
    """
    affinity = np.clip((np.asarray(similarity, dtype=np.float64) + 1.0) / 2.0, 0.0, 1.0)
    np.fill_diagonal(affinity, 1.0)
    model = SpectralClustering(
        n_clusters=k, affinity="precomputed", assign_labels="kmeans", random_state=seed, n_init=10
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "graph is not fully connected" on toy inputs
        return model.fit_predict(affinity).astype(np.int64)


@hookimpl
def lorp_register_clustering_algorithms(register):
    register(
        ClusteringAlgorithm(
            name="spectral",
            cluster=spectral_clusters,
            version="1",
            description="spectral clustering of (S + 1) / 2, k-means label assignment (scikit-learn)",
            source="LoRP (arXiv 2605.27786), eq. 7",
        )
    )
