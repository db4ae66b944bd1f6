"""Builtin LoRP ablations: each changes one part of the method and says which (arXiv 2605.27786).

They are allocation strategies like any other, selectable by name in ``lorp
select``, ``lorp prune``, ``lorp sweep`` and the study notebook:

=====================  ==========================================================================
``lorp-k2/3/4``        K fixed to 2, 3 or 4 instead of the RLS rule (eq. 6)
``lorp-residual``      no coverage stage (eq. 9): the whole budget by residual similarity (eqs. 10-11)
``lorp-rls-noemb``     RLS (eq. 5) without block 0's row and column (the embedding output), then eq. 6
``lorp-bi``            inside each cluster, lowest Block Influence first instead of redundancy (eq. 8)
``lorp-protect-last4`` the last 4 blocks protected as well (first and last stay protected)
=====================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import ConfigError
from ..method.locality import choose_k, representation_locality_score
from ..plugins.components import AllocationRequest, AllocationStrategy, Removal
from ..plugins.hookspecs import hookimpl
from .allocation import head, lorp_allocate, two_stage_allocate
from .baselines import block_influence

#: How many of the deepest blocks ``lorp-protect-last4`` keeps.
PROTECT_LAST = 4


def fixed_k(k: int):
    """``choose_k`` of an ablation that always clusters into ``k`` groups (replaces eq. 6)."""
    def choose(_similarity: np.ndarray) -> int:
        return k
    return choose


def k_without_embedding_output(similarity: np.ndarray) -> int:
    """K from the RLS of ``S[1:, 1:]``: block 0's input (the embedding output) left out of eq. 5.

    Block 0's input is nearly orthogonal to every later block's on the bundled
    models (|S[0, j]| <= 0.02 on SmolLM2-135M), which pulls the mean of S down and
    RLS up. Raises :class:`ConfigError` below 4 blocks (S[1:, 1:] needs 3).
    """
    s = np.asarray(similarity, dtype=np.float64)
    if s.shape[0] < 4:
        raise ConfigError(f"lorp-rls-noemb needs at least 4 blocks, got {s.shape[0]}")
    return choose_k(representation_locality_score(s[1:, 1:]))


def residual_only(request: AllocationRequest) -> list[Removal]:
    """LoRP without the coverage stage: every removal by eqs. 10-11 (the most redundant cluster's head)."""
    return two_stage_allocate(request, head, coverage=False)


def block_influence_in_clusters(request: AllocationRequest) -> list[Removal]:
    """LoRP's clusters and stages, but each cluster gives up its block of lowest Block Influence first.

    Block Influence ``BI = 1 - cos(input, output)`` (ShortGPT, arXiv 2403.03853,
    eq. 4) replaces the redundancy score of eq. 8 inside clusters; which cluster
    gives a block is still decided by eqs. 9-11.
    """
    bi = block_influence(request.statistics["stream-cosine"])
    return two_stage_allocate(request, head, score=-bi, score_name="Block Influence (negated)")


def protect_last(request: AllocationRequest) -> list[Removal]:
    """LoRP with the last :data:`PROTECT_LAST` blocks protected too.

    Raises:
        ConfigError: fewer unprotected blocks remain than the budget.
    """
    n = request.num_blocks
    protected = frozenset(request.protected | set(range(max(0, n - PROTECT_LAST), n)))
    eligible = n - len(protected)
    if request.budget > eligible:
        raise ConfigError(f"lorp-protect-last{PROTECT_LAST} leaves {eligible} removable blocks of {n}, fewer than "
                          f"the budget {request.budget}; lower the budget")
    return lorp_allocate(replace(request, protected=protected))


_SOURCE = "ablation of LoRP (arXiv 2605.27786)"


@hookimpl
def lorp_register_allocation_strategies(register):
    for k in (2, 3, 4):
        register(AllocationStrategy(
            f"lorp-k{k}", lorp_allocate, choose_k=fixed_k(k),
            description=f"LoRP with K fixed to {k} (no RLS rule)", source=f"{_SOURCE}: eq. 6 replaced by K = {k}"))
    register(AllocationStrategy(
        "lorp-residual", residual_only, description="LoRP without the coverage stage (residual allocation only)",
        source=f"{_SOURCE}: eq. 9 dropped"))
    register(AllocationStrategy(
        "lorp-rls-noemb", lorp_allocate, choose_k=k_without_embedding_output,
        description="LoRP with RLS computed without block 0's row and column (the embedding output)",
        source=f"{_SOURCE}: eq. 5 on S[1:, 1:]"))
    register(AllocationStrategy(
        "lorp-bi", block_influence_in_clusters, needs=("stream-cosine",),
        description="LoRP's clusters, Block Influence instead of redundancy inside each cluster",
        source=f"{_SOURCE}: eq. 8 replaced by ShortGPT's Block Influence"))
    register(AllocationStrategy(
        f"lorp-protect-last{PROTECT_LAST}", protect_last,
        description=f"LoRP with the last {PROTECT_LAST} blocks protected as well",
        source=f"{_SOURCE}: protected set extended"))
