"""Shared helpers of the benchmarks: repeated, interleaved timing and the figure record."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


def ratio_stats(num: list[float], den: list[float]) -> tuple[float, tuple[float, float]]:
    """Median and (min, max) of the pairwise ratios ``num[i] / den[i]``."""
    r = [x / y for x, y in zip(num, den)]
    return statistics.median(r), (min(r), max(r))
