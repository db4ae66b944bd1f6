"""How the reports write numbers: values, ratios and intervals, and what they say when a measurement is missing."""

from __future__ import annotations

from collections.abc import Sequence

from ..evaluate.accuracy_uncertainty import AccuracyComparison
from ..evaluate.perplexity_uncertainty import PerplexityComparison
from ..evaluate.uncertainty import LEVEL, SAMPLES, SEED
from ..run.study_records import StudyCell


def fmt_number(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}" if abs(x) < 1e5 else f"{x:.2e}"


#: Footnotes of reports on records without per-window NLL or per-item zero-shot results (older runs).
NO_WINDOW_NLL = "_No per-window NLL: intervals unavailable._"


NO_ITEM_RESULTS = "_No per-item zero-shot results: intervals unavailable._"


def fmt_times(x: float) -> str:
    """A perplexity ratio: ``1.14``, ``72.5``, ``1.10e+04``, ``3.2e-03``; three decimals near 1 (``1.003``), so a
    bound that excludes parity never prints as ``1.00``, and a small ratio never as ``0.00``."""
    if x != 1.0 and 0.995 <= x < 1.005:
        return f"{x:.3f}"
    if 0 < x < 0.01:  # a ratio far below 1 (a method hundreds of times better than a floor) keeps its size
        return f"{x:.1e}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1e4 else f"{x:.2e}"


def fmt_ratio_ci(k: PerplexityComparison) -> str:
    return f"{fmt_times(k.ratio)}× [{fmt_times(k.ratio_low)}, {fmt_times(k.ratio_high)}]"


def fmt_points_ci(k: AccuracyComparison) -> str:
    return f"{100 * k.difference:+.1f} [{100 * k.low:+.1f}, {100 * k.high:+.1f}]"


def interval_method(what: str) -> str:
    """How an interval was computed: perplexity (``what`` mentions windows) by a paired t over the per-window log
    ratios, accuracy (items) by a paired percentile bootstrap."""
    if what == "items":
        return (f"{100 * LEVEL:.0f} % paired percentile bootstrap over the items both methods share "
                f"({SAMPLES} resamples, seed {SEED})")
    text = (f"{100 * LEVEL:.0f} % paired t-interval over the per-window log perplexity ratios of the {what} both "
            "methods share (geometric mean over corpora: Welch-Satterthwaite degrees of freedom)")
    if "items" in what:
        text += f"; accuracy: a paired percentile bootstrap over items ({SAMPLES} resamples, seed {SEED})"
    return text


def windows_per_corpus(cells: Sequence[StudyCell]) -> str:
    counts = sorted({len(v) for c in cells if c.window_nll for v in c.window_nll.values()})
    return "/".join(map(str, counts)) or "?"


def fmt_blocks(blocks: Sequence[int]) -> str:
    return "{" + ", ".join(map(str, sorted(blocks))) + "}" if len(blocks) else "none"


def shown(decision: str) -> str:
    """A comparison's outcome in the reports' words: ``"wins"`` → better shown, ``"loses"`` → worse shown,
    ``"undecided"`` → not shown (its interval holds zero: no difference was shown, which is not no difference)."""
    return {"wins": "better shown", "loses": "worse shown"}.get(decision, "not shown")
