"""Builtin allocation: LoRP's two-stage, cluster-aware budget allocation (eqs. 8-11)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..method.allocation import mean_pairwise, redundancy
from ..plugins.components import AllocationRequest, AllocationStrategy, Removal
from ..plugins.hookspecs import hookimpl


def head(queue: list[int], removed: set[int]) -> int:
    """LoRP's choice within a cluster: the head of its queue (position 0)."""
    return 0


def lorp_allocate(request: AllocationRequest) -> list[Removal]:
    """Two-stage allocation of the prune budget over depth-ordered clusters.

    * Redundancy ``r(l)`` = mean ``S[l, m]`` over the other members ``m`` of the
      cluster of ``l`` (eq. 8). Each cluster's queue holds its unprotected
      members sorted by ``r`` descending, ties to the shallower block.
    * Stage 1 (coverage, eq. 9): clusters ``0..K-1`` in order each give the head
      of their queue while budget remains.
    * Stage 2 (eqs. 10-11): until the budget is met, take the cluster (with a
      non-empty queue) whose not-yet-pruned members have the highest mean
      pairwise ``S`` (``-inf`` with fewer than two left; ties to the lower
      cluster index) and remove the head of its queue.

    Args:
        request: ``similarity [N, N]``, depth-ordered ``labels [N]``, ``budget``,
            ``protected`` blocks.
    Returns:
        ``budget`` removals in the order chosen.
    """
    return two_stage_allocate(request, choose=head)


def two_stage_allocate(request: AllocationRequest, choose: Callable[[list[int], set[int]], int], *,
                       score: np.ndarray | None = None, score_name: str = "redundancy r",
                       coverage: bool = True) -> list[Removal]:
    """LoRP's two-stage allocation with a pluggable choice within a cluster.

    Args:
        request: as for :func:`lorp_allocate`.
        choose: ``choose(queue, removed) -> position`` picks which queued block
            (queue sorted by score, descending) a cluster gives up, given the
            blocks removed so far. :func:`head` (always 0) is LoRP itself.
        score: float ``[N]`` ranking blocks inside a cluster, higher removed first
            (default: redundancy r(l), eq. 8).
        score_name: how removals name the score.
        coverage: run stage 1 (one block per cluster, eq. 9); ``False`` spends the
            whole budget by stage 2 (eqs. 10-11).
    Returns:
        ``budget`` removals in the order chosen.
    """
    s, labels = request.similarity, np.asarray(request.labels)
    r = redundancy(s, labels) if score is None else np.asarray(score, dtype=np.float64)
    clusters = sorted(set(labels.tolist()))
    queues = {
        c: sorted(
            (int(b) for b in np.flatnonzero(labels == c) if int(b) not in request.protected),
            key=lambda b: (-r[b], b),
        )
        for c in clusters
    }
    remaining = {c: set(np.flatnonzero(labels == c).tolist()) for c in clusters}
    removals: list[Removal] = []

    def take(c: int, stage: int, why: str) -> None:
        block = queues[c].pop(choose(queues[c], {r.block for r in removals}))
        remaining[c].discard(block)
        removals.append(Removal(block=block, stage=stage, cluster=c, score=float(r[block]),
                                reason=f"{why}; {score_name} = {r[block]:.4f}"))

    for c in clusters if coverage else ():
        if len(removals) == request.budget:
            break
        if queues[c]:
            take(c, 1, f"one block from each cluster in depth order (cluster {c})")

    while len(removals) < request.budget:
        candidates = [c for c in clusters if queues[c]]
        scores = {c: mean_pairwise(s, remaining[c]) for c in candidates}
        best = max(candidates, key=lambda c: (scores[c], -c))  # -inf everywhere -> lowest index
        take(best, 2, f"cluster {best} has the highest residual similarity ({scores[best]:.4f})")
    return removals


@hookimpl
def lorp_register_allocation_strategies(register):
    register(
        AllocationStrategy(
            name="lorp",
            allocate=lorp_allocate,
            uses_clusters=True,
            version="1",
            description="one most-redundant block per cluster, then from the most redundant cluster",
            source="LoRP (arXiv 2605.27786), eqs. 8-11",
        )
    )
