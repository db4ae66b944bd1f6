"""The quality floors every method should beat: the last blocks and the random draws' distribution, said in
words (a floor on perplexity; the floor on time is :mod:`lorp.evaluate.compute_floor`).

A method that cannot beat removing the deepest blocks (``last``), or that lands above the median of
random removals, has learnt nothing useful about which blocks matter. :func:`add_random_floor`
scores ``draws`` random removed sets at the detail budget on the screening windows
(:func:`lorp.run.screening.random_floor`) into :attr:`lorp.run.study_records.StudyResult.random_floor`;
:func:`floor_markdown` places every method against that distribution (median and range) and against
``last``, and :func:`floor_losses` says where LoRP loses to either.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..evaluate.perplexity import Perplexity, geometric_mean_perplexity
from ..evaluate.perplexity_uncertainty import compare_perplexity
from ..run.screening import random_floor
from ..run.study_records import StudyCell, StudyResult
from ..run.sweep import SweepConfig
from .attribution import detail_budget
from .formatting import fmt_blocks, fmt_number, interval_method, fmt_ratio_ci
from .load import per_sample


def study_cell(method: str, budget: int, pruned: list[int], perplexity: Mapping[str, Perplexity],
               seed: int = 0) -> StudyCell:
    """A removed set scored outside the sweep's cells, as a study row (what the interval helpers read).

    ``parameters`` is 0: not measured for these rows; ``seconds["evaluation"]``: the perplexity's when computed.
    """
    return StudyCell(method=method, budget=budget, pruned=sorted(pruned),
                     perplexity={c: p.perplexity for c, p in perplexity.items()},
                     mean_perplexity=geometric_mean_perplexity(perplexity), parameters=0, seed=seed,
                     seconds={"evaluation": float(sum(p.seconds for p in perplexity.values()))},
                     **{k: v for k, v in per_sample(perplexity, None).items() if k != "zero_shot_correct"})


def add_random_floor(results: StudyResult, config: SweepConfig, folder: str | Path, draws: int, registry: Any = None,
                     executor: Any = None, budget: int | None = None) -> dict[str, Any] | None:
    """Score ``draws`` random removed sets at ``budget`` (default: the detail budget) and keep them on ``results``.

    Returns:
        the record set on :attr:`StudyResult.random_floor`: ``{"budget", "draws": [StudyCell JSON with
        "draw"]}``; ``None`` (and nothing set) when ``draws`` is 0.
    Raises:
        ConfigError: as :func:`lorp.run.screening.floor_draws`.
    """
    if not draws:
        return None
    budget = budget or detail_budget(results)
    rows = random_floor(config, folder, budget, draws, results.num_blocks, registry, executor)
    record = {"budget": budget, "draws": [{**study_cell("random draw", budget, r["pruned"], r["perplexity"],
                                                        r["seed"]).to_json(), "draw": r["draw"]}
                                          for r in rows]}
    results.random_floor = record
    return record


def floor_cells(results: StudyResult) -> list[StudyCell]:
    """The random floor's draws as study rows (empty without a floor)."""
    floor = results.random_floor or {}
    return [StudyCell.from_json(d) for d in floor.get("draws", [])]


def floor_summary(results: StudyResult) -> dict[str, Any] | None:
    """``{"budget", "draws", "median", "low", "high"}`` of the random draws' geometric mean perplexity; ``None``
    without a floor."""
    cells = floor_cells(results)
    if not cells:
        return None
    ppl = [c.mean_perplexity for c in cells]
    return {"budget": cells[0].budget, "draws": len(ppl), "median": statistics.median(ppl), "low": min(ppl),
            "high": max(ppl)}


