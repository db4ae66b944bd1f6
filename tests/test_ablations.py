"""LoRP ablations as registered strategies: hand-computed picks on small matrices."""

import numpy as np
import pytest

from lorp.builtins.ablations import block_influence_in_clusters, protect_last, residual_only
from lorp.builtins.allocation import lorp_allocate
from lorp.errors import ConfigError
from lorp.method.selection import select_blocks
from lorp.plugins.components import AllocationRequest
from lorp.plugins.registry import load_registry
from lorp.testing import symmetric_matrix as sym

# Two clusters {0,1,2} {3,4,5}; r(1)=.8, r(2)=.75, r(3)=.55, r(4)=.5 (0 and 5 protected); see test_allocation.
S2 = sym(6, {(0, 1): .9, (0, 2): .8, (1, 2): .7, (3, 4): .6, (3, 5): .5, (4, 5): .4}, fill=.1)
LABELS = np.array([0, 0, 0, 1, 1, 1])
# Three clear clusters of three blocks (test_cli): K = 3 at budget 6 removes [1, 2, 3, 5, 6, 7].
S3 = sym(9, {(0, 1): .9, (0, 2): .6, (1, 2): .7, (3, 4): .5, (3, 5): .8, (4, 5): .6,
             (6, 7): .95, (6, 8): .3, (7, 8): .35}, fill=.2)


def request(budget, **kw):
    return AllocationRequest(S2, LABELS, budget, frozenset({0, 5}), **kw)


def test_every_ablation_is_registered_and_cites_what_it_changes():
    registry = load_registry()
    names = {"lorp-k2", "lorp-k3", "lorp-k4", "lorp-residual", "lorp-rls-noemb", "lorp-bi", "lorp-protect-last4"}
    assert names <= set(registry.components["allocation"])
    for name in names:
        strategy = registry.allocation(name)
        assert strategy.uses_clusters and strategy.source.startswith("ablation of LoRP (arXiv 2605.27786): ")
        assert registry.provenance("allocation", name)["plugin"] == "lorp.builtins.ablations"


def test_residual_only_skips_the_coverage_stage():
    # LoRP: stage 1 takes 1 (cluster 0) and 3 (cluster 1). Without it: cluster 0's residual similarity
    # (.9 + .8 + .7) / 3 = .8 beats cluster 1's .5 twice: 1, then 2 ({0, 2} keeps .8).
    assert [r.block for r in lorp_allocate(request(2))] == [1, 3]
    removals = residual_only(request(2))
    assert [r.block for r in removals] == [1, 2] and [r.stage for r in removals] == [2, 2]


def test_block_influence_orders_blocks_inside_clusters():
    # BI = 1 - cos(input, output): block 1 .5, block 2 .1, block 3 .3, block 4 .2 -> queues c0 [2, 1], c1 [4, 3]
    bi = {0: .9, 1: .5, 2: .1, 3: .3, 4: .2, 5: .9}
    stream = np.full((7, 7), .5)
    np.fill_diagonal(stream, 1.0)
    for i, b in bi.items():
        stream[i, i + 1] = stream[i + 1, i] = 1 - b
    removals = block_influence_in_clusters(request(3, statistics={"stream-cosine": stream}))
    # stage 1: 2 (c0), 4 (c1); stage 2: c0 keeps {0, 1} (.9) > c1 {3, 5} (.5) -> 1
    assert [r.block for r in removals] == [2, 4, 1]
    assert removals[0].score == pytest.approx(-.1)


def test_protect_last_keeps_the_deepest_blocks():
    # 6 blocks, the last 4 (2..5) protected too: only block 1 is left
    assert [r.block for r in protect_last(request(1))] == [1]
    with pytest.raises(ConfigError, match="leaves 1 removable blocks of 6, fewer than the budget 2"):
        protect_last(request(2))


def test_fixed_k_replaces_the_rls_rule():
    plain = select_blocks(S3, 6)  # RLS 1.70 -> K = 2
    assert (plain.k, plain.k_source) == (2, "rls")
    fixed = select_blocks(S3, 6, allocation="lorp-k3")
    assert (fixed.k, fixed.k_source) == (3, "strategy lorp-k3")
    assert fixed.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2] and fixed.pruned == [1, 2, 3, 5, 6, 7]
    assert select_blocks(S3, 6, allocation="lorp-k3", k=2).k == 2  # --k still overrides


def test_rls_without_the_embedding_output():
    # block 0 orthogonal to the rest, every other pair .6: mean over 15 pairs = 10 * .6 / 15 = .4 -> RLS 1.32, K 2;
    # without row and column 0 the mean is .6 -> RLS 0.737 -> K 3
    s = sym(6, {(i, j): .6 for i in range(1, 6) for j in range(i + 1, 6)}, fill=0.0)
    assert select_blocks(s, 2).k == 2
    sel = select_blocks(s, 2, allocation="lorp-rls-noemb")
    assert (sel.k, sel.k_source) == (3, "strategy lorp-rls-noemb")
    assert sel.rls == pytest.approx(-np.log2(.4))  # the reported RLS stays the paper's
