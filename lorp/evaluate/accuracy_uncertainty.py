"""How sure a zero-shot accuracy, or a comparison of two, is: Wilson, bootstrap and exact McNemar.

:func:`wilson_interval` / :func:`accuracy_interval` for one method, :func:`bootstrap_accuracy`
for the average over tasks, :func:`paired_bootstrap_accuracy` and :func:`mcnemar_exact` for
two methods on the same items, and :func:`accuracy_intervals` / :func:`compare_accuracy` on
study rows. Conventions, defaults and sources: :mod:`lorp.evaluate.uncertainty`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Any

import numpy as np

from .uncertainty import (LEVEL, SAMPLES, SEED, Decision, Interval, check_bootstrap_settings, check_correct, resample_indices, percentile_interval,
                           check_tasks, decide)


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
    x = check_correct(correct, "correct")
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
    check_bootstrap_settings(samples, level)
    tasks = check_tasks(correct, "correct")
    rng = np.random.default_rng(seed)
    stats = np.mean([x[resample_indices(rng, x.size, samples)].mean(axis=1) for x in tasks.values()], axis=0)
    estimate = float(np.mean([x.mean() for x in tasks.values()]))
    return Interval(estimate, *percentile_interval(stats, level), level, "bootstrap")


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
    x, y = check_correct(a_correct, "a_correct"), check_correct(b_correct, "b_correct")
    if x.size != y.size:
        raise ValueError(f"a has {x.size} items, b has {y.size}; a paired comparison needs the same items")
    a_only, b_only = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    n = a_only + b_only
    tail = Fraction(sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)), 2 ** n)
    return McNemar(a_only, b_only, float(min(Fraction(1), 2 * tail)))


#: Power at which :func:`detectable_difference` sizes the smallest detectable difference.
POWER = 0.8


def detectable_difference(items: int, discordant: float, *, level: float = LEVEL, power: float = POWER) -> float | None:
    """Smallest paired accuracy difference a two-sided McNemar test detects on ``items`` items.

    Connor (1987, Biometrics 43:207-211), the sample size of a paired binary comparison:
    ``n = (z_a·√ψ + z_b·√(ψ − δ²))² / δ²`` with ``ψ`` the share of discordant items (one
    method right, the other wrong), ``z_a`` the ``(1 + level) / 2`` and ``z_b`` the ``power``
    normal quantiles. This solves it for ``δ`` at the given ``n`` by bisection: a true
    difference of ``δ`` (fraction of items) is found significant with probability
    ``power`` at ``α = 1 − level``. A difference can be no larger than ``ψ``.

    Args:
        items: paired items ``n`` (>= 1).
        discordant: ``ψ``, in (0, 1]: observed discordant items over ``n``.
    Returns:
        ``δ`` as a fraction in (0, ψ]; ``None`` when even ``δ = ψ`` (every discordant item
        going one way) is not detectable at this size, or ``ψ`` is 0 (no information).
    Raises:
        ValueError: ``items`` < 1, ``discordant`` outside [0, 1], ``level`` or ``power`` outside (0, 1).
    """
    if isinstance(items, bool) or int(items) != items or items < 1:
        raise ValueError(f"items must be a whole number >= 1, got {items!r}")
    if not 0 <= discordant <= 1:
        raise ValueError(f"discordant must be a share of items in [0, 1], got {discordant!r}")
    if not (0 < level < 1 and 0 < power < 1):
        raise ValueError(f"level and power must lie strictly between 0 and 1, got {level!r}, {power!r}")
    if discordant == 0:
        return None
    z_a, z_b = NormalDist().inv_cdf((1 + level) / 2), NormalDist().inv_cdf(power)

    def excess(d: float) -> float:  # increasing in d; zero at the detectable difference
        return math.sqrt(items) * d - z_a * math.sqrt(discordant) - z_b * math.sqrt(max(discordant - d * d, 0.0))

    top = min(discordant, math.sqrt(discordant))
    if excess(top) < 0:
        return None
    low, high = 0.0, top
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if excess(mid) < 0 else (low, mid)
    return high


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
    check_bootstrap_settings(samples, level)
    a, b = check_tasks(a_correct, "a_correct"), check_tasks(b_correct, "b_correct")
    if set(a) != set(b):
        raise ValueError(f"a and b must cover the same tasks: {sorted(a)} vs {sorted(b)}")
    for t in a:
        if a[t].size != b[t].size:
            raise ValueError(f"task {t!r}: a has {a[t].size} items, b has {b[t].size}; a paired comparison needs "
                             "the same items")
    rng = np.random.default_rng(seed)
    diffs = {t: b[t] - a[t] for t in a}
    stats = np.mean([d[resample_indices(rng, d.size, samples)].mean(axis=1) for d in diffs.values()], axis=0)
    estimate = float(np.mean([d.mean() for d in diffs.values()]))
    lo, hi = percentile_interval(stats, level)
    pooled = mcnemar_exact(np.concatenate(list(a.values())), np.concatenate([b[t] for t in a]))
    return AccuracyComparison(estimate, lo, hi, level, samples, seed, sum(x.size for x in a.values()), pooled)


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


__all__ = ["AccuracyComparison", "McNemar", "POWER", "accuracy_interval", "accuracy_intervals", "bootstrap_accuracy",
           "compare_accuracy", "detectable_difference", "item_results", "mcnemar_exact", "paired_bootstrap_accuracy", "wilson_interval"]
