"""Property-based tests of the selection contract, for every registered allocation strategy.

For random valid similarity matrices, protected sets, budgets and seeds, every
strategy (LoRP, the baselines and the example plugins in ``plugins/``) returns
exactly ``budget`` distinct, unprotected, in-range blocks; invalid requests are
refused with :class:`ConfigError` and never produce a plan.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lorp.errors import ConfigError
from lorp.method.selection import select_blocks
from lorp.plugins.registry import PluginSettings, load_registry

REGISTRY = load_registry(PluginSettings())  # builtins and the example plugins of plugins/
STRATEGIES = sorted(REGISTRY.components["allocation"])
#: (allocation, clustering): strategies that cluster are tried with every registered clustering algorithm.
COMBINATIONS = [(a, c) for a in STRATEGIES for c in sorted(REGISTRY.components["clustering"])
                if REGISTRY.allocation(a).uses_clusters or c == "spectral"]
#: Strategies that remove one contiguous span: they may refuse when no unprotected run of `budget` blocks exists.
SPANS = {"streamline", "angular"}


def residual_stream(n: int, seed: int) -> np.ndarray:
    """Cosine matrix of ``n + 1`` random unit vectors in 16 dimensions drifting with depth: ``[n + 1, n + 1]``."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n + 1, 16)) * rng.uniform(0.1, 2.0, size=(n + 1, 1))
    states = np.cumsum(steps, axis=0)
    states /= np.linalg.norm(states, axis=1, keepdims=True)
    c = np.clip(states @ states.T, -1.0, 1.0)
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    return c


def request(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    stream = residual_stream(n, seed)
    stats = {"stream-cosine": stream, "angular-distance": np.arccos(np.clip(stream, -1, 1)) / np.pi,
             "cosine": stream[:n, :n]}
    return stream[:n, :n].copy(), stats


def fake_nll(weights: np.ndarray):
    """Calibration NLL stand-in for SLEB: grows with the removed blocks' weights (and their order in depth)."""
    return lambda removed: float(2.0 + sum(weights[b] * (1 + 0.01 * b) for b in removed))


def longest_free_run(n: int, protected: set[int]) -> int:
    best = run = 0
    for b in range(n):
        run = 0 if b in protected else run + 1
        best = max(best, run)
    return best


@st.composite
def valid_requests(draw):
    n = draw(st.integers(5, 24))
    matrix_seed = draw(st.integers(0, 2**32 - 1))
    protected = draw(st.sets(st.integers(-n, n - 1), max_size=n // 2))
    prot = {p % n for p in protected}
    eligible = min(n - len(prot), n - 1)
    budget = draw(st.integers(1, max(1, eligible)))
    seed = draw(st.integers(0, 2**32 - 1))
    return n, matrix_seed, sorted(protected), prot, budget, seed


@pytest.mark.parametrize("strategy, clustering", COMBINATIONS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=valid_requests())
def test_exactly_budget_distinct_unprotected_blocks(strategy, clustering, case):
    n, matrix_seed, protected, prot, budget, seed = case
    s, stats = request(n, matrix_seed)
    nll = fake_nll(np.random.default_rng(matrix_seed).uniform(0.1, 1.0, n))
    try:
        sel = select_blocks(s, budget, seed=seed, allocation=strategy, clustering=clustering, protected=protected,
                            statistics=stats, nll=nll, registry=REGISTRY,
                            healed_nll=lambda sets: [nll(frozenset(x)) for x in sets])
    except ConfigError as exc:
        # the only refusals allowed for a valid budget: no contiguous span of that length, or (naive `last`)
        # not enough unprotected blocks before the final one
        if strategy in SPANS:
            assert longest_free_run(n, prot) < budget, exc
        elif strategy == "last":
            assert len([b for b in range(n - 1) if b not in prot]) < budget, exc
        elif strategy == "lorp-protect-last4":
            assert n - len(prot | set(range(n - 4, n))) < budget, exc
        else:
            raise
        return
    pruned = sel.pruned
    assert len(pruned) == budget
    assert len(set(pruned)) == budget
    assert not set(pruned) & prot
    assert all(0 <= b < n for b in pruned)
    assert sorted(sel.kept + pruned) == list(range(n))


@st.composite
def invalid_requests(draw):
    n = draw(st.integers(5, 24))
    kind = draw(st.sampled_from(["budget-too-large", "budget-below-one", "protected-out-of-range", "seed"]))
    protected, budget, seed = [0, -1], 1, 0
    if kind == "budget-too-large":
        protected = sorted(draw(st.sets(st.integers(0, n - 1), max_size=n - 1)))
        budget = draw(st.integers(min(n - len(protected), n - 1) + 1, n + 5))
    elif kind == "budget-below-one":
        budget = draw(st.integers(-5, 0))
    elif kind == "protected-out-of-range":
        protected = [draw(st.one_of(st.integers(n, 3 * n), st.integers(-3 * n, -n - 1)))]
    else:
        seed = draw(st.one_of(st.integers(-2**40, -1), st.integers(2**32, 2**40)))
    return n, draw(st.integers(0, 2**32 - 1)), protected, budget, seed


@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=25, deadline=None)
@given(case=invalid_requests())
def test_invalid_requests_are_refused_with_config_error(strategy, case):
    n, matrix_seed, protected, budget, seed = case
    s, stats = request(n, matrix_seed)
    with pytest.raises(ConfigError):
        select_blocks(s, budget, seed=seed, allocation=strategy, protected=protected, statistics=stats,
                      nll=fake_nll(np.ones(n)), registry=REGISTRY,
                      healed_nll=lambda sets: [float(len(x)) for x in sets])
