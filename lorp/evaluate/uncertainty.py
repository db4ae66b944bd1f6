"""Statistics on evaluation results: how sure a comparison of two pruned models is.

Two methods evaluated on the *same* perplexity windows, or the same zero-shot
items, are compared pairwise: the per-window (per-item) differences are resampled
together, so what both methods find hard cancels out. Everything here is seeded
and deterministic: the same inputs, ``samples``, ``seed`` and ``level`` give the
same numbers on every machine (``numpy.random.default_rng(seed)``).

* Perplexity: :func:`paired_bootstrap_nll` (one corpus: difference of mean token
  NLL and the perplexity ratio) and :func:`paired_bootstrap_mean_perplexity`
  (several corpora: ratio of the mean over corpora of the perplexities, the number
  the study reports), both percentile bootstrap intervals over windows.
* Zero-shot accuracy: :func:`wilson_interval` / :func:`accuracy_interval` for one
  method, :func:`bootstrap_accuracy` for the average over tasks,
  :func:`paired_bootstrap_accuracy` and :func:`mcnemar_exact` for two methods on
  the same items.
* :func:`decide`: a comparison wins, loses or is undecided depending on whether
  its interval excludes zero.
* :func:`compare_perplexity`, :func:`compare_accuracy` and
  :func:`accuracy_intervals` apply these to study rows
  (:class:`lorp.run.study_records.StudyCell`, :class:`lorp.run.study_records.StudyDense`), returning
  ``None`` where the records lack per-window NLL or per-item results (older runs).

Sources: B. Efron and R. J. Tibshirani, *An Introduction to the Bootstrap*
(Chapman & Hall, 1993), ch. 13 (percentile intervals); E. B. Wilson, "Probable
inference, the law of succession, and statistical inference", *JASA* 22 (1927)
209-212; Q. McNemar, "Note on the sampling error of the difference between
correlated proportions or percentages", *Psychometrika* 12 (1947) 153-157 (here
in its exact, binomial form).

Percentile intervals from few windows or items (a study evaluating 2048 tokens per
corpus in 256-token windows has 8 windows) are rough and tend to be too narrow
(Efron & Tibshirani, §13.3); read an "undecided" as "these samples cannot tell".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from statistics import NormalDist
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


@dataclass(frozen=True)
class PerplexityComparison:
    """Method ``b`` against method ``a`` on the same perplexity windows (paired bootstrap).

    Attributes:
        difference: ``b − a`` in nats: the difference of mean token NLL (one corpus), or the log of
            the ratio of mean perplexities over corpora (several; the same number for one corpus).
        low, high: percentile interval of ``difference`` at ``level``.
        ratio, ratio_low, ratio_high: ``exp`` of the three (perplexity of ``b`` over that of ``a``).
        level, samples, seed: the bootstrap.
        windows: windows resampled (all corpora together).
    """

    difference: float
    low: float
    high: float
    ratio: float
    ratio_low: float
    ratio_high: float
    level: float
    samples: int
    seed: int
    windows: int

    @property
    def decision(self) -> Decision:
        """``b`` against ``a``: wins when its perplexity is lower beyond the interval (:func:`decide`)."""
        return decide(self.low, self.high, better="lower")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decision": self.decision}


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two methods on the same items.

    Attributes:
        a_only: items ``a`` answers correctly and ``b`` does not.
        b_only: items ``b`` answers correctly and ``a`` does not.
        p_value: two-sided exact p-value: ``min(1, 2 · P(X ≤ min(a_only, b_only)))`` for
            ``X ~ Binomial(a_only + b_only, 1/2)``; 1 without discordant items.
    """

    a_only: int
    b_only: int
    p_value: float


@dataclass(frozen=True)
class AccuracyComparison:
    """Method ``b`` against method ``a`` on the same zero-shot items (paired bootstrap).

    Attributes:
        difference: accuracy of ``b`` minus that of ``a`` (fraction in [-1, 1]; the mean over tasks
            of the per-task differences when several tasks are compared).
        low, high: percentile interval of ``difference`` at ``level``.
        level, samples, seed: the bootstrap.
        items: items compared (all tasks together).
        mcnemar: exact McNemar test on the same items (pooled over tasks).
    """

    difference: float
    low: float
    high: float
    level: float
    samples: int
    seed: int
    items: int
    mcnemar: McNemar

    @property
    def decision(self) -> Decision:
        """``b`` against ``a``: wins when its accuracy is higher beyond the interval (:func:`decide`)."""
        return decide(self.low, self.high, better="higher")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decision": self.decision}


