"""Study queries: one cell, and the best baseline, each decided in one place.

Every report that names "the best baseline" (the verdict, the confirmation set, the tables, the
ablations, the attribution, the healing grid and the ablation notebook) asks :func:`best_baseline`, so
a tie is broken the same way everywhere: the lowest geometric mean perplexity over the evaluation
corpora on the screening windows; on equal perplexity, the method whose name sorts first; then the
lowest run seed. By accuracy (:func:`best_baseline_by_accuracy`): the highest mean zero-shot accuracy,
ties the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..run.study_records import StudyCell


def cell(cells: Iterable[StudyCell], method: str, budget: int, *, seed: int | None = None) -> StudyCell | None:
    """The cell of ``method`` at ``budget``: at run seed ``seed``, or (``None``) the lowest seed present;
    ``None`` when there is none."""
    found = [c for c in cells if c.method == method and c.budget == budget and (seed is None or c.seed == seed)]
    return min(found, key=lambda c: c.seed, default=None)


def baseline_methods(cells: Iterable[StudyCell], allocation: str = "lorp", exclude: Collection[str] = ()) -> set[str]:
    """The methods of ``cells`` that count as baselines: every one but ``allocation``, ``exclude`` and the methods
    ``lorp study --add`` put beside the study (rows with ``added`` set: the user's method, compared with the
    baselines, never one of them)."""
    return {c.method for c in cells if not c.added} - {allocation} - set(exclude)


def best_baseline(cells: Iterable[StudyCell], budget: int, *, seed: int | None = None,
                  among: Collection[str]) -> StudyCell | None:
    """The baseline cell with the lowest geometric mean perplexity at ``budget``.

    Args:
        cells: study cells (any budgets and seeds).
        budget: blocks removed.
        seed: only cells of this run seed (``None``: every seed given).
        among: the method names that count as baselines (e.g. every compared method but LoRP and our
            selectors); the caller decides, so a selector or an ablation never becomes the rival by accident.
    Returns:
        the cell, ties broken by method name, then by the lower seed; ``None`` when no cell qualifies.
    """
    eligible = [c for c in cells if c.budget == budget and c.method in among and (seed is None or c.seed == seed)]
    return min(eligible, key=lambda c: (c.mean_perplexity, c.method, c.seed), default=None)


def best_baseline_by_accuracy(cells: Iterable[StudyCell], budget: int, *, seed: int | None = None,
                              among: Collection[str]) -> StudyCell | None:
    """As :func:`best_baseline`, by the highest mean zero-shot accuracy (cells without one are skipped)."""
    eligible = [c for c in cells if c.budget == budget and c.method in among and (seed is None or c.seed == seed)
                and c.zero_shot_average is not None]
    return min(eligible, key=lambda c: (-c.zero_shot_average, c.method, c.seed), default=None)


__all__ = ["baseline_methods", "best_baseline", "best_baseline_by_accuracy", "cell"]
