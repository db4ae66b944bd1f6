"""Which removed block does the damage: the single-block removal profile next to the methods' own signals.

The profile (:class:`lorp.run.study_records.Attribution`, computed by
:meth:`lorp.run.worker.CellWorker.attribution`) gives, for every block ``b``, the calibration
NLL with only ``b`` removed minus the dense NLL (ΔNLL, nats per scored token). This
module lines it up with what the methods rank blocks by: LoRP's redundancy ``r(l)``
(mean similarity to the other members of its cluster, LoRP eq. 8) and ShortGPT's Block
Influence ``BI = 1 - cos(input, output)`` (Men et al. 2024, eq. 4), and picks the
removal sets compared (LoRP's and the best baseline's at the detail budget).
:func:`lorp.study.explain.attribution_markdown` and :func:`lorp.study.figures.attribution_profile`
render it.

Everything here is first order: a block's ΔNLL is its cost when removed alone. Blocks
removed together interact, so the sum over a set is an account of where the damage
comes from, not the NLL of the pruned model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..method.allocation import normalize_protected, redundancy
from ..method.selection import DEFAULT_PROTECTED
from ..run.study_records import StudyCell, StudyResult
from .query import baseline_methods, best_baseline, cell


@dataclass(frozen=True)
class Signals:
    """Per-block signals of one study, float64 ``[N]`` each (``NaN`` where undefined).

    Attributes:
        delta: ΔNLL of removing only that block, nats per scored token (calibration text of the profile).
        redundancy: LoRP's ``r(l)`` (eq. 8) from the study's S and LoRP's cluster labels; ``NaN`` for a block
            alone in its cluster (eq. 8 gives it ``-inf``) and everywhere when the study has no labels.
        block_influence: ShortGPT's Block Influence; all ``NaN`` when the sweep did not capture ``stream-cosine``.
        eligible: bool ``[N]``, the blocks a method may remove (not protected).
    """

    delta: np.ndarray
    redundancy: np.ndarray
    block_influence: np.ndarray
    eligible: np.ndarray


def signals(results: StudyResult) -> Signals:
    """:class:`Signals` of a study.

    Raises:
        ValueError: the study has no single-block removal profile (``results.attribution`` is ``None``).
    """
    r = results
    if r.attribution is None:
        raise ValueError("this study has no single-block removal profile; rerun it with attribution=True")
    n = r.num_blocks
    delta = np.array([r.attribution.delta.get(b, np.nan) for b in range(n)], dtype=np.float64)
    if r.labels is not None and r.similarity is not None:
        red = redundancy(np.asarray(r.similarity), np.asarray(r.labels))
        red[~np.isfinite(red)] = np.nan
    else:
        red = np.full(n, np.nan)
    bi = (np.asarray(r.attribution.block_influence, dtype=np.float64) if r.attribution.block_influence is not None
          else np.full(n, np.nan))
    protected = normalize_protected(r.config.get("protected", DEFAULT_PROTECTED), n)
    return Signals(delta, red, bi, np.array([b not in protected for b in range(n)]))


def detail_budget(results: StudyResult) -> int:
    """The budget the attribution looks at: the study's detail budget, else its largest budget.

    Raises:
        ValueError: the study has no cells.
    """
    r = results
    budgets = sorted({c.budget for c in r.cells})
    if not budgets:
        raise ValueError("the study has no cells")
    detail = [b for b in (r.config.get("detail_budgets") or []) if b in budgets]
    return detail[0] if detail else budgets[-1]


def compared_cells(results: StudyResult, budget: int | None = None,
                   allocation: str = "lorp") -> tuple[StudyCell | None, StudyCell | None]:
    """``(LoRP's cell, the best baseline's cell)`` at ``budget`` (default :func:`detail_budget`).

    LoRP's cell is the ``allocation`` cell of the lowest seed; the best baseline is the
    other method with the lowest geometric mean perplexity at that budget (as in
    :func:`lorp.study.compare.lorp_vs_best_baseline`). Either is ``None`` when absent.
    """
    r = results
    budget = detail_budget(r) if budget is None else budget
    cells = [c for c in r.cells if c.budget == budget]
    lorp = cell(cells, allocation, budget)
    rival = best_baseline(cells, budget, among=baseline_methods(cells, allocation))
    return lorp, rival


def rank_of(delta: np.ndarray, eligible: np.ndarray) -> dict[int, int]:
    """``{block: rank}`` of the eligible blocks by ΔNLL, 1 = cheapest to remove alone (ties: shallower first)."""
    order = sorted((b for b in range(len(delta)) if eligible[b] and np.isfinite(delta[b])),
                   key=lambda b: (delta[b], b))
    return {b: i + 1 for i, b in enumerate(order)}


def first_order_damage(delta: np.ndarray, blocks: Any) -> float:
    """Sum of the single-removal ΔNLL of ``blocks`` (nats per token): a first-order account, interactions ignored."""
    return float(sum(delta[b] for b in blocks))


@dataclass(frozen=True)
class Correlation:
    """Spearman rank correlation between ΔNLL and one signal across eligible blocks.

    Attributes:
        rho: Spearman's ρ (``NaN`` when undefined: fewer than 3 blocks or a constant series).
        p_value: two-sided p-value of ``scipy.stats.spearmanr`` (``NaN`` likewise).
        blocks: blocks used (eligible, both values finite).
    """

    rho: float
    p_value: float
    blocks: int


def spearman(delta: np.ndarray, signal: np.ndarray, eligible: np.ndarray) -> Correlation:
    """:class:`Correlation` of ``delta`` and ``signal`` (float ``[N]``) over eligible blocks where both are finite."""
    from scipy.stats import spearmanr

    keep = eligible & np.isfinite(delta) & np.isfinite(signal)
    x, y = delta[keep], signal[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), len(x))
    res = spearmanr(x, y)
    return Correlation(float(res.statistic), float(res.pvalue), len(x))


__all__ = ["Correlation", "Signals", "compared_cells", "detail_budget", "first_order_damage", "rank_of", "signals",
           "spearman"]
