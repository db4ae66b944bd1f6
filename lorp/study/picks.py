"""The picks of the calibration-statistics methods from one calibration pass, with no evaluation.

How much do the removed blocks move when the calibration data change — more sequences
(:func:`lorp.study.sensitivity.picks_with_more_data`) or another corpus
(:mod:`lorp.study.calibration_corpus`)? :func:`statistics_picks` answers for the methods
whose choice reads the calibration statistics and only them: one calibration pass on a
fresh :class:`lorp.run.worker.CellWorker` (cached on disk like every pass), then each such
method chooses at every budget. SLEB and the model-scoring selectors (they score
candidates with the model, a search per budget) and ``last``/``random`` (they read no
statistic) are left out and named.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..method.selection import select_blocks
from ..plugins.registry import load_registry
from ..run.worker import CellWorker


def statistics_picks(base: Any, methods: Sequence[str], budgets: Sequence[int], registry: Any = None
                     ) -> dict[str, Any]:
    """Each calibration-statistics method's removed blocks at every budget, from the calibration of ``base``.

    Args:
        base: a :class:`lorp.run.pipeline.PruneConfig`: model, calibration corpus, samples, seed, similarity,
            clustering, K and protected blocks.
        methods: allocation strategies to try (those needing the model or reading no statistic are skipped).
        budgets: blocks to remove.
    Returns:
        ``{"rls", "k", "seconds", "seconds_this_run", "picks": {method: {budget: sorted blocks}}, "skipped":
        [methods left out]}``: ``seconds`` is the calibration pass's cost when computed (a cached pass keeps
        it), ``seconds_this_run`` this call's wall time.
    Raises:
        ConfigError, UnknownNameError: what loading the model, the corpus or the pass raises.
    """
    registry = registry or load_registry()
    strategies = {m: registry.allocation(m) for m in methods}
    cheap = [m for m, s in strategies.items() if not s.needs_model and (s.uses_clusters or s.needs)]
    t = time.perf_counter()
    worker = CellWorker(base, cheap, registry=registry)
    matrices = worker.matrices
    s = matrices[base.similarity]
    picks: dict[str, dict[int, list[int]]] = {}
    rls = k = None
    for m in cheap:
        for b in budgets:
            sel = select_blocks(s, b, k=base.k, seed=base.seed, clustering=base.clustering, allocation=m,
                                protected=base.protected, statistics=matrices, registry=registry)
            picks.setdefault(m, {})[int(b)] = sorted(sel.pruned)
            if sel.rls is not None and rls is None:
                rls, k = sel.rls, sel.k
    meta = worker.context().calibration
    return {"rls": rls, "k": k, "seconds": float(meta.get("seconds") or 0.0),
            "seconds_this_run": time.perf_counter() - t, "picks": picks,
            "skipped": [m for m in methods if m not in cheap]}


__all__ = ["statistics_picks"]
