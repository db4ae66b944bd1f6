"""Statistics on evaluation results: how sure a comparison of two pruned models is.

Two methods evaluated on the *same* perplexity windows, or the same zero-shot
items, are compared pairwise: the per-window (per-item) differences are resampled
together, so what both methods find hard cancels out. Everything here is seeded
and deterministic: the same inputs, ``samples``, ``seed`` and ``level`` give the
same numbers on every machine (``numpy.random.default_rng(seed)``).

* Perplexity: :func:`lorp.evaluate.perplexity_uncertainty.paired_t_nll` (one corpus: the log perplexity
  ratio) and :func:`lorp.evaluate.perplexity_uncertainty.paired_t_log_ratio` (several corpora: the ratio of
  geometric mean perplexities, the number the study reports), paired t-intervals over windows.
* Zero-shot accuracy: :func:`lorp.evaluate.accuracy_uncertainty.wilson_interval` / :func:`lorp.evaluate.accuracy_uncertainty.accuracy_interval` for one
  method, :func:`lorp.evaluate.accuracy_uncertainty.bootstrap_accuracy` for the average over tasks,
  :func:`lorp.evaluate.accuracy_uncertainty.paired_bootstrap_accuracy` and :func:`lorp.evaluate.accuracy_uncertainty.mcnemar_exact` for two methods on
  the same items.
* :func:`decide`: a comparison wins, loses or is undecided depending on whether
  its interval excludes zero.
* :func:`lorp.evaluate.perplexity_uncertainty.compare_perplexity`, :func:`lorp.evaluate.accuracy_uncertainty.compare_accuracy` and
  :func:`lorp.evaluate.accuracy_uncertainty.accuracy_intervals` apply these to study rows
  (:class:`lorp.run.study_records.StudyCell`, :class:`lorp.run.study_records.StudyDense`), returning
  ``None`` where the records lack per-window NLL or per-item results (older runs).

Sources: B. Efron and R. J. Tibshirani, *An Introduction to the Bootstrap*
(Chapman & Hall, 1993), ch. 13 (percentile intervals); E. B. Wilson, "Probable
inference, the law of succession, and statistical inference", *JASA* 22 (1927)
209-212; Q. McNemar, "Note on the sampling error of the difference between
correlated proportions or percentages", *Psychometrika* 12 (1947) 153-157 (here
in its exact, binomial form).

Percentile bootstrap intervals from few units tend to be too narrow (Efron & Tibshirani,
§13.3), which is why perplexity, compared over 8 or 32 windows per corpus, uses a t-interval
whose coverage is checked at those sizes; accuracy is compared over hundreds of items. Read an
"undecided" as "these samples cannot tell". :func:`holm` corrects a family of tests for
multiplicity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

#: Defaults of every interval here (the reports use them): resamples, seed, coverage.
SAMPLES = 2000
SEED = 0
LEVEL = 0.95


Decision = Literal["wins", "loses", "undecided"]


def decide(low: float, high: float, *, better: Literal["lower", "higher"]) -> Decision:
    """Whether the compared method wins, loses or is undecided against the reference.

    ``[low, high]`` is an interval of *compared − reference* (e.g. NLL difference,
    log perplexity ratio, accuracy difference). The compared method ``"wins"`` when
    the whole interval lies on the better side of zero (``high < 0`` when lower is
    better, ``low > 0`` when higher is better), ``"loses"`` when it lies wholly on
    the worse side, and is ``"undecided"`` when the interval contains zero (also an
    interval ``[0, 0]`` from identical results).

    Raises:
        ValueError: ``better`` is neither ``"lower"`` nor ``"higher"``, or ``low > high``.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    if not low <= high:
        raise ValueError(f"interval low {low} is above high {high}")
    if low > 0:
        return "wins" if better == "higher" else "loses"
    if high < 0:
        return "wins" if better == "lower" else "loses"
    return "undecided"


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval.

    Attributes:
        estimate: the point estimate (e.g. an accuracy in [0, 1]).
        low, high: the interval's ends (same unit).
        level: nominal coverage, e.g. 0.95.
        method: ``"wilson"`` or ``"bootstrap"``.
    """

    estimate: float
    low: float
    high: float
    level: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- checks ---------------------------------------------------------------------------------------------------------
def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: reject test ``i`` at level ``alpha`` when
    ``holm(p)[i] <= alpha``, which keeps the family-wise error rate at most ``alpha``.

    Sorted ascending, the ``j``-th smallest p-value (1-based) of ``m`` is multiplied by ``m - j + 1``,
    capped at 1, and made non-decreasing along the order.

    Args:
        p_values: the family's p-values, each in [0, 1].
    Returns:
        the adjusted p-values, same length and order.
    Raises:
        ValueError: a p-value outside [0, 1] or not a number.

    Source: S. Holm, "A simple sequentially rejective multiple test procedure",
    *Scandinavian Journal of Statistics* 6 (1979) 65-70.
    """
    p = np.asarray(list(p_values), dtype=np.float64)
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def holm_decisions(p_values: Sequence[float], differences: Sequence[float], *,
                   better: Literal["lower", "higher"], level: float = LEVEL) -> list[Decision]:
    """Each test of a family decided after Holm's correction: ``"wins"``/``"loses"`` by the sign of its difference
    where its Holm-adjusted p-value (:func:`holm`) is at most ``1 - level``, else ``"undecided"``.

    Args:
        p_values: two-sided p-values of the family's tests, in [0, 1].
        differences: each test's estimate, *compared − reference* (same order).
        better: ``"lower"`` (perplexity) or ``"higher"`` (accuracy): which sign is a win.
        level: ``1 - level`` is the family-wise error rate kept (0.05 at the default).
    Returns:
        one :data:`Decision` per test, in the order given.
    Raises:
        ValueError: lengths differ, a p-value outside [0, 1], or ``better`` unknown.
    """
    if len(p_values) != len(differences):
        raise ValueError(f"{len(p_values)} p-values but {len(differences)} differences")
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    out: list[Decision] = []
    for adjusted, d in zip(holm(p_values), differences):
        if adjusted > 1 - level or d == 0:
            out.append("undecided")
        else:
            out.append("wins" if (d < 0) == (better == "lower") else "loses")
    return out


