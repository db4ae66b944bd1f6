"""Cells as the unit of work: the one orchestration behind ``run_prune`` and ``sweep``, on any executor.

A run is: plan cells (:class:`lorp.run.records.CellSpec`) -> on workers, select each
cell's blocks -> group the cells by (model, removed block set, evaluation settings)
and evaluate each group once -> write one :class:`lorp.run.records.CellResult` per cell
into the atomic cell store (:class:`lorp.run.cell_store.CellStore`).
:class:`lorp.run.worker.CellWorker` does the heavy work on one machine (it loads the
model once and keeps the calibration matrices and the dense prefix states);
:func:`orchestrate` drives workers through an executor
(:class:`lorp.run.executors.SerialExecutor` in-process, or
:class:`lorp.run.executors.RayExecutor` on a Ray cluster).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import LorpError
from ..store.cache import notice
from .cell_store import CellStore, RunStats
from .progress import report as progress_report
from .records import CellFailure, CellResult, CellSpec, EvalSettings, Evaluation, RunContext
from .cell_results import Selected, cell_failure, evaluation_key


class CellsFailedError(LorpError):
    """Some cells raised; the others landed. ``failures`` holds each failed cell's spec, error and traceback."""

    def __init__(self, failures: Sequence[CellFailure]):
        self.failures = list(failures)
        names = ", ".join(f"{f.spec.name} ({f.stage}: {f.error})" for f in self.failures[:3])
        more = f" and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} cell(s) failed: {names}{more}; the other cells landed "
                         "(tracebacks in failures.json); rerun to retry the failed cells")


