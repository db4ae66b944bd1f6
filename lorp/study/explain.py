"""The plain-language reading of a study: what the numbers say, which removed block does the damage, why."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..evaluate.accuracy_uncertainty import accuracy_intervals
from ..run.study_records import StudyResult
from .attribution import compared_cells, detail_budget, first_order_damage, rank_of, signals, spearman
from .formatting import NO_ITEM_RESULTS, NO_WINDOW_NLL, fmt_blocks, fmt_number, interval_method, fmt_times, shown
from .compare import winners
from .confirmation import confirmed
from .quality_floor import floor_losses

#: What :func:`attribution_markdown` says for a study without the single-block removal profile.
NO_ATTRIBUTION = "_No single-block removal profile in this run (set attribution=True and rerun; finished cells are reused)._"


def attribution_markdown(results: StudyResult, budget: int | None = None,
                         allocation: str = "lorp") -> str:
    """Markdown: which of the removed blocks do the damage, LoRP's set against the best baseline's.

    At ``budget`` (default: the detail budget, :func:`lorp.study.attribution.detail_budget`) the
    blocks LoRP removes and the blocks the best baseline removes (lowest geometric mean perplexity
    at that budget) are listed, each ranked by its single-removal ΔNLL (the calibration
    NLL with only that block removed minus the dense NLL, nats per scored token;
    :class:`lorp.run.study_records.Attribution`), most damaging first, with its LoRP redundancy
    ``r`` (eq. 8), ShortGPT Block Influence and rank among the removable blocks. The sum
    of each set's single-removal ΔNLL is given as a first-order account of the damage
    (interactions between removed blocks ignored), next to the first-order optimum (the
    ``budget`` removable blocks of least ΔNLL). Last, the Spearman rank correlation
    (``scipy.stats.spearmanr``) between ΔNLL and each signal across the removable blocks.

    Returns :data:`NO_ATTRIBUTION` for a study without the profile.
    """
    r = results
    if r.attribution is None or not r.cells:
        return NO_ATTRIBUTION + "\n"
    a, sig = r.attribution, signals(r)
    budget = detail_budget(r) if budget is None else budget
    lorp, rival = compared_cells(r, budget, allocation)
    ranks = rank_of(sig.delta, sig.eligible)
    eligible = len(ranks)

    def num(x: float, digits: int = 3) -> str:
        return "–" if not np.isfinite(x) else f"{x:.{digits}f}"

    lines = [f"Single-block removal profile of **{r.model.get('name', '?')}** on {a.describe()}: dense calibration "
             f"NLL {a.dense_nll:.3f} nats/token (perplexity {a.dense_perplexity:.2f}). ΔNLL is the NLL with only that "
             f"block removed minus the dense NLL, in nats per scored token; rank 1 is the removable block whose "
             f"removal alone costs least, of {eligible}.", "",
             f"Blocks removed at budget {budget}, most damaging first:", "",
             "| method | block | cluster | LoRP redundancy r (eq. 8) | Block Influence | ΔNLL | rank |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    sets = [(c.method, c) for c in (lorp, rival) if c is not None]
    for method, c in sets:
        for b in sorted(c.pruned, key=lambda b: (-sig.delta[b], b)):
            cluster = r.labels[b] if r.labels is not None else "–"
            rank = f"{ranks[b]} of {eligible}" if b in ranks else "protected"
            lines.append(f"| {method} | {b} | {cluster} | {num(sig.redundancy[b])} | {num(sig.block_influence[b])} | "
                         f"{num(sig.delta[b])} | {rank} |")
    if not sets:
        lines.append("| – | – | – | – | – | – | – |")
    lines.append("")
    best = sorted(ranks, key=ranks.get)[:budget]
    damage = [f"{m} {fmt_blocks(c.pruned)}: {first_order_damage(sig.delta, c.pruned):.3f}" for m, c in sets]
    lines.append("Sum of single-removal ΔNLL (nats/token) — " + "; ".join(
        damage + [f"first-order optimum {fmt_blocks(best)}: {first_order_damage(sig.delta, best):.3f}"]) + ".")
    if lorp is not None and rival is not None:
        own, other = sorted(set(lorp.pruned) - set(rival.pruned)), sorted(set(rival.pruned) - set(lorp.pruned))
        if own or other:
            lines.append(f"Only LoRP removes {fmt_blocks(own)} (ΔNLL sum {first_order_damage(sig.delta, own):.3f}); only "
                         f"{rival.method} removes {fmt_blocks(other)} (ΔNLL sum {first_order_damage(sig.delta, other):.3f}).")
        worst = max(lorp.pruned, key=lambda b: (sig.delta[b], -b))
        lines.append(f"LoRP's most damaging removal is block {worst} (ΔNLL {num(sig.delta[worst])}"
                     + (f", rank {ranks[worst]} of {eligible}" if worst in ranks else "") + ").")
    lines += ["", "This is a first-order account: each block's cost when removed alone, added up. Blocks removed "
                  "together interact, so a sum is not the NLL of the pruned model (see the perplexity table for that), "
                  "and the profile is scored on calibration text, not the evaluation corpora.", "",
              ("Spearman rank correlation between ΔNLL and each signal across the removable blocks "
               "(scipy.stats.spearmanr):"), "",
              "| signal | the method removes blocks with | ρ with ΔNLL | p | blocks |", "|---|---|---:|---:|---:|"]
    for name, signal, removes in (("LoRP redundancy r (eq. 8)", sig.redundancy, "high r (within its cluster)"),
                                  ("ShortGPT Block Influence", sig.block_influence, "low BI")):
        k = spearman(sig.delta, signal, sig.eligible)
        lines.append(f"| {name} | {removes} | {num(k.rho, 2)} | {'–' if not np.isfinite(k.p_value) else f'{k.p_value:.2g}'} "
                     f"| {k.blocks} |")
    lines += ["", "A signal that ranks blocks as their single-removal damage does correlates negatively with ΔNLL for "
                  "redundancy (removed when high) and positively for Block Influence (removed when low). Redundancy is "
                  "undefined for a block alone in its cluster; Block Influence comes from the calibration pass "
                  "(all calibration sequences), ΔNLL from the profile's text."]
    return "\n".join(lines) + "\n"


def reading(results: StudyResult) -> str:
    """A plain-language reading of one model's study (Markdown): who wins where, by how much, and how sure."""
    r = results
    name, n = r.model["name"], r.num_blocks
    lines = [f"**{name}** has RLS {r.rls:.3f}, so LoRP splits its {n} blocks into K = {r.k} "
             f"clusters (eq. 6: RLS ≥ 1.0 → 2, ≥ 0.7 → 3, else 4).", ""]
    rows = winners(r)
    held = {o["budget"]: o for o in confirmed(r)}  # the decision, where the held-out windows exist
    for w in rows:
        b = w["budget"]
        top, *tied = w["perplexity_winner"].split(", ")
        line = (f"- Budget {b} ({100 * b / n:.0f} % of the blocks): lowest geometric mean perplexity from "
                f"**{top}** ({fmt_number(w['perplexity'])}; dense {fmt_number(r.dense.mean_perplexity)})"
                + (f" (not separable from it at 95 %: {', '.join(tied)})" if tied and w["perplexity_intervals"]
                   else f" (tied with it: {', '.join(tied)})" if tied else ""))
        if w["lorp_perplexity"] is not None and "lorp" not in w["perplexity_winner"].split(", "):
            line += f", LoRP {fmt_number(w['lorp_perplexity'])} ({w['lorp_perplexity'] / w['perplexity']:.1f}× the best)"
        v = w["lorp_vs_best_baseline"]
        if v:
            line += (f"; against the best baseline, {v['baseline']}, LoRP's geometric mean perplexity is {fmt_times(v['ratio'])}× "
                     f"(95 % CI {fmt_times(v['low'])}–{fmt_times(v['high'])}, screening windows, not corrected for "
                     f"multiple tests): {shown(v['decision'])}")
        o = held.get(b)
        if o is not None:
            k = o["comparison"]
            line += (f"; on the held-out confirmation windows, which decide, {fmt_times(k.ratio)}× "
                     f"(95 % CI {fmt_times(k.ratio_low)}–{fmt_times(k.ratio_high)}, Holm p {o['p_holm']:.2g}): LoRP "
                     f"{ {'wins': 'wins', 'loses': 'loses'}.get(o['decision'], 'neither wins nor loses (not shown)') }")
        if w["accuracy_winner"] is not None:
            top, *tied = w["accuracy_winner"].split(", ")
            line += (f"; highest mean zero-shot accuracy from **{top}** ({100 * w['accuracy']:.1f} %, "
                     f"dense {100 * r.dense.zero_shot_average:.1f} %"
                     + (f", LoRP {100 * w['lorp_accuracy']:.1f} %" if w["lorp_accuracy"] is not None else "") + ")"
                     + (f" (not separable from it at 95 %: {', '.join(tied)})" if tied and w["accuracy_intervals"]
                        else f" (tied with it: {', '.join(tied)})" if tied else ""))
        v = w["lorp_vs_best_baseline_accuracy"]
        if v:
            line += (f"; LoRP minus the best baseline, {v['baseline']}, on accuracy: {100 * v['difference']:+.1f} "
                     f"points (95 % CI {100 * v['low']:+.1f} to {100 * v['high']:+.1f}; McNemar p "
                     f"{v['mcnemar_p']:.2g}): {shown(v['decision'])}")
        lines.append(line + ".")
    limit = r.config.get("zero_shot_limit")
    measured = any(c.zero_shot_average is not None for c in r.cells)
    item_intervals = any(accuracy_intervals(c) for c in r.cells if c.zero_shot)
    if limit and measured and not item_intervals:
        lines += ["", f"Zero-shot accuracies rest on {limit} items per task: differences under about "
                      f"{100 / limit ** 0.5:.0f} points are within sampling noise."]
    notes = ([(f"Intervals: {interval_method('screening windows (items for accuracy)')}; a method beats "
               "another only where its interval excludes zero (a perplexity ratio of 1).")]
             if any(w["perplexity_intervals"] or w["lorp_vs_best_baseline"] for w in rows) else [NO_WINDOW_NLL])
    if measured and not item_intervals:
        notes.append(NO_ITEM_RESULTS)
    losses = [f"{what} at budget{'s' if len(bs) > 1 else ''} {', '.join(map(str, bs))}"
              for what, bs in floor_losses(r).items() if bs]
    if losses:
        lines += ["", f"**LoRP loses even to {' and to '.join(losses)}** (floors.md)."]
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def why_markdown(studies: Mapping[str, StudyResult], allocation: str = "lorp") -> str:
    """Markdown: why LoRP loses (or wins) on each model, from the single-block removal profile.

    Per model, at the detail budget: LoRP's removed set against the best baseline's, the
    blocks only LoRP removes ranked by their single-removal ΔNLL (nats per scored token
    on the profile's calibration text), the share of the first-order damage gap
    (:func:`lorp.study.attribution.first_order_damage`, LoRP's set minus the baseline's) that the
    most damaging of them accounts for, LoRP's cluster of each, and how well LoRP's
    redundancy (eq. 8) and Block Influence rank the damage (Spearman ρ). First order:
    interactions between removed blocks are ignored, which the perplexity of the whole
    set (in the per-model reports) does not. Models without a profile are named as such.
    """
    lines = []
    for name, res in studies.items():
        r = res
        if r.attribution is None or not r.cells:
            lines.append(f"- **{name}**: no single-block removal profile in this report (rerun with attribution on).")
            continue
        sig, budget = signals(r), detail_budget(r)
        lorp, rival = compared_cells(r, budget, allocation)
        if lorp is None or rival is None:
            lines.append(f"- **{name}**: no {allocation} or baseline cell at budget {budget}.")
            continue
        only = sorted(set(lorp.pruned) - set(rival.pruned), key=lambda b: (-sig.delta[b], b))
        gap = first_order_damage(sig.delta, lorp.pruned) - first_order_damage(sig.delta, rival.pruned)
        labels = r.labels or []
        desc = ", ".join(f"block {b} (ΔNLL {sig.delta[b]:.3f}" + (f", cluster {labels[b]}" if b < len(labels) else "")
                         + ")" for b in only[:3])
        if only and gap > 0 and sig.delta[only[0]] <= gap:
            share = (f"; the worst of them alone is {100 * sig.delta[only[0]] / gap:.0f} % of the first-order gap of "
                     f"{gap:.3f} nats/token between the two sets")
        elif only and gap > 0:
            share = (f"; the worst of them alone costs more than the whole first-order gap between the two sets "
                     f"({gap:.3f} nats/token: the baseline's own removals cost nearly as much, one by one)")
        else:
            share = f"; first-order gap between the two sets {gap:+.3f} nats/token"
        rho_r = spearman(sig.delta, sig.redundancy, sig.eligible)
        rho_bi = spearman(sig.delta, sig.block_influence, sig.eligible)
        verdict_word = "loses to" if lorp.mean_perplexity > rival.mean_perplexity else "beats"
        lines.append(
            f"- **{name}**, budget {budget}: LoRP ({fmt_number(lorp.mean_perplexity)} geometric mean perplexity) {verdict_word} "
            f"{rival.method} ({fmt_number(rival.mean_perplexity)}). Blocks only LoRP removes, most damaging first: "
            f"{desc or 'none'}{share}. Across removable blocks, the damage of a single removal has Spearman ρ "
            f"{rho_r.rho:+.2f} with LoRP's redundancy r (eq. 8; a good signal would be strongly negative) and "
            f"{rho_bi.rho:+.2f} with Block Influence (a good signal would be strongly positive).")
    profiles = sorted({a.describe() for a in (r.attribution for r in studies.values()) if a})
    intro = ("Which removed blocks account for LoRP's loss, from the single-block removal profile (the calibration "
             "NLL with only that block removed minus the dense NLL, scored on " + ("; ".join(profiles) or "–")
             + "). This is first order: each block's cost alone, added up. Where the sum over a set is much "
             "smaller than the measured gap in perplexity (the ratio in winners.md), the blocks do their damage "
             "together, and naming single blocks explains only part of it.")
    return intro + "\n\n" + "\n".join(lines) + "\n"