def check_bootstrap_settings(samples: int, level: float) -> None:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a whole number >= 1, got {samples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")


def _series(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} is empty: nothing to compare")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} holds non-finite values")
    return x


def check_pair(a: Sequence[float], b: Sequence[float], what: str, unit: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _series(a, f"{what} of a"), _series(b, f"{what} of b")
    if x.size != y.size:
        raise ValueError(f"{what}: a has {x.size} {unit}, b has {y.size}; a paired comparison needs the same {unit}")
    return x, y


def check_tokens(tokens_per_window: int | Sequence[int], windows: int) -> np.ndarray:
    t = np.asarray(tokens_per_window)
    if t.ndim == 0:
        t = np.full(windows, t)
    if t.shape != (windows,):
        raise ValueError(f"tokens_per_window must be one number or one per window ({windows}), got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer) and not np.all(t == np.round(t)):
        raise ValueError("tokens_per_window must be whole numbers")
    if np.any(t < 1):
        raise ValueError(f"tokens_per_window must be >= 1, got {t.min()}")
    return t.astype(np.float64)


def check_correct(values: Sequence[int], what: str) -> np.ndarray:
    x = np.asarray(values)
    if x.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of 0/1, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} is empty: no items")
    if not np.all((x == 0) | (x == 1)):
        raise ValueError(f"{what} must hold only 0 and 1 (one per item)")
    return x.astype(np.float64)


def check_tasks(values: Sequence[int] | Mapping[str, Sequence[int]], what: str) -> dict[str, np.ndarray]:
    if isinstance(values, Mapping):
        if not values:
            raise ValueError(f"{what} holds no tasks")
        return {t: check_correct(v, f"{what}[{t!r}]") for t, v in values.items()}
    return {"": check_correct(values, what)}


def percentile_interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval (Efron & Tibshirani, eq. 13.5): the (1-level)/2 and (1+level)/2 quantiles of ``stats``.

    Quantiles interpolate linearly between order statistics (numpy's default).
    """
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def resample_indices(rng: np.random.Generator, n: int, samples: int) -> np.ndarray:
    """Resampled indices ``[samples, n]``: each row draws ``n`` of ``range(n)`` with replacement."""
    return rng.integers(0, n, size=(samples, n))


__all__ = ["LEVEL", "SAMPLES", "SEED", "Decision", "Interval", "decide", "holm", "holm_decisions"]
