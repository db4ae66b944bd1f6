"""The selection × healing grid: does LoRP's ranking survive a training-free repair of the pruned model?

Where it runs (the default, sized for the study's time budget): the verdict pair at the detail budget,
LoRP and the best baseline chosen on the screening windows (:func:`lorp.study.confirmation.verdict_pairs`),
each healed by every healer in the notebook's ``healers``. Each healer is fitted on the first run seed's
calibration draw, and the healed model is scored on the same screening windows as the unhealed cells and,
where the study has them, on the held-out confirmation windows (:func:`lorp.run.healed_sets.heal_sets`).
:func:`add_healing` keeps the grid on :attr:`lorp.run.study_records.StudyResult.healing`.

"Healed" is what a practitioner would ship: per method, the better of healed and unhealed, chosen on
calibration data only. A builtin healer already keeps a map only where it beats no map on held-out
calibration rows (:mod:`lorp.heal.holdout`), so its output is never worse than the unhealed model there;
the best healed baseline is the baseline's form (unhealed, or healed by one of the healers) with the
lowest held-out calibration NLL, never chosen on evaluation windows. :func:`healing_markdown` answers,
with paired intervals:

1. **How much of the gap to dense each healer closes.** The share of the log-perplexity gap
   (geometric mean over corpora) from the unhealed set to dense, with the interval of the healed/unhealed
   ratio carried over. The dense gap is taken as fixed.
2. **Whether the ranking changes.** Healed LoRP against the same baseline healed the same way.
3. **Whether LoRP's loss survives healing.** Healed LoRP against the best healed baseline, on the screening
   windows and on the confirmation windows, the latter Holm-corrected over the healers of one model like the
   unhealed verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..evaluate.accuracy_uncertainty import compare_accuracy
from ..evaluate.perplexity import Perplexity
from ..evaluate.perplexity_uncertainty import compare_perplexity
from ..evaluate.uncertainty import holm, holm_decisions
from ..plugins.registry import load_registry
from ..run.healed_sets import heal_sets
from ..run.healing import check_healers
from ..run.study_records import StudyCell, StudyResult
from ..run.sweep import SweepConfig
from .attribution import detail_budget
from .confirmation import ConfirmationRow, confirmation_row, verdict_pairs
from .quality_floor import study_cell
from .load import per_sample
from .formatting import fmt_blocks, fmt_number, fmt_points_ci, fmt_ratio_ci, fmt_times, interval_method, shown


def add_healing(results: StudyResult, config: SweepConfig, folder: str | Path, healers: Any, registry: Any = None,
                executor: Any = None, allocation: str = "lorp", budget: int | None = None,
                zero_shot_tasks: Any = None) -> dict[str, Any] | None:
    """Heal the verdict pair at ``budget`` (default: the detail budget) with each of ``healers`` and keep the grid.

    The first healer's healed models also get zero-shot accuracy on ``zero_shot_tasks`` (``None``: the sweep's
    tasks; each one of them, the detail cells' items), the others perplexity only: zero-shot is the study's
    costliest stage. Where ``results`` has a
    confirmation set, every healed model is also scored on its windows (same count per corpus).

    Args:
        healers: healer names (a comma-separated string or a sequence, checked before any work); ``none`` is
            the unhealed cell itself and is skipped.
    Returns:
        the record set on :attr:`StudyResult.healing` (``foldable``: per healer, whether its repair folds into the
        weights, :attr:`lorp.Healer.foldable`); ``None`` (and nothing set) without a healer. Each cell
        adds to its :class:`StudyCell` fields ``role``, ``healer``, ``fit_seconds``, ``maps``,
        ``evaluation_seconds``, ``choices`` (per run of removed blocks healed: the alpha kept or ``"identity"``),
        ``kept_maps``, ``holdout_nll_unhealed``/``holdout_nll_healed`` (mean nats on the healer's held-out
        calibration rows) and ``confirmation`` (:func:`lorp.study.confirmation.confirmation_row`, or ``None``).
    Raises:
        UnknownNameError, ConfigError, PluginError: as :func:`lorp.run.healed_sets.heal_sets`.
    """
    registry = registry or load_registry()
    names = [h for h in check_healers(registry, healers, "healers") if h != "none"]
    if not names:
        return None
    budget = budget or detail_budget(results)
    pairs = [p for p in verdict_pairs(results, allocation) if p["budget"] == budget]
    windows = int((results.confirmation or {}).get("windows") or 0)
    tasks = tuple(config.base.zero_shot_tasks if zero_shot_tasks is None else zero_shot_tasks)
    scored = heal_sets(config, folder, [p["pruned"] for p in pairs], names, registry, executor,
                       zero_shot_healers=names[:1], confirmation=windows, zero_shot_tasks=tasks)
    seed = config.cell_seeds[0]
    cells = []
    for p in pairs:
        for h in names:
            ev = scored[tuple(sorted(p["pruned"])), h]
            heal = ev.healing or {}
            record = heal.get("record") or {}
            zs = ev.zero_shot
            accuracy = {"zero_shot": {t: v.score for t, v in zs.tasks.items()},
                        "zero_shot_items": {t: v.items for t, v in zs.tasks.items()}, "zero_shot_average": zs.average,
                        "zero_shot_correct": per_sample(ev.perplexity, zs)["zero_shot_correct"]} if zs else {}
            held = heal.get("confirmation")
            cells.append({**study_cell(p["method"], budget, p["pruned"], ev.perplexity, seed).to_json(), **accuracy,
                          "role": p["role"], "healer": h, "fit_seconds": heal.get("fit_seconds"),
                          "maps": len(record.get("maps", [])), "evaluation_seconds": ev.seconds,
                          "choices": [m.get("alpha") for m in record.get("maps", [])],
                          "kept_maps": record.get("kept_maps"),
                          "holdout_nll_unhealed": record.get("holdout_nll_unhealed"),
                          "holdout_nll_healed": record.get("holdout_nll_healed"),
                          "confirmation": None if held is None else confirmation_row(
                              {c: Perplexity(**v) for c, v in held["perplexity"].items()})})
    record = {"budget": budget, "healers": names, "cells": cells, "confirmation_windows": windows or None,
              "zero_shot_tasks": list(tasks), "foldable": {h: registry.healer(h).foldable for h in names}}
    results.healing = record
    return record


#: Keys a grid cell adds to its :class:`StudyCell` fields (:func:`add_healing`).
GRID_FIELDS = ("role", "healer", "fit_seconds", "maps", "evaluation_seconds", "choices", "kept_maps",
               "holdout_nll_unhealed", "holdout_nll_healed", "confirmation")


def healed_cell(entry: dict[str, Any]) -> StudyCell:
    """A grid cell (:func:`add_healing`) as a :class:`StudyCell`: its screening evaluation, the grid's own keys
    dropped."""
    return StudyCell.from_json({k: v for k, v in entry.items() if k not in GRID_FIELDS})


def gap_closed(dense: float, unhealed: float, healed: float) -> float:
    """Share of the log-perplexity gap to dense that healing closes: ``log(unhealed / healed) / log(unhealed / dense)``
    (1: back to dense, 0: no change, negative: worse; NaN when unhealed equals dense)."""
    gap = math.log(unhealed / dense)
    return math.log(unhealed / healed) / gap if gap else float("nan")


def best_healed_baseline(results: StudyResult) -> dict[str, Any] | None:
    """The baseline in the form a practitioner would ship, chosen on calibration data only: among its unhealed
    form and each healer's, the lowest held-out calibration NLL (ties: the unhealed form, then the healers'
    order). Forms without that figure (a healer with a fixed setting) are not candidates; with none, the
    unhealed form.

    Returns:
        ``{"method", "healer" ("none": unhealed), "holdout_nll", "screening": StudyCell, "confirmation":
        ConfirmationRow or None}``, or ``None`` when the grid has no baseline.
    """
    r = results
    grid = r.healing or {}
    entries = [e for e in grid.get("cells", []) if e["role"] == "best baseline"]
    if not entries:
        return None
    method, budget = entries[0]["method"], grid["budget"]
    unhealed = next((e["holdout_nll_unhealed"] for e in entries if e.get("holdout_nll_unhealed") is not None), None)
    options = [("none", unhealed, None)] + [(e["healer"], e.get("holdout_nll_healed"), e) for e in entries]
    known = [o for o in options if o[1] is not None]
    healer, nll, entry = min(known, key=lambda o: o[1]) if known else options[0]
    if entry is None:
        plain = next((c for c in r.cells if c.method == method and c.budget == budget), None)
        held = next((e for e in (r.confirmation or {}).get("cells", [])
                     if e["method"] == method and e["budget"] == budget), None)
        screening, confirmation = plain, held and ConfirmationRow(held)
    else:
        screening = healed_cell(entry)
        confirmation = ConfirmationRow(entry["confirmation"]) if entry.get("confirmation") else None
    return {"method": method, "healer": healer, "holdout_nll": nll, "screening": screening,
            "confirmation": confirmation}


def healing_rows(results: StudyResult) -> list[dict[str, Any]]:
    """Per (method, healer) of the grid: perplexity unhealed and healed, the gap closed with its interval, what
    the healer kept, and the comparisons against the same baseline healed alike and against the best healed
    baseline (:func:`best_healed_baseline`), on the screening windows and on the confirmation windows.

    Rows ``{"method", "role", "healer", "pruned", "unhealed", "healed", "closed", "closed_low", "closed_high",
    "vs_unhealed", "vs_same_healer", "vs_best_healed", "best_healed", "best_same", "accuracy_unhealed",
    "accuracy_healed", "acc_vs_same_healer", "fit_seconds", "maps", "choices", "kept_maps",
    "holdout_nll_unhealed", "holdout_nll_healed", "confirmation_healed", "conf_vs_best_healed", "p_holm",
    "decision"}``. Perplexity comparisons are
    :class:`lorp.evaluate.perplexity_uncertainty.PerplexityComparison`, the accuracy one
    :func:`lorp.evaluate.accuracy_uncertainty.compare_accuracy`'s average, or ``None``. ``p_holm`` and
    ``decision`` (LoRP rows with a confirmation comparison) are Holm-corrected over those rows of this model.
    """
    r = results
    grid = r.healing or {}
    budget = grid.get("budget")
    plain = {c.method: c for c in r.cells if c.budget == budget}
    entries = grid.get("cells", [])
    healed = {(e["method"], e["healer"]): healed_cell(e) for e in entries}
    baselines = [(e["method"], e["healer"]) for e in entries if e["role"] == "best baseline"]
    best = best_healed_baseline(r)
    best_name = None if best is None else (f"{best['method']} unhealed" if best["healer"] == "none"
                                           else f"{best['method']} + {best['healer']}")
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
        mine = e["role"] == "lorp"
        held = ConfirmationRow(e["confirmation"]) if e.get("confirmation") else None
        rows.append({"method": e["method"], "role": e["role"], "healer": e["healer"], "pruned": e["pruned"],
                     "unhealed": before.mean_perplexity if before is not None else None,
                     "healed": cell.mean_perplexity, "closed": closed, "closed_low": low, "closed_high": high,
                     "vs_unhealed": vs_unhealed,
                     "vs_same_healer": compare_perplexity(same, cell) if mine and same else None,
                     "vs_best_healed": compare_perplexity(best["screening"], cell)
                     if mine and best and best["screening"] is not None else None,
                     "best_healed": best_name, "best_same": same_key[0] if same_key else None,
                     "accuracy_unhealed": same_tasks_average(before, cell),
                     "accuracy_healed": cell.zero_shot_average,
                     "acc_vs_same_healer": _accuracy(same, cell) if mine and same else None,
                     "fit_seconds": e.get("fit_seconds"), "maps": e.get("maps"), "choices": e.get("choices"),
                     "kept_maps": e.get("kept_maps"), "holdout_nll_unhealed": e.get("holdout_nll_unhealed"),
                     "holdout_nll_healed": e.get("holdout_nll_healed"),
                     "confirmation_healed": held.mean_perplexity if held else None,
                     "conf_vs_best_healed": compare_perplexity(best["confirmation"], held)
                     if mine and held and best and best["confirmation"] is not None else None,
                     "p_holm": None, "decision": None})
    family = [row for row in rows if row["conf_vs_best_healed"] is not None]
    tests = [row["conf_vs_best_healed"] for row in family]
    decisions = holm_decisions([k.p_value for k in tests], [k.difference for k in tests], better="lower")
    for row, adjusted, decision in zip(family, holm([k.p_value for k in tests]), decisions):
        row["p_holm"], row["decision"] = adjusted, decision
    return rows


def _zero_shot_scope(grid: Mapping[str, Any]) -> str:
    tasks = grid.get("zero_shot_tasks")
    if tasks is not None and not tasks:
        return "No zero-shot accuracy after healing in this run (`healed_zero_shot_tasks`: none)."
    on = f" on {', '.join(tasks)}" if tasks else ""
    return (f"Zero-shot accuracy (the first healer only{on}, the detail cells' items; the unhealed average over the "
            f"same tasks) compares with {interval_method('items')}.")


def same_tasks_average(unhealed: StudyCell | None, healed: StudyCell) -> float | None:
    """The unhealed cell's mean zero-shot accuracy over the tasks the healed cell was scored on (the grid may
    score fewer tasks than the study: ``healed_zero_shot_tasks``), so the two averages are over the same items;
    ``None`` without both."""
    if unhealed is None or not unhealed.zero_shot or not healed.zero_shot:
        return None
    scores = [unhealed.zero_shot[t] for t in healed.zero_shot if t in unhealed.zero_shot]
    return sum(scores) / len(scores) if len(scores) == len(healed.zero_shot) else None


def kept_in_words(choices: Any) -> str:
    """What a healer kept per run of removed blocks: ``"0.1, identity, 1"`` (``–`` when not recorded)."""
    if not choices:
        return "–"
    return ", ".join("identity" if c == "identity" else "?" if c is None else f"α {c:g}" for c in choices)


def _accuracy(reference: StudyCell, other: StudyCell) -> Any:
    """Mean zero-shot accuracy of ``other`` minus ``reference`` with its paired interval, or ``None`` without items."""
    if reference.zero_shot_correct is None or other.zero_shot_correct is None:
        return None
    return (compare_accuracy(reference, other) or {}).get("average")


def _decided(decision: str | None) -> str:
    return {"loses": "LoRP's loss survives healing", "wins": "LoRP wins after healing"}.get(
        decision or "", "no difference was shown after healing")


def healing_answers(results: StudyResult) -> list[str]:
    """The grid's answers in words, the held-out verdict first (empty without a grid)."""
    r = results
    rows = healing_rows(r)
    if not rows:
        return []
    out = []
    windows = (r.healing or {}).get("confirmation_windows")
    for row in (x for x in rows if x["role"] == "lorp" and x["conf_vs_best_healed"] is not None):
        k = row["conf_vs_best_healed"]
        out.append(f"On the held-out confirmation windows ({windows} per corpus), LoRP + `{row['healer']}` against "
                   f"the best healed baseline ({row['best_healed']}, chosen on calibration data): {fmt_ratio_ci(k)}, "
                   f"Holm p {row['p_holm']:.2g}: {_decided(row['decision'])}.")
    for row in (x for x in rows if x["role"] == "lorp"):
        k = row["vs_best_healed"]
        if k is not None:
            out.append(f"On the screening windows (which chose the baseline), LoRP + `{row['healer']}` against the "
                       f"best healed baseline ({row['best_healed']}): {fmt_ratio_ci(k)}; {_decided(k.decision)}.")
        k = row["vs_same_healer"]
        if k is not None:
            out.append(f"Ranking with `{row['healer']}` on both: LoRP healed has {fmt_ratio_ci(k)} the perplexity of "
                       f"the best baseline healed alike, {row['best_same']}: {shown(k.decision)}.")
        k = row["acc_vs_same_healer"]
        if k is not None:
            out.append(f"Zero-shot accuracy with `{row['healer']}` on both: LoRP healed minus the best baseline "
                       f"healed alike, {fmt_points_ci(k)} points: {shown(k.decision)}.")
    for row in rows:
        if row["closed"] is not None:
            interval = "" if row["closed_low"] is None else f" [{row['closed_low']:.2f}, {row['closed_high']:.2f}]"
            out.append(f"`{row['healer']}` closes {row['closed']:.2f}{interval} of {row['method']}'s "
                       "log-perplexity gap to dense.")
    for row in rows:
        choices = row["choices"] or []
        if row["kept_maps"] is not None and row["kept_maps"] < len(choices):
            what = ("kept no map: none beat no repair on its held-out calibration rows, so this healed model is "
                    "the unhealed one" if row["kept_maps"] == 0 else
                    f"kept the identity for {len(choices) - row['kept_maps']} of {len(choices)} runs of removed "
                    f"blocks ({kept_in_words(choices)})")
            out.append(f"`{row['healer']}` on {row['method']}'s set {fmt_blocks(row['pruned'])} {what}.")
    return out


