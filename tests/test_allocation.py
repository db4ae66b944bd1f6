"""LoRP two-stage allocation (eqs. 8-11) on hand-made matrices with hand-worked answers."""

import numpy as np
import pytest

from lorp.builtins.allocation import lorp_allocate
from lorp.errors import ConfigError, PluginError
from lorp.method.allocation import allocate, mean_pairwise, redundancy
from lorp.plugins.components import AllocationRequest, AllocationStrategy, Removal
from lorp.testing import symmetric_matrix as sym


def run(s, labels, budget, protected):
    req = AllocationRequest(s, np.array(labels), budget, frozenset(protected))
    return [r.block for r in lorp_allocate(req)], lorp_allocate(req)


# Two clusters {0,1,2} {3,4,5}; r(1)=.8, r(2)=.75, r(3)=.55, r(4)=.5 (0 and 5 protected).
S2 = sym(6, {(0, 1): .9, (0, 2): .8, (1, 2): .7, (3, 4): .6, (3, 5): .5, (4, 5): .4}, fill=.1)


def test_redundancy_is_mean_similarity_to_cluster_mates():
    r = redundancy(S2, np.array([0, 0, 0, 1, 1, 1]))
    np.testing.assert_allclose(r, [.85, .8, .75, .55, .5, .45])
    assert redundancy(S2, np.array([0, 1, 1, 1, 1, 1]))[0] == -np.inf  # alone in its cluster


def test_mean_pairwise():
    assert mean_pairwise(S2, [0, 1, 2]) == pytest.approx((.9 + .8 + .7) / 3)
    assert mean_pairwise(S2, [4]) == -np.inf


def test_two_clusters_stage_one_then_most_similar_cluster():
    order, removals = run(S2, [0, 0, 0, 1, 1, 1], 3, {0, 5})
    # stage 1: 1 (cluster 0), 3 (cluster 1); stage 2: cluster 0 keeps {0,2} (.8) vs cluster 1 {4,5} (.4)
    assert order == [1, 3, 2]
    assert [r.stage for r in removals] == [1, 1, 2]
    assert [r.cluster for r in removals] == [0, 1, 0]
    assert removals[0].score == pytest.approx(.8)


def test_exhausted_queue_passes_to_next_cluster():
    order, _ = run(S2, [0, 0, 0, 1, 1, 1], 4, {0, 5})
    assert order == [1, 3, 2, 4]


def test_three_clusters_residual_similarity_uses_members_left():
    s = sym(9, {(0, 1): .9, (0, 2): .6, (1, 2): .7,
                (3, 4): .5, (3, 5): .8, (4, 5): .6,
                (6, 7): .95, (6, 8): .3, (7, 8): .35}, fill=.2)
    order, removals = run(s, [0, 0, 0, 1, 1, 1, 2, 2, 2], 6, {0, 8})
    # queues: c0 [1, 2]; c1 [5, 3, 4]; c2 [7, 6]
    # stage 2: c0 {0,2}=.6 > c1 {3,4}=.5 > c2 {6,8}=.3 -> 2; then c1 .5 > c2 .3 -> 3; then c2 (c1 has one left) -> 6
    assert order == [1, 5, 7, 2, 3, 6]
    assert [r.stage for r in removals] == [1, 1, 1, 2, 2, 2]


def test_ties_go_to_shallower_block_and_lower_cluster():
    s = sym(8, {(i, j): .5 for i in range(4) for j in range(i + 1, 4)} |
            {(i, j): .5 for i in range(4, 8) for j in range(i + 1, 8)}, fill=.1)
    order, _ = run(s, [0, 0, 0, 0, 1, 1, 1, 1], 5, {0, 7})
    assert order == [1, 4, 2, 3, 5]


def test_all_minus_infinity_picks_lowest_cluster_with_a_queue():
    s = sym(6, {(0, 1): .7, (2, 3): .7, (4, 5): .7}, fill=.1)
    order, _ = run(s, [0, 0, 1, 1, 2, 2], 5, set())
    # stage 1: 0, 2, 4; then every cluster has one member left (-inf): lowest index first
    assert order == [0, 2, 4, 1, 3]


def test_budget_smaller_than_k_serves_clusters_in_depth_order():
    s = sym(6, {(0, 1): .7, (2, 3): .7, (4, 5): .99}, fill=.1)
    order, removals = run(s, [0, 0, 1, 1, 2, 2], 2, {0, 5})
    assert order == [1, 2]
    assert all(r.stage == 1 for r in removals)


def test_protected_blocks_are_never_chosen():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    for budget in range(1, 9):
        order, _ = run(s, [0, 0, 0, 1, 1, 1, 2, 2, 2, 2], budget, {0, 9})
        assert len(set(order)) == budget and not {0, 9} & set(order)


@pytest.mark.parametrize("budget", [0, -1, 5])
def test_bad_budget_is_a_clear_error(budget):
    strategy = AllocationStrategy("lorp", lorp_allocate)
    req = AllocationRequest(S2, np.array([0, 0, 0, 1, 1, 1]), budget, frozenset({0, 5}))
    with pytest.raises(ConfigError, match="budget"):
        allocate(req, strategy)


def test_strategy_returning_a_protected_block_is_rejected():
    bad = AllocationStrategy("bad", lambda req: [Removal(0)])
    req = AllocationRequest(S2, None, 1, frozenset({0}))
    with pytest.raises(PluginError, match="protected"):
        allocate(req, bad)
