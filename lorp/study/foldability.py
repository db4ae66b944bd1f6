"""What foldability costs: a healer that folds into the weights against one that maps the residual stream (issue 46).

A foldable healer (``linear``) leaves a standard architecture: it can only reshape what one MLP writes. A stream
healer (``residual``, :mod:`lorp.heal.residual`) maps everything the earlier blocks wrote, at the price of a module
no standard weight holds. Both run in the selection × healing grid (:func:`lorp.study.healing.add_healing`, which
records each healer's ``foldable``); this module reads the grid and answers, per (model, method), with paired
intervals over windows:

1. **How much of the gap to dense each closes**, and the stream-healed perplexity over the foldable-healed one on
   the same removed set, on the screening windows and on the held-out confirmation windows.
2. **Whether the ranking of selections changes under the stronger repair**: LoRP against the best baseline, both
   healed alike, under each healer; on the confirmation windows where the study has them, else the screening ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..evaluate.perplexity_uncertainty import PerplexityComparison, compare_perplexity
from ..run.study_records import StudyResult
from .confirmation import ConfirmationRow
from .formatting import fmt_blocks, fmt_number, fmt_ratio_ci, interval_method, shown
from .healing import healed_cell, healing_rows


def healer_kinds(results: StudyResult) -> tuple[list[str], list[str]]:
    """``(foldable healers, stream healers)`` of the grid, in its order; both empty for a grid recorded without
    ``foldable`` (before issue 46: every healer then folded)."""
    grid = results.healing or {}
    kinds = grid.get("foldable") or {}
    healers = [h for h in grid.get("healers", []) if h in kinds]
    return [h for h in healers if kinds[h]], [h for h in healers if not kinds[h]]


def _closed(row: Mapping[str, Any] | None) -> str:
    if row is None or row["closed"] is None:
        return "–"
    return f"{row['closed']:.2f}" + ("" if row["closed_low"] is None else
                                     f" [{row['closed_low']:.2f}, {row['closed_high']:.2f}]")


def foldability_rows(results: StudyResult) -> dict[str, list[dict[str, Any]]]:
    """The comparison, per foldable healer ``F`` and stream healer ``R`` of the grid.

    Returns:
        ``{"sets": [...], "ranking": [...]}``. A ``sets`` row, per method of the grid: ``{"method", "role",
        "pruned", "foldable", "stream", "row_foldable", "row_stream"}`` (the two :func:`healing_rows` rows: gap closed
        and its interval), ``"screening"`` and ``"confirmation"``: the ``R``-healed perplexity over the ``F``-healed
        one (:class:`PerplexityComparison`, or ``None`` without the windows). A ``ranking`` row, per (F, R):
        ``{"foldable", "stream", "windows" ("confirmation" or "screening"), "under_foldable", "under_stream"}``
        (LoRP healed over the best baseline healed alike, each a comparison or ``None``), ``"changes"`` (whether
        the point estimates order the two selections differently, ``None`` without both) and ``"baseline"``.
        Both lists are empty without a foldable and a stream healer.
    """
    folds, streams = healer_kinds(results)
    grid = results.healing or {}
    entries = {(e["method"], e["healer"]): e for e in grid.get("cells", [])}
    rows = {(x["method"], x["healer"]): x for x in healing_rows(results)}
    methods = list(dict.fromkeys(e["method"] for e in grid.get("cells", [])))
    roles = {e["method"]: e["role"] for e in grid.get("cells", [])}
    sets, ranking = [], []
    for f in folds:
        for s in streams:
            for m in methods:
                a, b = entries.get((m, f)), entries.get((m, s))
                if a is None or b is None:
                    continue
                sets.append({"method": m, "role": roles[m], "pruned": a["pruned"], "foldable": f, "stream": s,
                             "row_foldable": rows.get((m, f)), "row_stream": rows.get((m, s)),
                             "screening": compare_perplexity(healed_cell(a), healed_cell(b)),
                             "confirmation": _compare_confirmation(a, b)})
            mine = next((m for m in methods if roles[m] == "lorp"), None)
            base = next((m for m in methods if roles[m] == "best baseline"), None)
            if mine is None or base is None:
                continue
            held = all(entries.get((x, h), {}).get("confirmation") for x in (mine, base) for h in (f, s))
            under = {h: (_compare_confirmation(entries[(base, h)], entries[(mine, h)]) if held else
                         compare_perplexity(healed_cell(entries[(base, h)]), healed_cell(entries[(mine, h)])))
                     for h in (f, s) if (mine, h) in entries and (base, h) in entries}
            kf, ks = under.get(f), under.get(s)
            ranking.append({"foldable": f, "stream": s, "windows": "confirmation" if held else "screening",
                            "baseline": base, "under_foldable": kf, "under_stream": ks,
                            "changes": None if kf is None or ks is None else (kf.ratio < 1) != (ks.ratio < 1)})
    return {"sets": sets, "ranking": ranking}


def _compare_confirmation(reference: Mapping[str, Any], other: Mapping[str, Any]) -> PerplexityComparison | None:
    if not reference.get("confirmation") or not other.get("confirmation"):
        return None
    return compare_perplexity(ConfirmationRow(reference["confirmation"]), ConfirmationRow(other["confirmation"]))


def _versus(k: PerplexityComparison | None) -> str:
    return "–" if k is None else f"{fmt_ratio_ci(k)}, {shown(k.decision)}"


def _order(k: PerplexityComparison | None, baseline: str) -> str:
    if k is None:
        return "not measured"
    better = "LoRP" if k.ratio < 1 else baseline
    return f"{better} ahead ({fmt_ratio_ci(k)} LoRP / {baseline}, {shown(k.decision)})"


def foldability_answers(results: StudyResult) -> list[str]:
    """The comparison in words: per set, the gap each healer closes and the stream-over-foldable ratio; then
    whether the ranking changes. Empty without both kinds of healer in the grid."""
    found = foldability_rows(results)
    windows = (results.healing or {}).get("confirmation_windows")
    out = []
    for x in found["sets"]:
        f, s = x["foldable"], x["stream"]
        held = "" if x["confirmation"] is None else (
            f"; on the {windows} held-out confirmation windows per corpus, {_versus(x['confirmation'])}")
        out.append(f"{x['method']}'s set {fmt_blocks(x['pruned'])}: `{s}` closes {_closed(x['row_stream'])} of the "
                   f"log-perplexity gap to dense, `{f}` {_closed(x['row_foldable'])}. `{s}`-healed perplexity over "
                   f"`{f}`-healed: {_versus(x['screening'])} on the screening windows{held}.")
    for x in found["ranking"]:
        verdict = ("not decided (a comparison is missing)" if x["changes"] is None else
                   "the ranking changes" if x["changes"] else "the ranking does not change")
        out.append(f"Ranking of the selections on the {x['windows']} windows: healed by `{x['foldable']}`, "
                   f"{_order(x['under_foldable'], x['baseline'])}; healed by `{x['stream']}`, "
                   f"{_order(x['under_stream'], x['baseline'])}: {verdict}.")
    return out


def foldability_markdown(results: StudyResult) -> str:
    """``healing.md``'s section "Foldable vs residual": the answers, then one table row per set and healer pair.
    Empty text without both kinds of healer in the grid."""
    found = foldability_rows(results)
    if not found["sets"]:
        return ""
    lines = ["", "## Foldable vs residual: what foldability costs", "",
             *[f"- {a}" for a in foldability_answers(results)], "",
             "A foldable healer writes its repair into the kept blocks' weights (a standard model, GGUF export "
             "included); a residual-stream healer maps the whole stream at each cut, a module no standard weight "
             "holds (`lorp.load_healed`). Both are fitted on the same calibration draw and keep a map only where it "
             "beats none on held-out calibration rows. Ratios are the stream-healed perplexity over the "
             f"foldable-healed one on the same removed set (geometric mean over corpora), with "
             f"{interval_method('windows')}; below 1, the residual map repairs more.", "",
             "| method | removed | foldable | closes | residual | closes | residual ÷ foldable, screening | "
             "residual ÷ foldable, confirmation | healed perplexity: foldable → residual |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in found["sets"]:
        a, b = x["row_foldable"], x["row_stream"]
        lines.append(f"| {x['method']} | {fmt_blocks(x['pruned'])} | {x['foldable']} | {_closed(a)} | {x['stream']} | "
                     f"{_closed(b)} | {_versus(x['screening'])} | {_versus(x['confirmation'])} | "
                     f"{fmt_number(a and a['healed'], 2)} → {fmt_number(b and b['healed'], 2)} |")
    return "\n".join(lines) + "\n"


def foldability_summary(studies: Mapping[str, StudyResult]) -> str:
    """The summary's section: per model and set, the gap each healer closes and the ratio, then whether the ranking
    changes. Empty text when no study's grid has both kinds of healer."""
    sets, ranks = [], []
    for name, r in studies.items():
        found = foldability_rows(r)
        sets += [(name, x) for x in found["sets"]]
        ranks += [(name, x) for x in found["ranking"]]
    if not sets:
        return ""
    lines = ["", "## Foldable vs residual, per model", "",
             "The price of a repair that folds into the weights: per model, the verdict pair's sets healed by a "
             "foldable healer and by a residual-stream healer (fitted on calibration data only), the gap to dense "
             "each closes and the residual-healed perplexity over the foldable-healed one, with 95 % paired "
             "intervals over windows; then whether the ranking of LoRP and the best baseline changes under the "
             "stronger repair.", "",
             "| model | method | removed | gap closed: foldable | gap closed: residual | residual ÷ foldable, "
             "screening | residual ÷ foldable, confirmation |", "|---|---|---|---|---|---|---|"]
    for name, x in sets:
        lines.append(f"| {name} | {x['method']} | {fmt_blocks(x['pruned'])} | {x['foldable']}: "
                     f"{_closed(x['row_foldable'])} | {x['stream']}: {_closed(x['row_stream'])} | "
                     f"{_versus(x['screening'])} | {_versus(x['confirmation'])} |")
    lines += ["", "| model | windows | healed by foldable | healed by residual | ranking |", "|---|---|---|---|---|"]
    for name, x in ranks:
        verdict = "–" if x["changes"] is None else "changes" if x["changes"] else "unchanged"
        lines.append(f"| {name} | {x['windows']} | {x['foldable']}: {_order(x['under_foldable'], x['baseline'])} | "
                     f"{x['stream']}: {_order(x['under_stream'], x['baseline'])} | {verdict} |")
    return "\n".join(lines) + "\n"


__all__ = ["foldability_answers", "foldability_markdown", "foldability_rows", "foldability_summary", "healer_kinds"]