def healing_markdown(results: StudyResult) -> str:
    """``healing.md``: the answers (held-out verdict first), what ran where, then the grid table."""
    r = results
    grid = r.healing
    if not grid:
        return "_No healing grid: the study ran without healers (`healers`)._\n"
    rows = healing_rows(r)
    best = best_healed_baseline(r)
    windows = grid.get("confirmation_windows")
    where = (f"and on {windows} held-out confirmation windows per corpus (disjoint from the screening windows; "
             "Holm-corrected over this model's healers)" if windows else
             "only: this study has no confirmation windows")
    lines = [f"# Selection × healing at budget {grid['budget']}", "",
             *[f"- {a}" for a in healing_answers(r)], "",
             f"Where it ran: the verdict pair at the detail budget (LoRP and the best baseline chosen on the "
             f"screening windows), healed by {', '.join(f'`{h}`' for h in grid['healers'])}, each fitted on the "
             "first run seed's calibration draw and scored on the same screening windows as the unhealed cells "
             f"{where}. Each healer keeps a map for a run of removed blocks only where it lowers the next-token NLL "
             "of every 4th calibration sequence, held out of the fit; otherwise the identity (no map). The best "
             "healed baseline is the baseline's form, unhealed or healed, with the lowest held-out calibration NLL"
             + (f": {best['method']} {'unhealed' if best['healer'] == 'none' else '+ ' + best['healer']}"
                if best else "") + ". Ratios are healed over reference perplexity "
             f"(geometric mean over corpora) with {interval_method('windows')}. The gap closed is "
             "log(unhealed / healed) / log(unhealed / dense), its interval that of the healed/unhealed ratio "
             "with the dense gap taken as fixed. " + _zero_shot_scope(grid), "",
             "| method | role | healer | removed | kept per run | held-out calibration NLL unhealed → healed | "
             "unhealed | healed | gap closed | healed / unhealed | confirmation: healed | "
             "zero-shot unhealed → healed | fit (s) |",
             "|---|---|---|---|---|---|---:|---:|---:|---|---:|---|---:|"]
    for row in rows:
        closed = "–" if row["closed"] is None else (
            f"{row['closed']:.2f}" + ("" if row["closed_low"] is None
                                      else f" [{row['closed_low']:.2f}, {row['closed_high']:.2f}]"))
        ratio = fmt_ratio_ci(row["vs_unhealed"]) if row["vs_unhealed"] is not None else "–"
        acc = "–" if row["accuracy_healed"] is None else (
            f"{fmt_number(row['accuracy_unhealed'] and 100 * row['accuracy_unhealed'])} → {100 * row['accuracy_healed']:.1f} %")
        nll = "–" if row["holdout_nll_healed"] is None else (
            f"{row['holdout_nll_unhealed']:.4f} → {row['holdout_nll_healed']:.4f}")
        lines.append(f"| {row['method']} | {row['role']} | {row['healer']} | {fmt_blocks(row['pruned'])} | "
                     f"{kept_in_words(row['choices'])} | {nll} | "
                     f"{fmt_number(row['unhealed'], 2)} | {fmt_number(row['healed'], 2)} | {closed} | {ratio} | "
                     f"{fmt_number(row['confirmation_healed'], 2)} | {acc} | {fmt_number(row['fit_seconds'], 1)} |")
    return "\n".join(lines) + "\n"


