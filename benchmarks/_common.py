"""Shared helpers of the benchmarks: repeated, interleaved timing and the figure record."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One benchmark figure: ``ratio`` (median over repeats) with its spread, next to its goal."""

    number: int
    name: str
    model: str
    ratio: float
    spread: tuple[float, float]
    goal: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def line(self) -> str:
        status = {True: "met", False: "MISSED", None: "reported"}[self.met]
        return (f"[{self.number}] {self.name} on {self.model}: {self.ratio:.3f} "
                f"(min {self.spread[0]:.3f}, max {self.spread[1]:.3f}); goal {self.goal}: {status}")


def interleaved(a: Callable[[], Any], b: Callable[[], Any], repeats: int,
                warmup: bool = True) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately (``a, b, b, a, a, b, ...``), after one warm-up each; seconds per run."""
    if warmup:
        a(), b()
    ta, tb = [], []
    for i in range(repeats):
        order = (a, b) if i % 2 == 0 else (b, a)
        for fn in order:
            t = time.perf_counter()
            fn()
            (ta if fn is a else tb).append(time.perf_counter() - t)
    return ta, tb


def interleaved_pairs(a: Callable[[Any], Any], b: Callable[[Any], Any], items: Sequence[Any],
                      repeats: int) -> tuple[list[list[float]], list[list[float]]]:
    """Time ``a(item)`` and ``b(item)`` back to back for every item, ``repeats`` times over ``items``.

    Each pair runs its two calls one right after the other, and the order
    alternates from one pair to the next, counting across repeats (``a b``,
    ``b a``, ``a b``, ...), so a change in the machine's load hits both sides
    of a pair alike. No warm-up: call each once before.

    Returns:
        ``(ta, tb)``: ``ta[r][i]`` is the wall time of ``a(items[i])`` in repeat
        ``r``, in seconds (likewise ``tb`` for ``b``).
    """
    ta: list[list[float]] = []
    tb: list[list[float]] = []
    k = 0
    for _ in range(repeats):
        ra, rb = [], []
        for item in items:
            for fn in ((a, b) if k % 2 == 0 else (b, a)):
                t = time.perf_counter()
                fn(item)
                (ra if fn is a else rb).append(time.perf_counter() - t)
            k += 1
        ta.append(ra)
        tb.append(rb)
    return ta, tb


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile of ``values`` (inclusive method; all three equal for one value)."""
    if len(values) == 1:
        return (values[0],) * 3
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def ratio_stats(num: list[float], den: list[float]) -> tuple[float, tuple[float, float]]:
    """Median and (min, max) of the pairwise ratios ``num[i] / den[i]``."""
    r = [x / y for x, y in zip(num, den)]
    return statistics.median(r), (min(r), max(r))


def emit_markdown(lines: list[str], out: Path | None) -> str:
    """Print a benchmark's Markdown ``lines`` after a blank line and, with ``out``, also write them there; returns
    the text."""
    text = "\n".join(lines)
    print("\n" + text)
    if out is not None:
        out.write_text(text + "\n")
    return text