# -- checks ---------------------------------------------------------------------------------------------------------
def _check_settings(samples: int, level: float) -> None:
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


def _pair(a: Sequence[float], b: Sequence[float], what: str, unit: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _series(a, f"{what} of a"), _series(b, f"{what} of b")
    if x.size != y.size:
        raise ValueError(f"{what}: a has {x.size} {unit}, b has {y.size}; a paired comparison needs the same {unit}")
    return x, y


def _tokens(tokens_per_window: int | Sequence[int], windows: int) -> np.ndarray:
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


def _correct(values: Sequence[int], what: str) -> np.ndarray:
    x = np.asarray(values)
    if x.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of 0/1, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} is empty: no items")
    if not np.all((x == 0) | (x == 1)):
        raise ValueError(f"{what} must hold only 0 and 1 (one per item)")
    return x.astype(np.float64)


def _tasks(values: Sequence[int] | Mapping[str, Sequence[int]], what: str) -> dict[str, np.ndarray]:
    if isinstance(values, Mapping):
        if not values:
            raise ValueError(f"{what} holds no tasks")
        return {t: _correct(v, f"{what}[{t!r}]") for t, v in values.items()}
    return {"": _correct(values, what)}


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval (Efron & Tibshirani, eq. 13.5): the (1-level)/2 and (1+level)/2 quantiles of ``stats``.

    Quantiles interpolate linearly between order statistics (numpy's default).
    """
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _draw(rng: np.random.Generator, n: int, samples: int) -> np.ndarray:
    """Resampled indices ``[samples, n]``: each row draws ``n`` of ``range(n)`` with replacement."""
    return rng.integers(0, n, size=(samples, n))


# -- perplexity -----------------------------------------------------------------------------------------------------
def paired_bootstrap_nll(a_window_nll: Sequence[float], b_window_nll: Sequence[float],
                         tokens_per_window: int | Sequence[int], *, samples: int = SAMPLES, seed: int = SEED,
                         level: float = LEVEL) -> PerplexityComparison:
    """Paired bootstrap of the difference of mean token NLL, ``b − a``, over the same windows of one corpus.

    The mean token NLL of a method on a set of windows is the summed NLL over the
    summed token count (as :class:`lorp.evaluate.perplexity.Perplexity` computes it). Each of
    ``samples`` resamples draws ``W`` windows with replacement
    (``numpy.random.default_rng(seed).integers(0, W, size=(samples, W))``) and takes
    both methods on *the same* windows; the interval is the percentile interval of
    the resampled differences (Efron & Tibshirani 1993, ch. 13). ``exp`` of the
    difference is the perplexity ratio ``ppl_b / ppl_a``.

    Args:
        a_window_nll, b_window_nll: summed token NLL (nats) per window ``[W]``, same windows in the same order
            (:attr:`lorp.evaluate.perplexity.Perplexity.window_nll`).
        tokens_per_window: predicted tokens per window: one number (``T - 1``) or ``[W]``.
        samples: bootstrap resamples (>= 1).
        seed: seed of the resampling.
        level: coverage of the interval, in (0, 1).
    Returns:
        :class:`PerplexityComparison` (``difference`` in nats; ``ratio`` dimensionless).
    Raises:
        ValueError: empty or non-finite series, series of different lengths, bad token counts,
            ``samples`` < 1 or ``level`` outside (0, 1).
    """
    _check_settings(samples, level)
    a, b = _pair(a_window_nll, b_window_nll, "window NLL", "windows")
    tokens = _tokens(tokens_per_window, a.size)
    d = b - a
    estimate = float(d.sum() / tokens.sum())
    idx = _draw(np.random.default_rng(seed), a.size, samples)
    lo, hi = _percentiles(d[idx].sum(axis=1) / tokens[idx].sum(axis=1), level)
    return PerplexityComparison(estimate, lo, hi, math.exp(estimate), math.exp(lo), math.exp(hi), level, samples,
                                seed, int(a.size))


def _log_mean_perplexity(nll: Mapping[str, np.ndarray], tokens: Mapping[str, np.ndarray],
                         idx: Mapping[str, np.ndarray | None]) -> np.ndarray:
    """log of the mean over corpora of ``exp(mean token NLL)`` (computed as a log-sum-exp: no overflow)."""
    logs = [nll[c][i].sum(axis=-1) / tokens[c][i].sum(axis=-1) if i is not None else nll[c].sum() / tokens[c].sum()
            for c, i in idx.items()]
    return np.logaddexp.reduce(np.stack(logs), axis=0) - math.log(len(logs))


def paired_bootstrap_mean_perplexity(a_window_nll: Mapping[str, Sequence[float]],
                                     b_window_nll: Mapping[str, Sequence[float]],
                                     tokens_per_window: Mapping[str, int | Sequence[int]], *,
                                     samples: int = SAMPLES, seed: int = SEED,
                                     level: float = LEVEL) -> PerplexityComparison:
    """Paired bootstrap of the ratio of mean perplexities over corpora, ``b / a`` (the study's "mean perplexity").

    The statistic is ``log(mean_c ppl_b[c] / mean_c ppl_a[c])`` with ``ppl[c] = exp(mean
    token NLL on corpus c)``, the arithmetic mean over corpora the reports rank
    by. Windows are resampled within each corpus (a stratified bootstrap; corpora in
    the order of ``a_window_nll``, each drawing its ``[samples, W_c]`` indices in turn
    from one ``numpy.random.default_rng(seed)``), the same windows for both methods.
    With one corpus this is :func:`paired_bootstrap_nll` (same draws, same numbers up
    to rounding).

    Args:
        a_window_nll, b_window_nll: ``{corpus: summed token NLL per window [W_c]}`` (nats), same corpora and windows.
        tokens_per_window: ``{corpus: predicted tokens per window}`` (one number or ``[W_c]``).
        samples, seed, level: as in :func:`paired_bootstrap_nll`.
    Returns:
        :class:`PerplexityComparison`: ``difference`` is the log ratio (nats), ``ratio`` the ratio of mean perplexities.
    Raises:
        ValueError: no corpora, different corpora, or any corpus failing :func:`paired_bootstrap_nll`'s checks.
    """
    _check_settings(samples, level)
    if not a_window_nll:
        raise ValueError("no corpora to compare")
    if set(a_window_nll) != set(b_window_nll) or set(a_window_nll) - set(tokens_per_window):
        raise ValueError(f"a, b and tokens_per_window must cover the same corpora: {sorted(a_window_nll)}, "
                         f"{sorted(b_window_nll)}, {sorted(tokens_per_window)}")
    a, b, tokens = {}, {}, {}
    for c in a_window_nll:
        a[c], b[c] = _pair(a_window_nll[c], b_window_nll[c], f"window NLL of {c}", "windows")
        tokens[c] = _tokens(tokens_per_window[c], a[c].size)
    rng = np.random.default_rng(seed)
    idx = {c: _draw(rng, a[c].size, samples) for c in a}
    whole = dict.fromkeys(a)
    estimate = float(_log_mean_perplexity(b, tokens, whole) - _log_mean_perplexity(a, tokens, whole))
    stats = _log_mean_perplexity(b, tokens, idx) - _log_mean_perplexity(a, tokens, idx)
    lo, hi = _percentiles(stats, level)
    return PerplexityComparison(estimate, lo, hi, math.exp(estimate), math.exp(lo), math.exp(hi), level, samples,
                                seed, sum(x.size for x in a.values()))


# -- zero-shot accuracy ---------------------------------------------------------------------------------------------
def wilson_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson (1927) score interval of a proportion ``successes / n`` (no continuity correction).

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``z`` the
    ``(1 + level) / 2`` normal quantile. Unlike the normal (Wald) interval it stays
    inside [0, 1] and is not empty at 0 or n successes.

    Raises:
        ValueError: ``n`` < 1, ``successes`` outside ``[0, n]``, or ``level`` outside (0, 1).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    z = NormalDist().inv_cdf((1 + level) / 2)
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # The ends are exactly 0 at 0 successes and exactly 1 at n (rounding would leave 1 - 1e-16), and the
    # interval always holds p.
    low = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    high = 1.0 if successes == n else max(p, min(1.0, centre + half))
    return low, high


def accuracy_interval(correct: Sequence[int], level: float = LEVEL) -> Interval:
    """Accuracy of one method on one task with its Wilson interval.

    Args:
        correct: 0/1 per item ``[n]`` (:attr:`lorp.run.records.TaskScore.correct`).
    Returns:
        :class:`Interval`: ``estimate`` = fraction correct; ``low``/``high`` in [0, 1].
    Raises:
        ValueError: empty, or values other than 0 and 1.
    """
    x = _correct(correct, "correct")
    k = int(x.sum())
    return Interval(k / x.size, *wilson_interval(k, x.size, level), level, "wilson")


def bootstrap_accuracy(correct: Sequence[int] | Mapping[str, Sequence[int]], *, samples: int = SAMPLES,
                       seed: int = SEED, level: float = LEVEL) -> Interval:
    """Accuracy (the mean over tasks of the per-task accuracy) with a percentile bootstrap interval.

    Items are resampled within each task (tasks in the given order, each drawing
    ``[samples, n_task]`` indices in turn from ``numpy.random.default_rng(seed)``).
    For one task prefer :func:`accuracy_interval` (Wilson); this serves the
    average over tasks that the study reports.

    Args:
        correct: 0/1 per item ``[n]``, or ``{task: 0/1 per item}``.
    Raises:
        ValueError: no tasks, an empty task, values other than 0/1, bad ``samples``/``level``.
    """
    _check_settings(samples, level)
    tasks = _tasks(correct, "correct")
    rng = np.random.default_rng(seed)
    stats = np.mean([x[_draw(rng, x.size, samples)].mean(axis=1) for x in tasks.values()], axis=0)
    estimate = float(np.mean([x.mean() for x in tasks.values()]))
    return Interval(estimate, *_percentiles(stats, level), level, "bootstrap")


def mcnemar_exact(a_correct: Sequence[int], b_correct: Sequence[int]) -> McNemar:
    """Exact McNemar (1947) test: do two methods scored on the same items differ in accuracy?

    Only discordant items count: under the null each is equally likely to favour
    either method, so ``b_only ~ Binomial(a_only + b_only, 1/2)``. The two-sided
    p-value doubles the smaller tail (capped at 1), computed in exact arithmetic.

    Args:
        a_correct, b_correct: 0/1 per item ``[n]``, the same items in the same order.
    Raises:
        ValueError: empty, different lengths, or values other than 0/1.
    """
    x, y = _correct(a_correct, "a_correct"), _correct(b_correct, "b_correct")
    if x.size != y.size:
        raise ValueError(f"a has {x.size} items, b has {y.size}; a paired comparison needs the same items")
    a_only, b_only = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    n = a_only + b_only
    tail = Fraction(sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)), 2 ** n)
    return McNemar(a_only, b_only, float(min(Fraction(1), 2 * tail)))


def paired_bootstrap_accuracy(a_correct: Sequence[int] | Mapping[str, Sequence[int]],
                              b_correct: Sequence[int] | Mapping[str, Sequence[int]], *, samples: int = SAMPLES,
                              seed: int = SEED, level: float = LEVEL) -> AccuracyComparison:
    """Paired bootstrap of the accuracy difference ``b − a`` on the same items, with the exact McNemar test.

    Items are resampled with replacement, the same items for both methods; with
    several tasks, within each task (tasks in the order of ``a_correct``, each drawing
    ``[samples, n_task]`` indices in turn from ``numpy.random.default_rng(seed)``) and
    the statistic is the mean over tasks of the per-task differences, i.e. the
    difference of the average accuracies the study reports. The percentile interval
    follows Efron & Tibshirani (1993, ch. 13); :func:`mcnemar_exact` is applied to
    all items pooled.

    Args:
        a_correct, b_correct: 0/1 per item ``[n]``, or ``{task: 0/1 per item}`` with the same tasks and items.
        samples, seed, level: the bootstrap.
    Returns:
        :class:`AccuracyComparison` (differences as fractions, not percentage points).
    Raises:
        ValueError: different tasks or item counts, empty input, values other than 0/1, bad ``samples``/``level``.
    """
    _check_settings(samples, level)
    a, b = _tasks(a_correct, "a_correct"), _tasks(b_correct, "b_correct")
    if set(a) != set(b):
        raise ValueError(f"a and b must cover the same tasks: {sorted(a)} vs {sorted(b)}")
    for t in a:
        if a[t].size != b[t].size:
            raise ValueError(f"task {t!r}: a has {a[t].size} items, b has {b[t].size}; a paired comparison needs "
                             "the same items")
    rng = np.random.default_rng(seed)
    diffs = {t: b[t] - a[t] for t in a}
    stats = np.mean([d[_draw(rng, d.size, samples)].mean(axis=1) for d in diffs.values()], axis=0)
    estimate = float(np.mean([d.mean() for d in diffs.values()]))
    lo, hi = _percentiles(stats, level)
    pooled = mcnemar_exact(np.concatenate(list(a.values())), np.concatenate([b[t] for t in a]))
    return AccuracyComparison(estimate, lo, hi, level, samples, seed, sum(x.size for x in a.values()), pooled)


# -- on study rows --------------------------------------------------------------------------------------------------
def window_series(row: Any) -> tuple[dict[str, list[float]], dict[str, int]] | None:
    """``({corpus: window NLL}, {corpus: tokens per window})`` of a study row, or ``None`` when it has none.

    ``row`` is a :class:`lorp.run.study_records.StudyCell` or :class:`lorp.run.study_records.StudyDense`
    (anything with ``perplexity``, ``window_nll`` and ``window_tokens``). ``None`` when
    any corpus lacks its windows (records written before per-window NLL was kept).
    """
    nll, tokens = getattr(row, "window_nll", None), getattr(row, "window_tokens", None)
    corpora = list(row.perplexity)
    if not nll or not tokens or any(not nll.get(c) or not tokens.get(c) for c in corpora):
        return None
    return {c: nll[c] for c in corpora}, {c: tokens[c] for c in corpora}


def compare_perplexity(reference: Any, other: Any, *, samples: int = SAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> PerplexityComparison | None:
    """``other`` against ``reference`` on mean perplexity (:func:`paired_bootstrap_mean_perplexity`; ratio other/reference).

    ``None`` when either row lacks per-window NLL or they were not evaluated on the
    same corpora and windows.
    """
    ref, oth = window_series(reference), window_series(other)
    if ref is None or oth is None or ref[1] != oth[1] or set(ref[0]) != set(oth[0]) \
            or any(len(ref[0][c]) != len(oth[0][c]) for c in ref[0]):
        return None
    return paired_bootstrap_mean_perplexity(ref[0], oth[0], ref[1], samples=samples, seed=seed, level=level)


def item_results(row: Any) -> dict[str, list[int]]:
    """``{task: 0/1 per item}`` of a study row's zero-shot tasks whose per-item results are usable.

    A task counts when its list has ``zero_shot_items`` entries (where the row says)
    and its mean equals the reported score (to 1e-9), so the intervals describe the
    number the report prints; other tasks, and rows without per-item results
    (older records), give nothing.
    """
    scores, correct = getattr(row, "zero_shot", None) or {}, getattr(row, "zero_shot_correct", None) or {}
    items = getattr(row, "zero_shot_items", None) or {}
    out = {}
    for t, score in scores.items():
        c = correct.get(t)
        if c and (t not in items or len(c) == items[t]) and abs(sum(c) / len(c) - score) <= 1e-9:
            out[t] = list(c)
    return out


def accuracy_intervals(row: Any, *, samples: int = SAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> dict[str, Interval] | None:
    """Per task the Wilson interval, and under ``"average"`` the bootstrap interval of the mean over tasks.

    ``None`` when the row has no usable per-item results; ``"average"`` only when
    every task has them.
    """
    results = item_results(row)
    if not results:
        return None
    out = {t: accuracy_interval(c, level) for t, c in results.items()}
    if set(results) == set(row.zero_shot):
        out["average"] = bootstrap_accuracy(results, samples=samples, seed=seed, level=level)
    return out


def compare_accuracy(reference: Any, other: Any, *, samples: int = SAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> dict[str, AccuracyComparison] | None:
    """``other`` against ``reference`` per shared task, and under ``"average"`` over all tasks when both have them all.

    ``None`` when the two rows share no task with usable per-item results of equal length.
    """
    ref, oth = item_results(reference), item_results(other)
    shared = [t for t in ref if t in oth and len(ref[t]) == len(oth[t])]
    if not shared:
        return None
    out = {t: paired_bootstrap_accuracy(ref[t], oth[t], samples=samples, seed=seed, level=level) for t in shared}
    if set(shared) == set(reference.zero_shot) == set(other.zero_shot):
        out["average"] = paired_bootstrap_accuracy({t: ref[t] for t in shared}, {t: oth[t] for t in shared},
                                                   samples=samples, seed=seed, level=level)
    return out


__all__ = ["LEVEL", "SAMPLES", "SEED", "AccuracyComparison", "Decision", "Interval", "McNemar",
           "PerplexityComparison", "accuracy_interval", "accuracy_intervals", "bootstrap_accuracy",
           "compare_accuracy", "compare_perplexity", "decide", "item_results", "mcnemar_exact",
           "paired_bootstrap_accuracy", "paired_bootstrap_mean_perplexity", "paired_bootstrap_nll",
           "wilson_interval", "window_series"]
