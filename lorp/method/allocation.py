"""Stage 4: spend the prune budget (LoRP paper, eqs. 8-11).

This module holds what every allocation strategy shares: budget checks, the
redundancy score of eq. 8, and validation of a strategy's answer. The
strategies themselves are plugins (builtin: :mod:`lorp.builtins.allocation`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import ConfigError, PluginError
from ..plugins.components import AllocationRequest, AllocationStrategy, Removal
from ..plugins.guard import plugin_code


def normalize_protected(protected: Iterable[int], num_blocks: int) -> frozenset[int]:
    """Map block indices (negative ones count from the end) into ``0..N-1``.

    Raises:
        ConfigError: an index is outside ``-N..N-1``.
    """
    out = set()
    for b in protected:
        b = int(b)
        if not -num_blocks <= b < num_blocks:
            raise ConfigError(f"protected block {b} does not exist: the model has {num_blocks} blocks (0..{num_blocks - 1})")
        out.add(b % num_blocks)
    return frozenset(out)


def check_budget(budget: int, num_blocks: int, protected: frozenset[int]) -> None:
    """Raise :class:`ConfigError` unless ``1 <= budget <= eligible blocks`` and at least one block stays.

    A model with every block removed is no model: even with nothing protected
    (``--protect ''``) the budget is at most ``N - 1``.
    """
    eligible = min(num_blocks - len(protected), num_blocks - 1)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise ConfigError(f"budget must be a whole number of blocks, got {budget!r}")
    if budget < 1:
        raise ConfigError(f"budget must be at least 1 block to remove, got {budget}")
    if budget > eligible:
        raise ConfigError(
            f"budget {budget} is larger than the {eligible} removable blocks "
            f"({num_blocks} blocks, {len(protected)} protected: {sorted(protected)}"
            f"{'; at least one block must stay' if eligible == num_blocks - 1 and not protected else ''}); "
            f"choose a budget of at most {eligible}"
        )


def check_seed(seed: object, what: str = "seed") -> int:
    """Return ``seed`` if it is a whole number in ``0 .. 2**32 - 1`` (what numpy and scikit-learn accept).

    Raises:
        ConfigError: otherwise.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= 2**32 - 1:
        raise ConfigError(f"{what} must be a whole number between 0 and 2**32 - 1 = {2**32 - 1}, got {seed!r}")
    return int(seed)


def redundancy(similarity: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Redundancy ``r(l)``: mean similarity of block ``l`` to the other members of its cluster.

    Args:
        similarity: float ``[N, N]``.
        labels: int ``[N]`` cluster labels.
    Returns:
        float64 ``[N]``; a block alone in its cluster gets ``-inf``.

    Source: LoRP paper, eq. 8 (members fixed before any pruning).
    """
    s = np.asarray(similarity, dtype=np.float64)
    labels = np.asarray(labels)
    r = np.full(len(labels), -np.inf)
    for l in range(len(labels)):  # noqa: E741  (l is the paper's layer index)
        mates = np.flatnonzero((labels == labels[l]) & (np.arange(len(labels)) != l))
        if len(mates):
            r[l] = s[l, mates].mean()
    return r


def mean_pairwise(similarity: np.ndarray, members: Iterable[int]) -> float:
    """Mean of ``S[i, j]`` over pairs ``i < j`` of ``members``; ``-inf`` for fewer than two.

    Source: LoRP paper, eq. 10 (residual intra-cluster similarity).
    """
    idx = np.asarray(sorted(members), dtype=np.int64)
    if len(idx) < 2:
        return -np.inf
    sub = np.asarray(similarity, dtype=np.float64)[np.ix_(idx, idx)]
    return float(sub[np.triu_indices(len(idx), k=1)].mean())


def allocate(request: AllocationRequest, strategy: AllocationStrategy) -> list[Removal]:
    """Run ``strategy`` on ``request`` and check its answer.

    Returns:
        the strategy's removals, in the order chosen.
    Raises:
        ConfigError: the budget is invalid for this model.
        PluginError: the strategy returned the wrong number of blocks, a
            duplicate, an out-of-range or a protected block.
    """
    check_budget(request.budget, request.num_blocks, request.protected)

    with plugin_code(f"allocation strategy {strategy.name!r}"):
        removals = list(strategy.allocate(request))
    if not all(isinstance(r, Removal) for r in removals):
        raise PluginError(f"allocation strategy {strategy.name!r} must return lorp.Removal entries, got "
                          f"{sorted({type(r).__name__ for r in removals})}")
    blocks = [r.block for r in removals]
    if not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in blocks):
        raise PluginError(f"allocation strategy {strategy.name!r} returned non-integer block indices: {blocks}")
    blocks = [int(b) for b in blocks]
    problem = None
    if len(blocks) != request.budget:
        problem = f"returned {len(blocks)} blocks for a budget of {request.budget}"
    elif len(set(blocks)) != len(blocks):
        problem = f"returned a block twice: {blocks}"
    elif any(not 0 <= b < request.num_blocks for b in blocks):
        problem = f"returned a block outside 0..{request.num_blocks - 1}: {blocks}"
    elif request.protected & set(blocks):
        problem = f"returned protected block(s) {sorted(request.protected & set(blocks))}"
    if problem:
        raise PluginError(f"allocation strategy {strategy.name!r} {problem}")
    return removals
