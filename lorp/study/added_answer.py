"""What a plugin author reads first after ``lorp study --add NAME``: does NAME beat LoRP and the baselines, how
sure, on which checkpoints.

The answer block (:func:`added_lines`, the first lines of the index and of each model's ``added.md``) says, per
added method:

1. its **twins**: study methods that remove the same blocks at every budget and seed ("lorp-x ≡ shortgpt
   here"), first, since every other line is then about that method's numbers; then the budgets where it
   removes a study method's blocks (a partial twin);
2. against **LoRP** and against **the best baseline** on the held-out confirmation windows (first run seed,
   every budget): the paired ratio of geometric mean perplexities with its 95 % t-interval
   (:func:`lorp.evaluate.perplexity_uncertainty.compare_perplexity`), decided after Holm's correction over
   the (model, budget) settings of that comparison;
3. against **each baseline** on the screening windows, Holm-corrected the same way per baseline;
4. beside the **floors**: ``last`` (paired interval, screening windows) and the random draws' median at the
   detail budget;
5. **zero-shot accuracy** at the detail budget against LoRP and the best baseline by accuracy (paired
   bootstrap over items);
6. the **checkpoints** and where the other numbers came from (reused from which commit, or recomputed and why).

The labels are neutral: the added method is the user's, compared with the study's methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..evaluate.accuracy_uncertainty import compare_accuracy
from ..evaluate.perplexity_uncertainty import compare_perplexity
from ..evaluate.uncertainty import holm, holm_decisions
from ..run.study_records import StudyCell, StudyResult
from .attribution import detail_budget
from .confirmation import ConfirmationRow
from .formatting import fmt_points_ci, fmt_ratio_ci, fmt_times, interval_method
from .quality_floor import floor_summary
from .query import baseline_methods, best_baseline, best_baseline_by_accuracy, cell

#: Baselines that are floors, said beside the answer rather than in it.
FLOORS = ("last", "random")


def added_methods(studies: Mapping[str, StudyResult]) -> list[str]:
    """The added methods of ``studies``, in the order they were added (empty for plain studies)."""
    return list(dict.fromkeys(m for r in studies.values() for m in (r.added or {}).get("methods", [])))


def _first_seed(r: StudyResult) -> int:
    return min((c.seed for c in r.cells), default=0)


def same_blocks(r: StudyResult, label: str) -> dict[int, list[str]]:
    """``{budget: [study method]}``: where ``label``'s first-seed pick is a study method's (empty budgets left out)."""
    seed = _first_seed(r)
    out = {}
    for c in sorted((c for c in r.cells if c.method == label and c.seed == seed), key=lambda c: c.budget):
        same = [o.method for o in r.cells if not o.added and o.budget == c.budget and o.seed == seed
                and sorted(o.pruned) == sorted(c.pruned)]
        if same:
            out[c.budget] = same
    return out


def held_out(studies: Mapping[str, StudyResult], label: str, against: str) -> list[dict[str, Any]]:
    """``label`` against LoRP (``against="lorp"``) or the best baseline (``"best baseline"``) on the confirmation
    windows, one row per (model, budget): ``{"model", "budget", "rival", "comparison", "p_holm", "decision"}``,
    Holm-corrected over the rows."""
    rows = []
    for name, r in studies.items():
        entries = (r.confirmation or {}).get("cells", [])
        for e in (e for e in entries if e["role"] == "added" and e["method"] == label):
            rival = next((x for x in entries if x["budget"] == e["budget"] and x["role"] == against), None)
            k = rival and compare_perplexity(ConfirmationRow(rival), ConfirmationRow(e))
            if k is not None:
                rows.append({"model": name, "budget": e["budget"], "rival": rival["method"], "comparison": k})
    return _holm(rows)


def screening(studies: Mapping[str, StudyResult], label: str, baseline: str) -> list[dict[str, Any]]:
    """``label`` against ``baseline`` on the screening windows (first seed), per (model, budget), Holm-corrected."""
    rows = []
    for name, r in studies.items():
        seed = _first_seed(r)
        for mine in (c for c in r.cells if c.method == label and c.seed == seed):
            theirs = cell(r.cells, baseline, mine.budget, seed=seed)
            k = theirs and compare_perplexity(theirs, mine)
            if k is not None:
                rows.append({"model": name, "budget": mine.budget, "rival": baseline, "comparison": k})
    return _holm(rows)


def _holm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    p = [o["comparison"].p_value for o in rows]
    for o, adjusted, decision in zip(rows, holm(p), holm_decisions(p, [o["comparison"].difference for o in rows],
                                                                   better="lower")):
        o["p_holm"], o["decision"] = adjusted, {"wins": "better", "loses": "worse"}.get(decision, "not separable")
    return rows


def _counts(rows: list[dict[str, Any]]) -> str:
    n = len(rows)
    return (f"better in {sum(o['decision'] == 'better' for o in rows)} of {n}, worse in "
            f"{sum(o['decision'] == 'worse' for o in rows)}, not separable in "
            f"{sum(o['decision'] == 'not separable' for o in rows)}")


def _range(rows: list[dict[str, Any]]) -> str:
    ratios = sorted(o["comparison"].ratio for o in rows)
    return f"{fmt_times(ratios[0])}×" if len(ratios) == 1 else f"{fmt_times(ratios[0])}× to {fmt_times(ratios[-1])}×"


def accuracy(r: StudyResult, label: str) -> dict[str, Any] | None:
    """At the detail budget (first seed): ``{"budget", "accuracy", "lorp", "best", "best_method"}``, the added
    method's mean zero-shot accuracy and its paired differences against LoRP and the best baseline by accuracy
    (:class:`lorp.evaluate.accuracy_uncertainty.AccuracyComparison` under ``"average"``, ``None`` where not
    comparable); ``None`` without an accuracy for the added method."""
    budget = detail_budget(r)
    seed = _first_seed(r)
    mine = cell(r.cells, label, budget, seed=seed)
    if mine is None or mine.zero_shot_average is None:
        return None
    allocation = next((c.method for c in r.cells if c.method == "lorp"), None) or "lorp"
    lorp = cell(r.cells, allocation, budget, seed=seed)
    best = best_baseline_by_accuracy(r.cells, budget, seed=seed, among=baseline_methods(r.cells, allocation))

    def vs(other: StudyCell | None):
        k = other and compare_accuracy(other, mine)
        return (k or {}).get("average")
    return {"budget": budget, "accuracy": mine.zero_shot_average, "lorp": vs(lorp), "best": vs(best),
            "best_method": best.method if best else None}


def added_lines(studies: Mapping[str, StudyResult], allocation: str = "lorp") -> list[str]:
    """The answer block: a few Markdown lines per added method (see the module docstring); empty without one."""
    lines = []
    for label in added_methods(studies):
        with_it = {n: r for n, r in studies.items() if label in (r.added or {}).get("methods", [])}
        twins = {n: r.added["twins"].get(label, []) for n, r in with_it.items() if r.added["twins"].get(label)}
        for n, same in twins.items():
            lines.append(f"**`{label}` ≡ {', '.join(f'`{m}`' for m in same)} here** on {n}: it removes the same "
                         "blocks at every budget and run seed, so its numbers are theirs.")
        parts = []
        for against, title in (("lorp", "LoRP"), ("best baseline", "the best baseline")):
            rows = held_out(with_it, label, against)
            if rows:
                parts.append(f"against {title}: {_counts(rows)} (ratio {_range(rows)})")
        if parts:
            lines.append(f"**Does `{label}` beat LoRP and the best baseline?** On the held-out confirmation windows, "
                         f"perplexity after Holm's correction over the (model, budget) settings, {'; '.join(parts)}.")
        else:
            lines.append(f"**`{label}`**: no confirmation windows in these studies; the screening windows below "
                         "chose nothing for it, but they also score every baseline.")
        partial = [f"{n} at {b} ({', '.join(f'`{m}`' for m in ms)})" for n, r in with_it.items() if n not in twins
                   for b, ms in same_blocks(r, label).items()]
        if partial:
            lines.append(f"`{label}` removes the same blocks as a study method (first seed) on " + "; ".join(partial)
                         + ": there their numbers are the same.")
        per_base = []
        baselines = list(dict.fromkeys(m for r in with_it.values() for m in sorted(baseline_methods(r.cells, allocation))
                                       if m not in FLOORS))
        for b in baselines:
            rows = screening(with_it, label, b)
            if rows:
                per_base.append(f"`{b}` {_counts(rows)}")
        if per_base:
            lines.append("Against each baseline on the screening windows (Holm per baseline): " + "; ".join(per_base) + ".")
        floors = []
        for n, r in with_it.items():
            last = screening({n: r}, label, "last")
            at = [o for o in last if o["decision"] != "not separable"]
            summary = floor_summary(r)
            mine = cell(r.cells, label, summary["budget"], seed=_first_seed(r)) if summary else None
            text = f"{n}: × `last` " + (", ".join(f"{fmt_ratio_ci(o['comparison'])} at {o['budget']}" for o in last)
                                      if last else "not measured")
            if at:
                text += f" ({'; '.join(o['decision'] + ' at ' + str(o['budget']) for o in at)})"
            if mine is not None:
                place = "below" if mine.mean_perplexity < summary["median"] else "above"
                text += (f"; {place} the median of {summary['draws']} random draws at {summary['budget']} "
                         f"({fmt_times(mine.mean_perplexity / summary['median'])}× it)")
            floors.append(text)
        if floors:
            lines.append("Floors (screening windows): " + "; ".join(floors) + ".")
        acc = []
        for n, r in with_it.items():
            a = accuracy(r, label)
            if a is None:
                continue
            text = f"{n} at {a['budget']}: {100 * a['accuracy']:.1f} %"
            if a["lorp"] is not None:
                text += f", {fmt_points_ci(a['lorp'])} points against LoRP"
            if a["best"] is not None:
                text += f", {fmt_points_ci(a['best'])} against {a['best_method']}"
            acc.append(text)
        if acc:
            lines.append("Zero-shot accuracy (mean over tasks, 95 % paired bootstrap over items): " + "; ".join(acc) + ".")
        checkpoints = ", ".join(f"{n} ({r.model.get('checkpoint') or r.model.get('spec')}"
                                + (f", GGUF sha256 {r.model['gguf_sha256'][:12]}" if r.model.get("gguf_sha256") else "")
                                + ")" for n, r in with_it.items())
        lines.append(f"On exactly these checkpoints: {checkpoints}.")
        origin = []
        for n, r in with_it.items():
            reused, redone = r.added.get("reused"), r.added.get("recomputed") or []
            if reused:
                origin.append(f"{n}: every study number reused from commit {str(reused.get('computed_at_commit'))[:7]}")
            if redone:
                origin.append(f"{n}: " + "; ".join(redone))
        if origin:
            lines.append("Where the other numbers come from: " + "; ".join(origin) + ".")
    return lines


def added_markdown(results: StudyResult, name: str) -> str:
    """A model's ``added.md``: the answer block for that model, then a row per (added method, budget) with its
    intervals against LoRP and the best baseline on both window sets."""
    studies = {name: results}
    lines = added_lines(studies)
    if not lines:
        return "_No method added: this is the study's own report._\n"
    md = [f"# Added to the study of {name}: {', '.join(f'`{m}`' for m in added_methods(studies))}", "",
          *(f"- {ln}" for ln in lines), ""]
    seed = _first_seed(results)
    allocation = "lorp"
    md += ["| method | budget | pruned blocks | perplexity (screening) | × LoRP (screening) | × best baseline "
           "(screening) | × LoRP (held out) | × best baseline (held out) |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    held = {(o["rival"] == "lorp", o["budget"], m): o for m in added_methods(studies)
            for against in ("lorp", "best baseline") for o in held_out(studies, m, against)}
    for m in added_methods(studies):
        for c in sorted((c for c in results.cells if c.method == m and c.seed == seed), key=lambda c: c.budget):
            lorp = cell(results.cells, allocation, c.budget, seed=seed)
            best = best_baseline(results.cells, c.budget, seed=seed, among=baseline_methods(results.cells, allocation))
            k_lorp, k_best = lorp and compare_perplexity(lorp, c), best and compare_perplexity(best, c)
            h_lorp, h_best = held.get((True, c.budget, m)), held.get((False, c.budget, m))
            md.append(f"| {m} | {c.budget} | {', '.join(map(str, c.pruned))} | {c.mean_perplexity:,.1f} | "
                      f"{fmt_ratio_ci(k_lorp) if k_lorp else '–'} | "
                      f"{fmt_ratio_ci(k_best) + f' ({best.method})' if k_best else '–'} | "
                      f"{fmt_ratio_ci(h_lorp['comparison']) if h_lorp else '–'} | "
                      f"{fmt_ratio_ci(h_best['comparison']) + ' (' + h_best['rival'] + ')' if h_best else '–'} |")
    baselines = sorted(baseline_methods(results.cells, allocation))
    md += ["", "Against each study method on the screening windows (first seed), the added method's perplexity over "
               "theirs:", "",
           "| method | budget | " + " | ".join([allocation, *baselines]) + " |", "|---|---:|" + "---:|" * (len(baselines) + 1)]
    for m in added_methods(studies):
        for c in sorted((c for c in results.cells if c.method == m and c.seed == seed), key=lambda c: c.budget):
            ks = [(o := cell(results.cells, other, c.budget, seed=seed)) and compare_perplexity(o, c)
                  for other in [allocation, *baselines]]
            md.append(f"| {m} | {c.budget} | " + " | ".join(fmt_ratio_ci(k) if k else "–" for k in ks) + " |")
    md += ["", f"Ratios [95 % CI]: {interval_method('windows')}. Held out: the study's confirmation windows, disjoint "
               "from the screening windows that chose the best baseline."]
    return "\n".join(md) + "\n"


__all__ = ["FLOORS", "accuracy", "added_lines", "added_markdown", "added_methods", "held_out", "same_blocks",
           "screening"]