# -- executors see workers through this interface -----------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One call to run on a worker.

    Attributes:
        method: :class:`CellWorker` method name.
        args: its arguments (picklable).
        key: the caller's handle for the result.
    """

    method: str
    args: tuple
    key: Any = None


class Workers(Protocol):
    """What an executor provides: run tasks on its workers, yielding ``(task, result)`` as each finishes."""

    def first(self, task: Task) -> Any:
        """Run ``task`` on the first worker and return its result (raises what it raises)."""

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        """Run ``tasks`` spread over the workers, yielding each with its result as it finishes."""


#: Task keys of the dense evaluation and of the single-block removal profile (evaluation keys are strings).
DENSE_KEY, ATTRIBUTION_KEY = None, ("attribution",)


def orchestrate(workers: Workers, pending: Sequence[CellSpec], store: CellStore, *, reuse_states: bool,
                dense_settings: EvalSettings | None, need_dense: bool, on_dense=None, progress: bool = False,
                stats: RunStats | None = None, attribution: bool = False, on_attribution=None) -> RunStats:
    """Select every pending cell, evaluate each distinct (removed set, settings) once, store every cell.

    Args:
        workers: where the calls run (an executor's workers).
        pending: the cells to compute.
        store: the cell store cells and evaluations are written to.
        reuse_states: pass each selection's first removed block to the dense pass (and each detailed
            cell's to its zero-shot pass).
        dense_settings: settings of the dense evaluation (zero-shot/speed when any cell is detailed).
        need_dense: evaluate the dense model even when no cell is pending.
        on_dense: called with ``(context, (dense evaluation, reuse record, flops per token))`` once known.
        attribution: also compute the single-block removal profile (:meth:`CellWorker.attribution`), as a
            task queued after every selection (so a worker that ran SLEB answers most of it from its memo).
        on_attribution: called with ``(context, lorp.run.study_records.Attribution)`` once known.
    Returns:
        :class:`RunStats`; failed cells are in ``stats.failures`` (nothing raised for them), a failed
        profile in ``stats.attribution_error``.
    """
    stats = stats or RunStats()
    start = time.perf_counter()
    ctx: RunContext = workers.first(Task("context", ()))
    selected = _select_all(workers, pending, stats)
    firsts = tuple(sorted({min(s.selection.pruned) for s in selected})) if reuse_states else ()
    detail_firsts = tuple(sorted({min(s.selection.pruned) for s in selected
                                  if s.spec.evaluation.detailed and not s.spec.healed})) if reuse_states else ()
    groups: dict[str, list[Selected]] = {}
    for s in selected:
        key = evaluation_key(ctx.model, s.selection.pruned, s.spec.evaluation, store.evaluation_code,
                             store.healing_key(s.spec))
        groups.setdefault(key, []).append(s)
    land = _Landing(store, stats, groups, start, progress)
    tasks = []
    if need_dense or groups:
        tasks.append(Task("dense", (firsts, dense_settings, detail_firsts), key=DENSE_KEY))
    if attribution:
        tasks.append(Task("try_attribution", (), key=ATTRIBUTION_KEY))
    for key, members in groups.items():
        cached = store.load_evaluation(key)
        if cached is not None:
            land(key, cached, computed=False)
            continue
        first = members[0]
        tasks.append(Task("try_evaluate", (first.selection.pruned, first.spec.evaluation, firsts,
                                           [m.spec for m in members]), key=key))
    for task, outcome in workers.run(tasks):
        if task.key == ATTRIBUTION_KEY:
            _attribution_done(ctx, outcome, stats, on_attribution)
        elif task.key is DENSE_KEY:
            if isinstance(outcome, BaseException):
                raise outcome
            if on_dense is not None:
                on_dense(ctx, outcome)
        else:
            _evaluation_done(task, outcome, store, stats, land)
    land.bar.close()
    stats.seconds = time.perf_counter() - start
    return stats


def _select_all(workers: Workers, pending: Sequence[CellSpec], stats: RunStats) -> list[Selected]:
    """Select every pending cell, one task per (method, seed); failed selections go to ``stats.failures``."""
    by_group: dict[tuple[str, int], list[CellSpec]] = {}
    for spec in pending:
        by_group.setdefault((spec.method, spec.seed), []).append(spec)
    selected: list[Selected] = []
    for _task, outcome in workers.run([Task("select", (specs,)) for specs in by_group.values()]):
        if isinstance(outcome, BaseException):
            stats.failures += [cell_failure(s, "selection", outcome) for s in _task.args[0]]
            continue
        for item in outcome:
            (stats.failures if isinstance(item, CellFailure) else selected).append(item)
    return selected


class _Landing:
    """Writes the cells of one evaluation group once its evaluation is known, and reports progress."""

    def __init__(self, store: CellStore, stats: RunStats, groups: dict[str, list[Selected]], start: float,
                 progress: bool):
        from tqdm.auto import tqdm

        self.store, self.stats, self.groups, self.start = store, stats, groups, start
        self.total = sum(len(members) for members in groups.values())
        self.bar = tqdm(total=self.total, desc="sweep cells", disable=not progress, unit="cell")
        # progress lines name the seed when the cells have several
        self.several_seeds = len({s.spec.seed for members in groups.values() for s in members}) > 1
        progress_report(stage="cells", total=self.total, message=f"{self.total} cells to compute")

    def __call__(self, key: str, ev: Evaluation, computed: bool) -> None:
        stats = self.stats
        for i, s in enumerate(self.groups[key]):
            reused = not computed or i > 0
            stats.evaluations_reused += reused
            spent = 0.0 if reused else ev.seconds
            stages = {} if reused else {f"evaluation_{k}": v for k, v in ev.stage_seconds.items()}
            self.store.save(CellResult(s.spec, self.store.identity, s.selection, ev,
                                       {"selection": s.seconds, "evaluation": spent, "total": s.seconds + spent,
                                        **stages},
                                       key, reused, s.nll_passes, s.plugin,
                                       self.store.code_of(s.spec.method, s.spec.healer) or {}))
            stats.cells_written += 1
            if stats.seconds_to_first_cell is None:
                stats.seconds_to_first_cell = time.perf_counter() - self.start
            self.bar.update(1)
            progress_report(stage="cell", done=stats.cells_written, total=self.total, method=s.spec.method,
                            budget=s.spec.budget, seed=s.spec.seed if self.several_seeds else None)


def _attribution_done(ctx: RunContext, outcome: Any, stats: RunStats, on_attribution) -> None:
    """The single-block removal profile came back: hand it on, or note why it failed (the cells go on)."""
    if isinstance(outcome, (BaseException, str)):
        stats.attribution_error = outcome if isinstance(outcome, str) else f"{type(outcome).__name__}: {outcome}"
        notice(f"the single-block removal profile failed ({stats.attribution_error}); the cells go on, "
               "a rerun retries it")
    elif on_attribution is not None:
        on_attribution(ctx, outcome)


def _evaluation_done(task: Task, outcome: Any, store: CellStore, stats: RunStats, land: _Landing) -> None:
    """One removed set's evaluation came back: store it and land its cells, or record the cells as failed."""
    if isinstance(outcome, BaseException):
        outcome = [cell_failure(s, "evaluation", outcome) for s in task.args[3]]
    if isinstance(outcome, list):
        stats.failures += outcome
        return
    stats.evaluations_computed += 1
    store.save_evaluation(task.key, outcome)
    land(task.key, outcome, computed=True)

__all__ = ["CellsFailedError", "Task", "Workers", "orchestrate"]
