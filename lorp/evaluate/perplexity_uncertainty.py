"""How sure a perplexity comparison is: a paired t-interval over evaluation windows, per corpus and over corpora.

Two methods scored on the same windows are compared window by window: each window's
log perplexity ratio (its mean token NLL of ``b`` minus that of ``a``) is one paired
observation. :func:`paired_t_nll` gives the interval on one corpus, :func:`paired_t_log_ratio`
the one on the geometric mean over corpora (the study's across-corpus figure), and
:func:`compare_perplexity` / :func:`compare_per_corpus` apply them to study rows.

Why a t-interval, not a percentile bootstrap: at the window counts the study uses (8
screening and 32 confirmation windows per corpus) a percentile bootstrap of a mean is
too narrow (Efron & Tibshirani 1993, §13.3: it behaves like a z-interval with the
``1/n`` variance, about 1.3× narrower than the t-interval at n = 8). The paired t-interval
holds its coverage at these sizes when the per-window log ratios are roughly symmetric,
which ``tests/test_perplexity_coverage.py`` checks by simulation (93-97 % at n = 8 and 32).
The windows are spread over the whole text (:func:`lorp.model.data.spread_slots`), far
apart from one another, so they are treated as independent; no block bootstrap is needed.

Sources: W. S. Gosset ("Student"), "The probable error of a mean", *Biometrika* 6 (1908)
1-25; B. L. Welch, "The generalization of Student's problem when several different
population variances are involved", *Biometrika* 34 (1947) 28-35 (the degrees of freedom
over corpora); F. E. Satterthwaite, *Biometrics Bulletin* 2 (1946) 110-114.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from .uncertainty import LEVEL, Decision, check_pair, check_tokens, decide

#: How the perplexity intervals are computed, as the reports name it.
METHOD = "paired t"


@dataclass(frozen=True)
class PerplexityComparison:
    """Method ``b`` against method ``a`` on the same perplexity windows (paired t-interval).

    Attributes:
        difference: ``b − a`` in nats: the mean over windows of the per-window log perplexity ratio
            (one corpus), or the mean over corpora of those (several): the log of the ratio of geometric
            mean perplexities. With windows of equal length it is the difference of mean token NLL.
        low, high: the t-interval of ``difference`` at ``level`` (``-inf``/``inf`` with one window).
        ratio, ratio_low, ratio_high: ``exp`` of the three (perplexity of ``b`` over that of ``a``).
        level: nominal coverage.
        windows: windows compared (all corpora together).
        df: degrees of freedom (``n − 1``; Welch-Satterthwaite over corpora).
        p_value: two-sided p-value of "no difference" (the t-test the interval inverts).
        method: :data:`METHOD`.
    """

    difference: float
    low: float
    high: float
    ratio: float
    ratio_low: float
    ratio_high: float
    level: float
    windows: int
    df: float
    p_value: float
    method: str = METHOD

    @property
    def decision(self) -> Decision:
        """``b`` against ``a``: wins when its perplexity is lower beyond the interval (:func:`decide`)."""
        return decide(self.low, self.high, better="lower")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decision": self.decision}


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")


def _log_ratios(a: Sequence[float], b: Sequence[float], tokens_per_window: int | Sequence[int],
                what: str) -> np.ndarray:
    """Per-window log perplexity ratio ``(b_w − a_w) / tokens_w`` (nats per token) ``[W]``."""
    x, y = check_pair(a, b, what, "windows")
    return (y - x) / check_tokens(tokens_per_window, x.size)


def _t_interval(estimate: float, variance: float, df: float, level: float, windows: int) -> PerplexityComparison:
    """The comparison from a mean, its estimated variance and degrees of freedom."""
    if df <= 0 or not math.isfinite(variance):
        low, high, p = -math.inf, math.inf, 1.0
    elif variance <= 0:  # every window moved by the same amount: no spread to be unsure about
        low = high = estimate
        p = 1.0 if estimate == 0 else 0.0
    else:
        se = math.sqrt(variance)
        q = float(stats.t.ppf((1 + level) / 2, df))
        low, high = estimate - q * se, estimate + q * se
        p = float(2 * stats.t.sf(abs(estimate) / se, df))
    return PerplexityComparison(estimate, low, high, math.exp(estimate), math.exp(low), math.exp(high), level,
                                windows, float(df), p)


def paired_t_nll(a_window_nll: Sequence[float], b_window_nll: Sequence[float],
                 tokens_per_window: int | Sequence[int], *, level: float = LEVEL) -> PerplexityComparison:
    """Paired t-interval of the log perplexity ratio ``b / a`` on the same windows of one corpus.

    Each window ``w`` gives ``x_w = (b_w − a_w) / tokens_w``, the difference of its mean
    token NLL (nats); the estimate is their mean ``x̄`` and the interval
    ``x̄ ± t_{n−1, (1+level)/2} · s / √n`` with ``s`` the sample standard deviation (ddof 1).
    ``exp`` gives the perplexity ratio. One window gives an infinite interval (undecided).

    Args:
        a_window_nll, b_window_nll: summed token NLL (nats) per window ``[W]``, same windows in the same order
            (:attr:`lorp.evaluate.perplexity.Perplexity.window_nll`).
        tokens_per_window: predicted tokens per window: one number (``T - 1``) or ``[W]``.
        level: coverage of the interval, in (0, 1).
    Returns:
        :class:`PerplexityComparison` (``difference`` in nats; ``ratio`` dimensionless).
    Raises:
        ValueError: empty or non-finite series, series of different lengths, bad token counts, or
            ``level`` outside (0, 1).
    """
    _check_level(level)
    x = _log_ratios(a_window_nll, b_window_nll, tokens_per_window, "window NLL")
    n = x.size
    variance = float(x.var(ddof=1)) / n if n > 1 else math.inf
    return _t_interval(float(x.mean()), variance, n - 1, level, n)


def paired_t_log_ratio(a_window_nll: Mapping[str, Sequence[float]], b_window_nll: Mapping[str, Sequence[float]],
                       tokens_per_window: Mapping[str, int | Sequence[int]], *,
                       level: float = LEVEL) -> PerplexityComparison:
    """Paired t-interval of the ratio of geometric mean perplexities over corpora, ``b / a``.

    The statistic is the mean over the ``C`` corpora of each corpus's mean per-window log
    ratio (:func:`paired_t_nll`), so every corpus weighs the same whatever its window
    count or perplexity level. Its variance is ``Σ_c s_c² / n_c / C²`` and its degrees of
    freedom Welch-Satterthwaite's ``(Σ v_c)² / Σ v_c² / (n_c − 1)`` with ``v_c = s_c² / n_c``.
    With one corpus this is :func:`paired_t_nll`.

    Args:
        a_window_nll, b_window_nll: ``{corpus: summed token NLL per window [W_c]}`` (nats), same corpora and windows.
        tokens_per_window: ``{corpus: predicted tokens per window}`` (one number or ``[W_c]``).
        level: as in :func:`paired_t_nll`.
    Returns:
        :class:`PerplexityComparison`: ``difference`` is the log ratio (nats), ``ratio`` the ratio of geometric means.
    Raises:
        ValueError: no corpora, different corpora, or any corpus failing :func:`paired_t_nll`'s checks.
    """
    _check_level(level)
    if not a_window_nll:
        raise ValueError("no corpora to compare")
    if set(a_window_nll) != set(b_window_nll) or set(a_window_nll) - set(tokens_per_window):
        raise ValueError(f"a, b and tokens_per_window must cover the same corpora: {sorted(a_window_nll)}, "
                         f"{sorted(b_window_nll)}, {sorted(tokens_per_window)}")
    x = {c: _log_ratios(a_window_nll[c], b_window_nll[c], tokens_per_window[c], f"window NLL of {c}")
         for c in a_window_nll}
    corpora, windows = len(x), sum(v.size for v in x.values())
    estimate = float(np.mean([v.mean() for v in x.values()]))
    if any(v.size < 2 for v in x.values()):
        return _t_interval(estimate, math.inf, 0, level, windows)
    v = {c: float(s.var(ddof=1)) / s.size for c, s in x.items()}
    total = sum(v.values())
    df = total ** 2 / sum(v[c] ** 2 / (x[c].size - 1) for c in x) if total > 0 else float(windows - corpora)
    return _t_interval(estimate, total / corpora ** 2, df, level, windows)


# -- on study rows ----------------------------------------------------------------------------------------------
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


def _paired_series(reference: Any, other: Any):
    ref, oth = window_series(reference), window_series(other)
    if ref is None or oth is None or ref[1] != oth[1] or set(ref[0]) != set(oth[0]) \
            or any(len(ref[0][c]) != len(oth[0][c]) for c in ref[0]):
        return None
    return ref, oth


def compare_perplexity(reference: Any, other: Any, *, level: float = LEVEL) -> PerplexityComparison | None:
    """``other`` against ``reference`` on the geometric mean perplexity over corpora (:func:`paired_t_log_ratio`;
    ratio other/reference).

    ``None`` when either row lacks per-window NLL or they were not evaluated on the
    same corpora and windows.
    """
    pair = _paired_series(reference, other)
    return None if pair is None else paired_t_log_ratio(pair[0][0], pair[1][0], pair[0][1], level=level)


def compare_per_corpus(reference: Any, other: Any, *, level: float = LEVEL) -> dict[str, PerplexityComparison] | None:
    """``other`` against ``reference`` on each corpus (:func:`paired_t_nll`): ``{corpus: comparison}``, or ``None``
    as in :func:`compare_perplexity`."""
    pair = _paired_series(reference, other)
    if pair is None:
        return None
    (ref, tokens), (oth, _) = pair
    return {c: paired_t_nll(ref[c], oth[c], tokens[c], level=level) for c in ref}


__all__ = ["METHOD", "PerplexityComparison", "compare_per_corpus", "compare_perplexity", "paired_t_log_ratio",
           "paired_t_nll", "window_series"]
