"""The answer first: the few lines that open ``reports/index.md`` — what was found, why, how sure, on exactly what.

:func:`answer_lines` reads the stored study results (and, where present, each model's
``ablation.json``) and gives at most ten Markdown lines:

1. does LoRP beat its baselines here, on perplexity (the held-out confirmation windows where
   the results have them, else the screening windows) and on zero-shot accuracy, unhealed and after
   healing (:func:`lorp.study.healing.healed_answer`);
2. where it loses even to the floors (the last blocks, the random draws' median);
3. why not: the damaging blocks LoRP removes and the ablation that recovers most;
4. how sure: the intervals, Holm, the seeds;
5. on exactly what: the checkpoints and their sizes.

Every number comes from the same functions the per-model reports use; nothing here
computes a new statistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..run.study_records import StudyResult
from .attribution import compared_cells, detail_budget, signals
from .calibration_corpus import corpus_verdict
from .compare import accuracy_sizes, perplexity_decision, verdict_pairs_tested
from .quality_floor import floor_losses
from .formatting import fmt_times
from .healing import healed_answer
from .sensitivity import stability

#: The most lines :func:`answer_lines` gives (the issue's "ten lines a reader can trust in two minutes").
MAX_LINES = 10


def _range(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{fmt_times(lo)}×" if fmt_times(lo) == fmt_times(hi) else f"{fmt_times(lo)}× to {fmt_times(hi)}×"


def _perplexity_line(studies: Mapping[str, StudyResult], tested: Mapping[str, Any]) -> str:
    decided = perplexity_decision(studies, tested)
    answer = decided["answer"]
    held = [(o["model"], o) for o in decided["held"]]
    if held:
        worse = [o for _, o in held if o["decision"] == "loses"]
        better = [o for _, o in held if o["decision"] == "wins"]
        ratios = [o["comparison"].ratio for _, o in held]
        lows = [o["comparison"].ratio_low for _, o in held]
        highs = [o["comparison"].ratio_high for _, o in held]
        return (f"**Does LoRP beat its baselines here? {answer}.** On held-out confirmation windows its perplexity is "
                f"{_range(ratios)} the best baseline's (95 % intervals from {fmt_times(min(lows))} to "
                f"{fmt_times(max(highs))}): worse shown in {len(worse)} of {len(held)} (model, budget) settings, better "
                f"shown in {len(better)}, after Holm's correction.")
    ppl = tested["perplexity"]
    if not ppl:
        return "**Does LoRP beat its baselines here?** These results hold no LoRP cell next to a paper baseline."
    worse, better = ppl.count("loses"), ppl.count("wins")
    return (f"**Does LoRP beat its baselines here? {answer}.** Against ShortGPT and LLM-Streamline on perplexity "
            f"(screening windows; these results have no held-out confirmation set): worse shown in {worse} of "
            f"{len(ppl)} (model, budget) settings, better shown in {better}, after Holm's correction.")


def _accuracy_line(studies: Mapping[str, StudyResult], tested: Mapping[str, Any]) -> str | None:
    acc = tested["accuracy"]
    if not acc:
        return None
    return (f"Zero-shot accuracy at the detail budget ({accuracy_sizes(studies)}): LoRP better than both paper baselines shown in "
            f"{acc.count('wins')} of {len(acc)} settings, worse shown in {acc.count('loses')}, neither shown in "
            f"{acc.count('undecided')}.")


def _floor_line(studies: Mapping[str, StudyResult]) -> str | None:
    parts = []
    for name, r in studies.items():
        for floor, budgets in floor_losses(r).items():
            if budgets:
                parts.append(f"{floor} on {name} (budget{'s' if len(budgets) > 1 else ''} "
                             f"{', '.join(map(str, budgets))})")
    return f"LoRP loses even to {'; '.join(parts)}." if parts else None


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _why_line(studies: Mapping[str, StudyResult], ablations: Mapping[str, Mapping[str, Any]]) -> str | None:
    parts = []
    for name, r in studies.items():
        if r.attribution is None or not r.cells:
            continue
        budget = detail_budget(r)
        lorp, rival = compared_cells(r, budget)
        if lorp is None or rival is None:
            continue
        sig = signals(r)
        only = sorted(set(lorp.pruned) - set(rival.pruned), key=lambda b: (-sig.delta[b], b))
        if only:
            b = only[0]
            rank = 1 + sum(sig.delta[x] > sig.delta[b] for x in range(len(sig.delta)) if sig.eligible[x])
            parts.append(f"block {b} on {name} ({_ordinal(rank)} most damaging of {int(sig.eligible.sum())} "
                         f"removable blocks, removed alone; the best baseline is {rival.method})")
    line = ""
    if parts:
        line = ("Why not: the most damaging block that LoRP removes and the best baseline keeps is "
                + "; ".join(parts) + ".")
    tops = {name: rec["recovers_most"] for name, rec in ablations.items() if rec.get("recovers_most")}
    fixes = [f"`{top['method']}` on {name} ({100 * top['pooled_recovered']:.0f} % of its log-perplexity gap)"
             for name, top in tops.items() if top["pooled_recovered"] > 0]
    none = [name for name, top in tops.items() if top["pooled_recovered"] <= 0]
    if fixes:
        line += (" " if line else "Why not: ") + "The ablation that recovers most of LoRP's gap: " + ", ".join(fixes) + "."
    if none:
        line += (" " if line else "Why not: ") + f"No ablation recovers any of it on {', '.join(none)}."
    return line or None


def _sure_line(studies: Mapping[str, StudyResult]) -> str:
    windows = sorted({len(v) for r in studies.values() for c in r.cells for v in (c.window_nll or {}).values()})
    held = sorted({r.confirmation["windows"] for r in studies.values() if r.confirmation})
    seeds = sorted({len(r.seeds) for r in studies.values()})
    jac = [row["jaccard"] for r in studies.values() for row in stability(r) if row["method"] == "lorp"]
    text = ("How sure: paired 95 % t-intervals on per-window log-perplexity ratios over "
            + (f"{'/'.join(map(str, windows))} screening windows per corpus" if windows else "screening windows")
            + (f" and {'/'.join(map(str, held))} held-out confirmation windows" if held else "")
            + ", wins and losses counted after Holm's correction")
    if jac:
        text += (f"; LoRP's picks across {'/'.join(map(str, seeds))} calibration seeds overlap with mean Jaccard "
                 f"{min(jac):.2f}–{max(jac):.2f}")
    moved = [(name, corpus_verdict(r.calibration_corpora)) for name, r in studies.items() if r.calibration_corpora]
    moved = [(name, v) for name, v in moved if v]
    if moved:
        more = [name for name, v in moved if v[2]]
        text += (f"; the calibration corpus moves the picks more than the choice of method on {len(more)} of "
                 f"{len(moved)} models (calibration_corpus.md)")
    return text + "."


def _what_line(studies: Mapping[str, StudyResult]) -> str:
    models = "; ".join(f"{r.model.get('checkpoint') or name} ({r.dense.parameters / 1e6:.0f}M parameters, "
                       f"{r.num_blocks} blocks)" for name, r in studies.items())
    return (f"On exactly: {models}. These are small models on small CPU samples, not the paper's 7-14B models.")


def answer_lines(studies: Mapping[str, StudyResult],
                 ablations: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """At most :data:`MAX_LINES` Markdown lines answering the study: does LoRP win, why not, how sure, on what.

    Args:
        studies: ``{report folder: study results}`` (:func:`lorp.study.load.load_studies`).
        ablations: ``{report folder: ablation.json}`` (:func:`lorp.study.ablation.load_ablations`), optional.
    Returns:
        lines, each one paragraph; empty when ``studies`` is empty.
    """
    studies = {name: r for name, r in studies.items()}
    if not studies:
        return []
    tested = verdict_pairs_tested(studies)  # the verdict's Holm-corrected counts, computed once
    lines = [_perplexity_line(studies, tested), _accuracy_line(studies, tested), healed_answer(studies),
             _floor_line(studies),
             _why_line(studies, ablations or {}), _sure_line(studies), _what_line(studies)]
    return [line for line in lines if line][:MAX_LINES]


__all__ = ["MAX_LINES", "answer_lines"]