def healed_answer(studies: Mapping[str, StudyResult]) -> str | None:
    """One Markdown line answering "does LoRP beat its baselines after healing?" for the index and the verdict.

    Per model and healer, LoRP healed against the best healed baseline (:func:`best_healed_baseline`) on the
    held-out confirmation windows, Holm-corrected over that model's healers (:func:`healing_rows`); then, where
    healing lowers a set's screening perplexity but lowers its zero-shot accuracy too, that disagreement, in
    numbers. ``None`` when no study has a grid with confirmation windows.
    """
    held, disagree = [], []
    for name, r in studies.items():
        for row in healing_rows(r):
            if row["role"] == "lorp" and row["conf_vs_best_healed"] is not None:
                held.append((name, row))
            if (row["unhealed"] is not None and row["healed"] < row["unhealed"]
                    and row["accuracy_unhealed"] is not None and row["accuracy_healed"] is not None
                    and row["accuracy_healed"] < row["accuracy_unhealed"]):
                disagree.append(f"`{row['healer']}` lowers {row['method']}'s perplexity on {name} "
                                f"({fmt_number(row['unhealed'], 1)} → {fmt_number(row['healed'], 1)}) but its "
                                f"zero-shot accuracy falls from {100 * row['accuracy_unhealed']:.1f} % to "
                                f"{100 * row['accuracy_healed']:.1f} %")
    if not held:
        return None
    ks = [row["conf_vs_best_healed"] for _, row in held]
    ratios = sorted(k.ratio for k in ks)
    span = f"{fmt_times(ratios[0])}×" if fmt_times(ratios[0]) == fmt_times(ratios[-1]) else \
        f"{fmt_times(ratios[0])}× to {fmt_times(ratios[-1])}×"
    decisions = [row["decision"] for _, row in held]
    healers = ", ".join(dict.fromkeys(f"`{row['healer']}`" for _, row in held))
    line = (f"**After healing** ({healers}, fitted on calibration data only), against the best baseline in its best "
            f"form, unhealed or healed, chosen on held-out calibration text: on held-out confirmation windows LoRP's "
            f"perplexity is {span} that baseline's (95 % intervals from {fmt_times(min(k.ratio_low for k in ks))} to "
            f"{fmt_times(max(k.ratio_high for k in ks))}): worse shown in {decisions.count('loses')} of {len(held)} "
            f"(model, healer) settings, better shown in {decisions.count('wins')}, after Holm's correction over each "
            "model's healers.")
    if disagree:
        line += " Perplexity and accuracy can disagree after healing: " + "; ".join(disagree) + "."
    return line


