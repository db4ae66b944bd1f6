"""The selection × healing grid: does LoRP's ranking survive a training-free repair of the pruned model?

Where it runs (the default, sized for the study's time budget): the verdict pair at the detail budget,
LoRP and the best baseline chosen on the screening windows (:func:`lorp.study.confirmation.verdict_pairs`),
each healed by every healer in the notebook's ``healers``. Each healer is fitted on the first run seed's
calibration draw, and the healed model is scored on the same screening windows as the unhealed cells
(:func:`lorp.run.healed_sets.heal_sets`). :func:`add_healing` keeps the grid on
:attr:`lorp.run.study_records.StudyResult.healing`. :func:`healing_markdown` answers three questions,
with paired intervals over the screening windows:

1. **How much of the gap to dense each healer closes.** The share of the log-perplexity gap
   (geometric mean over corpora) from the unhealed set to dense, with the interval of the healed/unhealed
   ratio carried over. The dense gap is taken as fixed.
2. **Whether the ranking changes.** Healed LoRP against the same baseline healed the same way.
3. **Whether LoRP's loss survives healing.** Healed LoRP against the best healed baseline (lowest
   perplexity over every healer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..evaluate.accuracy_uncertainty import compare_accuracy
from ..evaluate.perplexity_uncertainty import compare_perplexity
from ..plugins.registry import load_registry
from ..run.healed_sets import heal_sets
from ..run.healing import check_healers
from ..run.study_records import StudyCell, StudyResult, as_study
from ..run.sweep import SweepConfig
from .attribution import detail_budget
from .confirmation import verdict_pairs
from .floors import study_cell
from .load import per_sample
from .formatting import _blocks, _fmt, _interval_method, _points_ci, _ratio_ci, shown


def add_healing(results: StudyResult, config: SweepConfig, folder: str | Path, healers: Any, registry: Any = None,
                executor: Any = None, allocation: str = "lorp", budget: int | None = None) -> dict[str, Any] | None:
    """Heal the verdict pair at ``budget`` (default: the detail budget) with each of ``healers`` and keep the grid.

    The first healer's healed models also get zero-shot accuracy on the sweep's tasks (the detail cells'
    items), the others perplexity only: zero-shot is the study's costliest stage.

    Args:
        healers: healer names (a comma-separated string or a sequence); ``none`` is the unhealed cell itself
            and is skipped.
    Returns:
        the record set on :attr:`StudyResult.healing`; ``None`` (and nothing set) without a healer.
    Raises:
        UnknownNameError, ConfigError, PluginError: as :func:`lorp.run.healed_sets.heal_sets`.
    """
    names = [h for h in check_healers(registry or load_registry(), healers, "healers") if h != "none"]
    if not names:
        return None
    budget = budget or detail_budget(results)
    pairs = [p for p in verdict_pairs(results, allocation) if p["budget"] == budget]
    scored = heal_sets(config, folder, [p["pruned"] for p in pairs], names, registry, executor,
                       zero_shot_healers=names[:1])
    seed = config.cell_seeds[0]
    cells = []
    for p in pairs:
        for h in names:
            ev = scored[tuple(sorted(p["pruned"])), h]
            heal = ev.healing or {}
            zs = ev.zero_shot
            accuracy = {"zero_shot": {t: v.score for t, v in zs.tasks.items()},
                        "zero_shot_items": {t: v.items for t, v in zs.tasks.items()}, "zero_shot_average": zs.average,
                        "zero_shot_correct": per_sample(ev.perplexity, zs)["zero_shot_correct"]} if zs else {}
            cells.append({**study_cell(p["method"], budget, p["pruned"], ev.perplexity, seed).to_json(), **accuracy,
                          "role": p["role"], "healer": h, "fit_seconds": heal.get("fit_seconds"),
                          "maps": len((heal.get("record") or {}).get("maps", [])), "evaluation_seconds": ev.seconds})
    record = {"budget": budget, "healers": names, "cells": cells}
    results.healing = record
    return record


def _healed(entry: dict[str, Any]) -> StudyCell:
    return StudyCell.from_json({k: v for k, v in entry.items() if k not in ("role", "healer", "fit_seconds", "maps", "evaluation_seconds")})


def gap_closed(dense: float, unhealed: float, healed: float) -> float:
    """Share of the log-perplexity gap to dense that healing closes: ``log(unhealed / healed) / log(unhealed / dense)``
    (1: back to dense, 0: no change, negative: worse; NaN when unhealed equals dense)."""
    gap = math.log(unhealed / dense)
    return math.log(unhealed / healed) / gap if gap else float("nan")


def healing_rows(results: StudyResult | dict[str, Any]) -> list[dict[str, Any]]:
    """Per (method, healer) of the grid: perplexity unhealed and healed, the gap closed with its interval, the
    comparisons against the same baseline healed alike and against the best healed baseline.

    Rows ``{"method", "role", "healer", "pruned", "unhealed", "healed", "closed", "closed_low", "closed_high",
    "vs_unhealed", "vs_same_healer", "vs_best_healed", "best_healed", "accuracy_unhealed", "accuracy_healed",
    "acc_vs_same_healer", "fit_seconds", "maps"}`` (perplexity comparisons are
    :class:`lorp.evaluate.perplexity_uncertainty.PerplexityComparison`, the accuracy one
    :func:`lorp.evaluate.accuracy_uncertainty.compare_accuracy`'s average, or ``None``).
    """
    r = as_study(results)
    grid = r.healing or {}
    budget = grid.get("budget")
    plain = {c.method: c for c in r.cells if c.budget == budget}
    entries = grid.get("cells", [])
    healed = {(e["method"], e["healer"]): _healed(e) for e in entries}
    baselines = [(e["method"], e["healer"]) for e in entries if e["role"] == "best baseline"]
    best = min(baselines, key=lambda k: healed[k].mean_perplexity) if baselines else None
    rows = []
    for e in entries:
        key = (e["method"], e["healer"])
        cell, before = healed[key], plain.get(e["method"])
        vs_unhealed = compare_perplexity(before, cell) if before is not None else None
        closed = low = high = None
        if before is not None:
            closed = gap_closed(r.dense.mean_perplexity, before.mean_perplexity, cell.mean_perplexity)
            if vs_unhealed is not None:
                gap = math.log(before.mean_perplexity / r.dense.mean_perplexity)
                low, high = sorted((-math.log(vs_unhealed.ratio_high) / gap, -math.log(vs_unhealed.ratio_low) / gap)) \
                    if gap else (None, None)  # sorted: a pruned set better than dense has a negative gap
        same_key = next(((m, h) for m, h in baselines if h == e["healer"]), None)
        same = healed[same_key] if same_key else None
        rows.append({"method": e["method"], "role": e["role"], "healer": e["healer"], "pruned": e["pruned"],
                     "unhealed": before.mean_perplexity if before is not None else None,
                     "healed": cell.mean_perplexity, "closed": closed, "closed_low": low, "closed_high": high,
                     "vs_unhealed": vs_unhealed,
                     "vs_same_healer": compare_perplexity(same, cell) if e["role"] == "lorp" and same else None,
                     "vs_best_healed": compare_perplexity(healed[best], cell) if e["role"] == "lorp" and best else None,
                     "best_healed": f"{best[0]} + {best[1]}" if best else None,
                     "best_same": same_key[0] if same_key else None,
                     "accuracy_unhealed": before.zero_shot_average if before is not None else None,
                     "accuracy_healed": cell.zero_shot_average,
                     "acc_vs_same_healer": _accuracy(same, cell) if e["role"] == "lorp" and same else None,
                     "fit_seconds": e.get("fit_seconds"), "maps": e.get("maps")})
    return rows


def _accuracy(reference: StudyCell, other: StudyCell) -> Any:
    """Mean zero-shot accuracy of ``other`` minus ``reference`` with its paired interval, or ``None`` without items."""
    if reference.zero_shot_correct is None or other.zero_shot_correct is None:
        return None
    return (compare_accuracy(reference, other) or {}).get("average")


def healing_answers(results: StudyResult | dict[str, Any]) -> list[str]:
    """The grid's three answers in words (empty without a grid)."""
    rows = healing_rows(results)
    if not rows:
        return []
    out = []
    for row in rows:
        if row["closed"] is not None:
            interval = "" if row["closed_low"] is None else f" [{row['closed_low']:.2f}, {row['closed_high']:.2f}]"
            out.append(f"`{row['healer']}` closes {row['closed']:.2f}{interval} of {row['method']}'s "
                       "log-perplexity gap to dense.")
    for row in (r for r in rows if r["role"] == "lorp"):
        k = row["vs_same_healer"]
        if k is not None:
            out.append(f"Ranking with `{row['healer']}` on both: LoRP healed has {_ratio_ci(k)} the perplexity of "
                       f"the best baseline healed alike, {row['best_same']}: {shown(k.decision)}.")
        k = row["vs_best_healed"]
        if k is not None:
            survives = {"loses": "LoRP's loss survives healing", "wins": "LoRP wins after healing"}.get(
                k.decision, "no difference was shown after healing")
            out.append(f"LoRP + `{row['healer']}` against the best healed baseline ({row['best_healed']}): "
                       f"{_ratio_ci(k)}; {survives}.")
        k = row["acc_vs_same_healer"]
        if k is not None:
            out.append(f"Zero-shot accuracy with `{row['healer']}` on both: LoRP healed minus the best baseline "
                       f"healed alike, {_points_ci(k)} points: {shown(k.decision)}.")
    return out


def healing_markdown(results: StudyResult | dict[str, Any]) -> str:
    """``healing.md``: what ran where, the three answers, then the grid table."""
    r = as_study(results)
    grid = r.healing
    if not grid:
        return "_No healing grid: the study ran without healers (`healers`)._\n"
    rows = healing_rows(r)
    lines = [f"# Selection × healing at budget {grid['budget']}", "",
             *[f"- {a}" for a in healing_answers(r)], "",
             f"Where it ran: the verdict pair at the detail budget (LoRP and the best baseline chosen on the "
             f"screening windows), healed by {', '.join(f'`{h}`' for h in grid['healers'])}, each fitted on the "
             "first run seed's calibration draw (settings chosen on held-out calibration rows only) and scored "
             "on the same screening windows as the unhealed cells. Ratios are healed over reference perplexity "
             f"(geometric mean over corpora) with {_interval_method('windows')}. The gap closed is "
             "log(unhealed / healed) / log(unhealed / dense), its interval that of the healed/unhealed ratio "
             "with the dense gap taken as fixed. Zero-shot accuracy (the first healer only, the detail cells' "
             f"items) compares with {_interval_method('items')}.", "",
             "| method | role | healer | removed | unhealed | healed | gap closed | healed / unhealed | "
             "zero-shot unhealed → healed | fit (s) |",
             "|---|---|---|---|---:|---:|---:|---|---|---:|"]
    for row in rows:
        closed = "–" if row["closed"] is None else (
            f"{row['closed']:.2f}" + ("" if row["closed_low"] is None
                                      else f" [{row['closed_low']:.2f}, {row['closed_high']:.2f}]"))
        ratio = _ratio_ci(row["vs_unhealed"]) if row["vs_unhealed"] is not None else "–"
        acc = "–" if row["accuracy_healed"] is None else (
            f"{_fmt(row['accuracy_unhealed'] and 100 * row['accuracy_unhealed'])} → {100 * row['accuracy_healed']:.1f} %")
        lines.append(f"| {row['method']} | {row['role']} | {row['healer']} | {_blocks(row['pruned'])} | "
                     f"{_fmt(row['unhealed'], 2)} | {_fmt(row['healed'], 2)} | {closed} | {ratio} | {acc} | "
                     f"{_fmt(row['fit_seconds'], 1)} |")
    return "\n".join(lines) + "\n"


def healing_summary(studies: Mapping[str, StudyResult | dict[str, Any]]) -> str:
    """The summary's ``healing.md``: per model and healer, the three answers in one row each (models without a
    grid are listed as such)."""
    lines = ["| model | budget | healer | gap closed: LoRP | gap closed: best baseline | LoRP ÷ baseline, both "
             "healed alike | LoRP ÷ best healed baseline |", "|---|---:|---|---|---|---|---|"]
    missing = []
    for name, results in studies.items():
        r = as_study(results)
        rows = healing_rows(r)
        if not rows:
            missing.append(name)
            continue
        for healer in r.healing["healers"]:
            mine = next((x for x in rows if x["healer"] == healer and x["role"] == "lorp"), None)
            base = next((x for x in rows if x["healer"] == healer and x["role"] == "best baseline"), None)

            def closed(x):
                if x is None or x["closed"] is None:
                    return "–"
                ci = "" if x["closed_low"] is None else f" [{x['closed_low']:.2f}, {x['closed_high']:.2f}]"
                return f"{x['method']}: {x['closed']:.2f}{ci}"

            def versus(k):
                return "–" if k is None else f"{_ratio_ci(k)}, {shown(k.decision)}"
            lines.append(f"| {name} | {r.healing['budget']} | {healer} | {closed(mine)} | {closed(base)} | "
                         f"{versus(mine and mine['vs_same_healer'])} | "
                         f"{versus(mine and mine['vs_best_healed'])}"
                         + (f" ({mine['best_healed']})" if mine and mine["best_healed"] else "") + " |")
    head = ("# Selection × healing, per model\n\nEach model's verdict pair at its detail budget, healed by each "
            "healer (fitted on calibration data only) and scored on the screening windows; ratios are LoRP's "
            "perplexity over the baseline's with 95 % paired intervals over windows (details in each model's "
            "`healing.md`). Better or worse shown: the interval excludes 1.\n\n")
    tail = f"\nNo healing grid: {', '.join(missing)}.\n" if missing else ""
    return head + "\n".join(lines) + "\n" + tail


__all__ = ["add_healing", "gap_closed", "healing_answers", "healing_markdown", "healing_rows", "healing_summary"]
