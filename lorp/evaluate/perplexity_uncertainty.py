"""How sure a perplexity comparison is: paired bootstrap over evaluation windows, per corpus and over corpora.

:func:`paired_bootstrap_nll` (one corpus: difference of mean token NLL and the perplexity
ratio), :func:`paired_bootstrap_mean_perplexity` (several corpora: ratio of the mean over
corpora of the perplexities, the number the study reports), and :func:`compare_perplexity`
on study rows. Conventions, defaults and sources: :mod:`lorp.evaluate.uncertainty`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .uncertainty import LEVEL, SAMPLES, SEED, Decision, _check_settings, _draw, _pair, _percentiles, _tokens, decide


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


__all__ = ["PerplexityComparison", "compare_perplexity", "paired_bootstrap_mean_perplexity", "paired_bootstrap_nll",
           "window_series"]