def healing_summary(studies: Mapping[str, StudyResult]) -> str:
    """The summary's ``healing.md``: per model and healer, the answers in one row each (models without a grid are
    listed as such)."""
    lines = ["| model | budget | healer | LoRP ÷ best healed baseline, confirmation windows (Holm) | "
             "LoRP ÷ best healed baseline, screening windows | LoRP ÷ baseline, both healed alike | "
             "gap closed: LoRP | gap closed: best baseline | kept per run: LoRP; baseline |",
             "|---|---:|---|---|---|---|---|---|---|"]
    missing = []
    for name, results in studies.items():
        r = results
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
                return "–" if k is None else f"{fmt_ratio_ci(k)}, {shown(k.decision)}"
            held = "–" if not mine or mine["conf_vs_best_healed"] is None else (
                f"{fmt_ratio_ci(mine['conf_vs_best_healed'])}, p {mine['p_holm']:.2g}, {shown(mine['decision'])}")
            lines.append(f"| {name} | {r.healing['budget']} | {healer} | {held}"
                         + (f" ({mine['best_healed']})" if mine and mine["best_healed"] else "") + " | "
                         f"{versus(mine and mine['vs_best_healed'])} | {versus(mine and mine['vs_same_healer'])} | "
                         f"{closed(mine)} | {closed(base)} | {kept_in_words(mine and mine['choices'])}; "
                         f"{kept_in_words(base and base['choices'])} |")
    head = ("# Selection × healing, per model\n\nEach model's verdict pair at its detail budget, healed by each "
            "healer (fitted on calibration data only; a map is kept only where it beats none on held-out "
            "calibration rows) and scored on the screening and the held-out confirmation windows. The best healed "
            "baseline is the baseline's form, unhealed or healed, with the lowest held-out calibration NLL. Ratios "
            "are LoRP's perplexity over the baseline's with 95 % paired intervals over windows; on the confirmation "
            "windows the outcome is Holm-corrected over each model's healers (details in each model's "
            "`healing.md`). Better or worse shown: the interval excludes 1.\n\n")
    tail = f"\nNo healing grid: {', '.join(missing)}.\n" if missing else ""
    return head + "\n".join(lines) + "\n" + tail


__all__ = ["GRID_FIELDS", "add_healing", "best_healed_baseline", "gap_closed", "healed_cell", "healing_answers", "healing_markdown",
           "healing_rows", "healing_summary", "kept_in_words"]
