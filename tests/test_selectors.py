"""Our selector span-bi-nll: hand-computed candidates and pick on a small stream-cosine matrix."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lorp.builtins.selectors import SCORING_SAMPLES, SPANS, candidates, span_bi_nll, spans
from lorp.errors import ConfigError
from lorp.plugins.components import AllocationRequest
from lorp.plugins.registry import load_registry

# 6 blocks, 0 and 5 protected. Block Influence 1 - cos(h_i, h_{i+1}): 1 .2, 2 .5, 3 .1, 4 .3.
BI = {0: .9, 1: .2, 2: .5, 3: .1, 4: .3, 5: .9}
RUNS = {(1, 3): .55, (2, 4): .65, (3, 5): .8,  # runs of 2: cos(h_s, h_{s+2})
        (1, 4): .6, (2, 5): .7}  # runs of 3: cos(h_s, h_{s+3})


def stream() -> np.ndarray:
    c = np.full((7, 7), .3)
    np.fill_diagonal(c, 1.0)
    for i, b in BI.items():
        c[i, i + 1] = c[i + 1, i] = 1 - b
    for (i, j), v in RUNS.items():
        c[i, j] = c[j, i] = v
    return c


def request(budget, nll=None, protected=frozenset({0, 5})):
    return AllocationRequest(np.eye(6), None, budget, protected, statistics={"stream-cosine": stream()}, nll=nll)


def test_spans_are_ranked_by_the_similarity_of_their_input_and_output():
    assert spans(request(3), 3) == [2, 1]  # cos(h2, h5) .7 > cos(h1, h4) .6
    assert spans(request(3), 2) == [3, 2, 1]  # .8 > .65 > .55
    assert spans(request(3), 5) == []  # every run of 5 holds block 0 or 5


def test_candidates_at_budget_3_by_hand():
    got = candidates(request(3))
    # 1. lowest BI: 3 (.1), 1 (.2), 4 (.3); 2. runs of 3: 2..4, then 1..3 (only two exist, SPANS = 3);
    # 3. r = 2: best run 3..4 plus the lowest-BI block outside it (1) = {1, 3, 4}, the first candidate again: dropped
    assert [blocks for _, blocks in got] == [(1, 3, 4), (2, 3, 4), (1, 2, 3)]
    assert got[0][0] == "lowest Block Influence" and got[1][0].startswith("span 2..4 (run #1")
    assert SPANS == 3
    assert load_registry().allocation("span-bi-nll").nll_samples == SCORING_SAMPLES == 4


def test_the_candidate_of_lowest_calibration_nll_is_removed():
    weights = {1: .5, 2: .1, 3: .2, 4: .3}
    calls = []

    def nll(removed):
        calls.append(removed)
        return sum(weights[b] for b in removed)

    removals = span_bi_nll(request(3, nll))
    # NLL: {1, 3, 4} 1.0, {2, 3, 4} .6, {1, 2, 3} .8 -> {2, 3, 4}
    assert [r.block for r in removals] == [2, 3, 4]
    assert removals[0].score == pytest.approx(.6) and "best of 3 candidates" in removals[0].reason
    assert calls == [frozenset({1, 3, 4}), frozenset({2, 3, 4}), frozenset({1, 2, 3})]  # each scored once


def test_ties_go_to_the_earlier_candidate():
    removals = span_bi_nll(request(3, lambda removed: 1.0))
    assert [r.block for r in removals] == [1, 3, 4]  # all equal: the lowest-BI set, listed first


def test_without_a_model_or_with_too_large_a_budget_it_says_what_to_do():
    with pytest.raises(ConfigError, match="needs the model"):
        span_bi_nll(request(3))
    with pytest.raises(ConfigError, match="only 4 unprotected blocks of 6, fewer than the budget 5"):
        candidates(request(5))


def test_registered_as_a_builtin_that_scores_with_the_model():
    registry = load_registry()
    s = registry.allocation("span-bi-nll")
    assert s.needs_model and not s.uses_clusters and s.needs == ("stream-cosine",)
    assert registry.provenance("allocation", "span-bi-nll")["plugin"] == "lorp.builtins.selectors"


@settings(max_examples=60, deadline=None)
@given(n=st.integers(4, 14), seed=st.integers(0, 10_000), data=st.data())
def test_the_pick_is_the_best_scored_candidate_and_every_candidate_is_valid(n, seed, data):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, size=(n + 1, n + 1))
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    protected = frozenset({0, n - 1})
    budget = data.draw(st.integers(1, n - 2))
    weights = rng.uniform(0.1, 1.0, n)
    nll = lambda removed: float(sum(weights[b] for b in removed))  # noqa: E731
    req = AllocationRequest(np.eye(n), None, budget, protected, statistics={"stream-cosine": c}, nll=nll)
    family = candidates(req)
    assert 1 <= len(family) <= SPANS + budget - 1 and len({b for _, b in family}) == len(family)
    for _, blocks in family:
        assert len(set(blocks)) == budget and not protected & set(blocks)
    picked = tuple(r.block for r in span_bi_nll(req))
    assert picked in [b for _, b in family]
    assert nll(frozenset(picked)) == min(nll(frozenset(b)) for _, b in family)


def test_a_candidate_with_a_nan_nll_never_wins():
    scores = {frozenset({1, 3, 4}): float("nan"), frozenset({2, 3, 4}): 2.0, frozenset({1, 2, 3}): 1.0}
    assert [r.block for r in span_bi_nll(request(3, scores.__getitem__))] == [1, 2, 3]
    with pytest.raises(ConfigError, match="not finite"):
        span_bi_nll(request(3, lambda removed: float("inf")))
