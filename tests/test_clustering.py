"""Stage 3: spectral clustering of (S + 1) / 2 and depth-ordered labels."""

import numpy as np
import pytest

from lorp.builtins.clustering import spectral_clusters
from lorp.errors import ConfigError, PluginError
from lorp.method.clustering import cluster_blocks, depth_ordered
from lorp.plugins.components import ClusteringAlgorithm


def block_matrix(sizes, within=0.9, across=0.1):
    n = sum(sizes)
    s = np.full((n, n), across)
    start = 0
    for size in sizes:
        s[start:start + size, start:start + size] = within
        start += size
    np.fill_diagonal(s, 1.0)
    return s


def test_depth_ordered_renumbers_by_first_appearance():
    assert depth_ordered(np.array([2, 2, 0, 1, 0])).tolist() == [0, 0, 1, 2, 1]


@pytest.mark.parametrize("sizes", [(3, 4), (2, 3, 4), (4, 2, 2, 3)])
def test_spectral_recovers_block_structure_in_depth_order(lorp_registry, sizes):
    s = block_matrix(sizes)
    labels = cluster_blocks(s, len(sizes), lorp_registry.clustering("spectral"), seed=0)
    expected = np.repeat(np.arange(len(sizes)), sizes)
    assert labels.tolist() == expected.tolist()


def test_spectral_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    assert spectral_clusters(s, 3, 7).tolist() == spectral_clusters(s, 3, 7).tolist()


@pytest.mark.parametrize("k", [1, 8, 0])
def test_k_out_of_range(lorp_registry, k):
    with pytest.raises(ConfigError, match="between 2 and 7"):
        cluster_blocks(block_matrix((3, 4)), k, lorp_registry.clustering("spectral"))


def test_algorithm_with_wrong_cluster_count_is_rejected():
    lazy = ClusteringAlgorithm("lazy", lambda s, k, seed: np.zeros(len(s), dtype=int))
    with pytest.raises(PluginError, match="returned 1 clusters, expected 2"):
        cluster_blocks(block_matrix((3, 4)), 2, lazy)