def floor_losses(results: StudyResult, allocation: str = "lorp") -> dict[str, list[int]]:
    """Budgets where LoRP loses to a floor: ``{"`last`": [...], "the random median": [...]}``.

    Against ``last``: the paired t-interval of LoRP's geometric mean perplexity over ``last``'s lies
    wholly above 1 (screening windows). Against the random floor: LoRP's geometric mean perplexity is
    above the median of the draws at their budget (a place in a distribution, not a test).
    """
    r = results
    out: dict[str, list[int]] = {"`last`": [], "the random median": []}
    for b in sorted({c.budget for c in r.cells}):
        lorp = next((c for c in r.cells if c.method == allocation and c.budget == b), None)
        last = next((c for c in r.cells if c.method == "last" and c.budget == b), None)
        if lorp is not None and last is not None:
            k = compare_perplexity(last, lorp)
            if k is not None and k.decision == "loses":
                out["`last`"].append(b)
    floor = floor_summary(r)
    lorp = floor and next((c for c in r.cells if c.method == allocation and c.budget == floor["budget"]), None)
    if floor and lorp is not None and lorp.mean_perplexity > floor["median"]:
        out["the random median"].append(floor["budget"])
    return out


def floor_markdown(results: StudyResult, allocation: str = "lorp") -> str:
    """Markdown: the random draws (median and range), every method at their budget placed against them, every
    method against ``last`` at each budget, and in words where LoRP loses to either."""
    r = results
    lines = []
    floor, cells = floor_summary(r), floor_cells(r)
    if floor:
        b = floor["budget"]
        lines += [f"### The random floor at budget {b}", "",
                  f"{floor['draws']} removed sets of {b} blocks, each drawn uniformly among the removable blocks, "
                  f"scored on the screening windows: geometric mean perplexity **median {fmt_number(floor['median'])}**, "
                  f"range {fmt_number(floor['low'])} to {fmt_number(floor['high'])}.", "",
                  "| method | geometric mean perplexity | random draws it beats | ÷ random median |",
                  "|---|---:|---:|---:|"]
        for c in sorted((c for c in r.cells if c.budget == b), key=lambda c: c.mean_perplexity):
            beaten = sum(c.mean_perplexity < d.mean_perplexity for d in cells)
            lines.append(f"| {c.method} | {fmt_number(c.mean_perplexity)} | {beaten} of {len(cells)} | "
                         f"{c.mean_perplexity / floor['median']:.2f}× |")
        lines += ["", "| draw | removed blocks | geometric mean perplexity |", "|---:|---|---:|"]
        lines += [f"| {i} | {fmt_blocks(c.pruned)} | {fmt_number(c.mean_perplexity)} |" for i, c in enumerate(cells)]
        lines.append("")
    else:
        lines += ["_No random floor in this run (set random_draws above 0)._", ""]
    rows = []
    for b in sorted({c.budget for c in r.cells}):
        last = next((c for c in r.cells if c.method == "last" and c.budget == b), None)
        if last is None:
            continue
        for c in (c for c in r.cells if c.budget == b and c is not last):
            k = compare_perplexity(last, c)
            rows.append(f"| {b} | {c.method} | {fmt_ratio_ci(k) if k else f'{c.mean_perplexity / last.mean_perplexity:.2f}×'}"
                        f" | {k.decision if k else '–'} |")
    if rows:
        lines += ["### Against the last blocks", "", "| budget | method | ÷ `last` [95 % CI] | outcome |",
                  "|---:|---|---:|---|", *rows, "",
                  f"Geometric mean perplexity over `last`'s at the same budget: {interval_method('screening windows')}.",
                  ""]
    losses = floor_losses(r, allocation)
    said = [f"**LoRP loses to {what} at budget{'s' if len(bs) > 1 else ''} {', '.join(map(str, bs))}.**"
            for what, bs in losses.items() if bs]
    lines.append(" ".join(said) if said else "LoRP loses to neither `last` nor the random median here.")
    return "\n".join(lines) + "\n"


__all__ = ["add_random_floor", "floor_cells", "floor_losses", "floor_markdown", "floor_summary", "study_cell"]
