"""The per-model report tables: perplexity, zero-shot, speed, disclosure, RLS, sensitivity (Markdown)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..evaluate.accuracy_uncertainty import POWER, accuracy_intervals, compare_accuracy, detectable_difference
from ..evaluate.perplexity_uncertainty import compare_per_corpus, compare_perplexity, window_series
from ..evaluate.uncertainty import LEVEL, SAMPLES, SEED, holm
from ..method.locality import choose_k
from ..run.study_records import StudyResult
from .formatting import (NO_ITEM_RESULTS, NO_WINDOW_NLL, fmt_number, interval_method, fmt_points_ci, fmt_ratio_ci, fmt_times,
                         windows_per_corpus, shown)
from .sensitivity import sensitivity_markdown as _sensitivity_markdown
from .compare import lorp_vs_best_baseline
from .query import baseline_methods, best_baseline

#: RLS the paper reports for its models (arXiv 2605.27786, Table 1).
PAPER_RLS = {"Llama-3.1-8B": 1.149, "OLMo-3-7B": 0.941, "Mistral-Nemo-12B": 0.926, "Qwen3-8B": 0.685,
             "Qwen3-14B": 0.644}


def sensitivity_markdown(results: StudyResult) -> str:
    """Is the selection stable across calibration draws? See :func:`lorp.study.sensitivity.sensitivity_markdown`."""
    return _sensitivity_markdown(results)


def perplexity_markdown(results: StudyResult) -> str:
    """Markdown: one row per (method, budget) with perplexity per corpus and their geometric mean; best per budget in bold.

    With per-window NLL a column gives each method's geometric mean perplexity over the
    budget's best with its paired 95 % t-interval (:mod:`lorp.evaluate.perplexity_uncertainty`);
    bold marks the best and every method that interval cannot separate from it, and
    a line per budget gives LoRP against the best baseline. Without it (older
    results) the table is the point-estimate one, with :data:`NO_WINDOW_NLL` below.
    """
    r = results
    corpora = list(r.dense.perplexity)
    intervals = any(window_series(c) for c in r.cells)
    head = "| method | budget | " + " | ".join(corpora) + " | geometric mean | " + ("× best [95 % CI] | " if intervals else "")
    lines = [head + "pruned blocks |",
             "|---|---:|" + "---:|" * (len(corpora) + 1) + ("---:|" if intervals else "") + "---|",
             "| dense | 0 | " + " | ".join(fmt_number(r.dense.perplexity[c]) for c in corpora)
             + f" | {fmt_number(r.dense.mean_perplexity)} | " + ("| " if intervals else "") + "|"]
    methods = {c.method for c in r.cells if not c.added}  # the study's methods: an added row is measured against them
    best = {b: best_baseline(r.cells, b, among=methods) for b in {c.budget for c in r.cells}}  # LoRP included
    for c in sorted(r.cells, key=lambda c: (c.budget, c.mean_perplexity)):
        top = best[c.budget]
        k = None if c is top or not intervals else compare_perplexity(top, c)
        tied = c.mean_perplexity == top.mean_perplexity if k is None else k.decision != "loses"
        mean = f"**{fmt_number(c.mean_perplexity)}**" if tied else fmt_number(c.mean_perplexity)
        ratio = ("best | " if c is top else f"{fmt_ratio_ci(k)} | " if k else "– | ") if intervals else ""
        lines.append(f"| {c.method} | {c.budget} | " + " | ".join(fmt_number(c.perplexity[k_]) for k_ in corpora)
                     + f" | {mean} | {ratio}{' '.join(map(str, c.pruned))} |")
    if not intervals:
        return "\n".join(lines) + "\n\n" + NO_WINDOW_NLL + "\n"
    lines += ["", (f"Bold: the lowest geometric mean perplexity at its budget and every method whose interval against it "
                   f"includes 1. × best: geometric mean perplexity over the best's, {interval_method('screening windows')}; "
                   f"{windows_per_corpus(r.cells)} windows per corpus, so the intervals are rough."), ""]
    for b in sorted(best):
        v = lorp_vs_best_baseline([c for c in r.cells if c.budget == b])
        if v:
            lines.append(f"- Budget {b}: LoRP's geometric mean perplexity is {fmt_times(v['ratio'])}× that of the best "
                         f"baseline, {v['baseline']} (95 % CI {fmt_times(v['low'])}–{fmt_times(v['high'])}): LoRP "
                         f"{v['decision']}.")
    return "\n".join(lines) + "\n" + per_corpus_markdown(r)


def per_corpus_markdown(results: StudyResult, allocation: str = "lorp") -> str:
    """Markdown: per budget, LoRP over the best baseline on each corpus and on their geometric mean (screening windows).

    Each entry is the perplexity ratio with its paired 95 % t-interval
    (:func:`lorp.evaluate.perplexity_uncertainty.compare_per_corpus`,
    :func:`lorp.evaluate.perplexity_uncertainty.compare_perplexity`); the best baseline is the one of lowest
    geometric mean perplexity at the budget. Empty without per-window NLL.
    """
    r = results
    corpora = list(r.dense.perplexity)
    rows = []
    for b in sorted({c.budget for c in r.cells}):
        cells = [c for c in r.cells if c.budget == b]
        lorp = next((c for c in cells if c.method == allocation), None)
        base = best_baseline(cells, b, among=baseline_methods(cells, allocation))
        if lorp is None or base is None:
            continue
        per, mean = compare_per_corpus(base, lorp), compare_perplexity(base, lorp)
        if per is None or mean is None:
            continue
        rows.append(f"| {b} | {base.method} | " + " | ".join(fmt_ratio_ci(per[c]) for c in corpora)
                    + f" | {fmt_ratio_ci(mean)} |")
    if not rows:
        return ""
    return "\n".join(["", "### Per corpus: LoRP ÷ best baseline", "",
                      "| budget | best baseline | " + " | ".join(corpora) + " | geometric mean |",
                      "|---:|---|" + "---:|" * (len(corpora) + 1), *rows, "",
                      f"Perplexity ratio [95 % CI] on each corpus's screening windows and on the geometric mean over "
                      f"corpora: {interval_method('screening windows')}."]) + "\n"


def zero_shot_markdown(results: StudyResult) -> str:
    """Markdown: zero-shot accuracy (%) per task and average, dense and every method at the detail budget.

    With per-item results each accuracy carries its 95 % interval (Wilson per task,
    bootstrap over items for the average; :mod:`lorp.evaluate.uncertainty`) and a second table
    gives LoRP minus every other method, paired on the same items (95 % bootstrap
    interval, exact McNemar p per task). Without them (older results) the table is
    the point-estimate one, with :data:`NO_ITEM_RESULTS` below.
    """
    r = results
    rows = [c for c in r.cells if c.zero_shot]
    dense = r.dense.zero_shot
    if not rows or not dense:
        return "_No zero-shot accuracy in this run (set zero_shot_tasks and detail_budget)._\n"
    tasks = list(dense)
    ivs = {id(c): accuracy_intervals(c) for c in [r.dense, *rows]}
    if not any(ivs.values()):
        lines = ["| method | budget | " + " | ".join(tasks) + " | average |",
                 "|---|---:|" + "---:|" * (len(tasks) + 1),
                 "| dense | 0 | " + " | ".join(f"{100 * dense[t]:.1f}" for t in tasks)
                 + f" | {100 * r.dense.zero_shot_average:.1f} |"]
        for c in sorted(rows, key=lambda c: -c.zero_shot_average):
            lines.append(f"| {c.method} | {c.budget} | " + " | ".join(f"{100 * c.zero_shot[t]:.1f}" for t in tasks)
                         + f" | {100 * c.zero_shot_average:.1f} |")
        return "\n".join(lines) + "\n\n" + NO_ITEM_RESULTS + "\n"

    def acc(row: Any, task: str) -> str:
        value = row.zero_shot_average if task == "average" else row.zero_shot[task]
        iv = (ivs[id(row)] or {}).get(task)
        return f"{100 * value:.1f}" + (f" [{100 * iv.low:.1f}, {100 * iv.high:.1f}]" if iv else "")

    lines = ["| method | budget | " + " | ".join(tasks) + " | average |", "|---|---:|" + "---:|" * (len(tasks) + 1),
             "| dense | 0 | " + " | ".join(acc(r.dense, t) for t in [*tasks, "average"]) + " |"]
    for c in sorted(rows, key=lambda c: -c.zero_shot_average):
        lines.append(f"| {c.method} | {c.budget} | " + " | ".join(acc(c, t) for t in [*tasks, "average"]) + " |")
    items = sorted({n for c in rows for n in (c.zero_shot_items or {}).values()})
    lines += ["", (f"Accuracy in %, with 95 % intervals: Wilson (1927) per task, a bootstrap over items "
                   f"({SAMPLES} resamples, seed {SEED}) for the average; "
                   f"{'/'.join(map(str, items)) or '?'} items per task.")]
    for b in sorted({c.budget for c in rows}):
        lorp = next((c for c in rows if c.budget == b and c.method == "lorp"), None)
        others = [("dense", 0, r.dense)] + [(c.method, c.budget, c) for c in rows  # an added row: its own page
                                            if c.budget == b and c is not lorp and not c.added]
        diffs = [(m, bb, compare_accuracy(o, lorp)) for m, bb, o in others] if lorp else []
        if not any(k for *_, k in diffs):
            continue
        family = [(i, t) for i, (*_, k) in enumerate(diffs) for t in tasks if k and t in k]
        adjusted = dict(zip(family, holm([diffs[i][2][t].mcnemar.p_value for i, t in family])))
        significant = sum(q <= 1 - LEVEL for q in adjusted.values())
        lines += ["", (f"LoRP minus each method at budget {b}, in points: {interval_method('items')}; "
                       f"exact McNemar (1947) p per task, then Holm-adjusted over the {len(family)} per-task tests "
                       f"of this table: {significant} significant at 5 % family-wise."), "",
                  "| method | budget | " + " | ".join(tasks) + " | average | LoRP (average) | detectable (points) |",
                  "|---|---:|" + "---:|" * (len(tasks) + 1) + "---|---:|"]
        for i, (m, bb, k) in enumerate(diffs):
            k = k or {}
            cells = [(fmt_points_ci(k[t]) + f" (p {k[t].mcnemar.p_value:.2g}, Holm {adjusted[(i, t)]:.2g})")
                     if t in k else "–" for t in tasks]
            avg = k.get("average")
            lines.append(f"| {m} | {bb} | " + " | ".join(cells) + f" | {fmt_points_ci(avg) if avg else '–'} | "
                         f"{shown(avg.decision) if avg else '–'} | {_detectable(avg)} |")
        lines += ["", (f"LoRP (average): whether the average difference is shown, i.e. its 95 % interval excludes 0 "
                       f"(\"better shown\", \"worse shown\"), or \"not shown\", which is not the same as equal. "
                       f"Detectable: the smallest paired difference of the average that an exact McNemar test on "
                       f"these pooled items finds with {100 * POWER:.0f} % power at α = 0.05, given the share of "
                       f"items on which the two methods disagree (Connor 1987); a true difference below it is likely "
                       f"to go unseen at this size.")]
    return "\n".join(lines) + "\n"


def _detectable(k: Any) -> str:
    """The smallest detectable difference (points) of a paired accuracy comparison, "–" where none is."""
    discordant = (k.mcnemar.a_only + k.mcnemar.b_only) / k.items if k is not None and k.items else 0.0
    if not discordant:
        return "–"
    d = detectable_difference(k.items, discordant)
    return f"{100 * d:.1f}" if d is not None else f"> {100 * discordant:.0f}"


def speed_markdown(results: StudyResult) -> str:
    """Markdown: parameters, FLOPs per token and measured decode speed, dense vs each pruned model measured."""
    r = results
    dense = r.dense
    rows = [c for c in r.cells if c.speed]
    if not dense.speed or not rows:
        return "_No decode speed in this run (set decode_tokens and detail_budget)._\n"
    lines = ["| method | budget | parameters (M) | GFLOPs / token | decode tokens/s | speed-up | ideal (FLOPs) |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| dense | 0 | {dense.parameters / 1e6:.1f} | {dense.flops_per_token / 1e9:.3f} | "
             f"{dense.speed['tokens_per_s']:.1f} | 1.00× | 1.00× |"]
    for c in rows:
        sp = c.speed
        lines.append(f"| {c.method} | {c.budget} | {c.parameters / 1e6:.1f} | {sp['flops_per_token'] / 1e9:.3f} | "
                     f"{sp['tokens_per_s']:.1f} | {sp['tokens_per_s'] / dense.speed['tokens_per_s']:.2f}× | "
                     f"{dense.flops_per_token / sp['flops_per_token']:.2f}× |")
    return "\n".join(lines) + "\n"


def disclosure_markdown(results: StudyResult) -> str:
    """Markdown: exactly what was measured — checkpoint, calibration, evaluation windows and tokens scored,
    zero-shot items, SLEB's scoring set, seeds and the commit. Fields an older ``results.json`` lacks are
    shown as "not recorded"."""
    r = results
    cfg, m = r.config, r.model
    na = "not recorded"
    ckpt = m.get("checkpoint") or (f"{m.get('spec')} ({m.get('source')}, {m.get('dtype')})")
    lines = [f"- **Checkpoint**: {ckpt}" + (f"; GGUF sha256 `{m['gguf_sha256'][:16]}…`" if m.get("gguf_sha256") else "")
             + (f"; from {', '.join(m['packages'])}" if m.get("packages") else "")
             + f"; {m.get('model_type', '?')}, {r.num_blocks} blocks, {m.get('num_parameters', 0):,} parameters."]
    cal = r.calibration or {}
    lines.append(f"- **Calibration**: {cfg.get('num_samples', '?')} sequences × {cfg.get('seq_len', '?')} tokens "
                 f"({cal.get('num_tokens', na)} tokens) of `{cfg.get('calibration', '?')}` ({cal.get('source', na)}), "
                 f"drawn with seed {cfg.get('seed', '?')}.")
    if r.evaluation:
        parts = [f"`{n}` ({e.get('source') or na}): {e['windows']} windows × {e['window_tokens']} tokens, "
                 f"**{e['tokens_scored']:,} tokens scored**" for n, e in r.evaluation.items()]
        lines.append("- **Perplexity**: non-overlapping windows from the start of each corpus's held-out part, no "
                     "context across windows (the first token of each window is not predicted); " + "; ".join(parts) + ".")
    else:
        lines.append(f"- **Perplexity**: up to {cfg.get('eval_tokens', '?')} tokens per corpus of "
                     f"{', '.join(cfg.get('eval_corpora', []))} in windows of {cfg.get('eval_seq_len', '?')}; "
                     "tokens scored not recorded.")
    zs = next((c for c in r.cells if c.zero_shot_items), None)
    if zs is not None:
        items = ", ".join(f"{t} {n}" for t, n in zs.zero_shot_items.items())
        lines.append(f"- **Zero-shot** (lm-evaluation-harness, offline copies): items per task {items}, drawn with "
                     f"seed {cfg.get('seed', '?')}; the same items for every method; measured at budget(s) "
                     f"{cfg.get('detail_budgets', '?')} for {', '.join(cfg.get('detail_methods') or ['every method'])}.")
    if "sleb" in cfg.get("methods", []):
        tok = cfg.get("sleb_tokens") or 0
        lines.append(f"- **SLEB** scores each candidate removal on the first {cfg.get('sleb_samples', '?')} calibration "
                     f"sequence(s), " + (f"the last {tok} tokens of each scored" if tok else "every token scored") + ".")
    if r.plugins:
        lines.append(_code_line(r.plugins))
    added = r.added or {}
    reused = added.get("reused")
    if reused:  # lorp study --add: the study's numbers come from the committed record, the added rows from here
        lines.append(f"- **Seeds**: {cfg.get('seeds', [cfg.get('seed')])}; the study's numbers **computed at** "
                     f"`{r.computed_at_commit or na}`, code hash `{reused.get('code_hash') or na}`, reused; the added "
                     f"methods computed at `{r.git_commit or na}`, code hash `{r.code_hash or na}` (lorp/, notebooks/, "
                     "plugins/, pyproject.toml).")
    else:
        lines.append(f"- **Seeds**: {cfg.get('seeds', [cfg.get('seed')])}; **computed at** `{r.computed_at_commit or na}`, "
                     f"code hash `{r.code_hash or na}` (lorp/, notebooks/, plugins/, pyproject.toml).")
    for label, comp in (added.get("components") or {}).items():
        lines.append(f"- **Added** `{label}`: {comp.get('kind')} `{comp.get('name')}` from {comp.get('source') or '?'}, "
                     f"code `{comp.get('code') or 'not recorded'}`; "
                     + "; ".join(added.get("recomputed") or ["every committed number whose key matched reused"]) + ".")
    return "\n".join(lines) + "\n"


def _code_line(plugins: Mapping[str, Mapping[str, Any]]) -> str:
    """The disclosure line naming each method's plugin, its source and its code string (what caches key on)."""
    by_code: dict[tuple[str, str], list[str]] = {}
    for method, prov in plugins.items():
        source = prov.get("source") or "?"
        by_code.setdefault(("lorp's builtins" if source == "builtin" else source, prov.get("code") or "not recorded"),
                           []).append(method)
    parts = [f"{', '.join(f'`{m}`' for m in methods)} from {source}, code `{code}`"
             for (source, code), methods in by_code.items()]
    return "- **Methods' code** (cached cells are keyed by it): " + "; ".join(parts) + "."


def rls_markdown(studies: Mapping[str, StudyResult]) -> str:
    """Markdown: RLS and K of each studied model, then the paper's values."""
    lines = ["| model | architecture | blocks | RLS | K | source |", "|---|---|---:|---:|---:|---|"]
    for name, r in studies.items():
        r = r
        lines.append(f"| {name} | {r.model.get('model_type', '')} | {r.num_blocks} | {r.rls:.3f} | {r.k} | "
                     f"this study ({r.config['num_samples']} × {r.config['seq_len']} tokens of "
                     f"{r.config['calibration']}) |")

    for name, v in PAPER_RLS.items():
        lines.append(f"| {name} | | | {v:.3f} | {choose_k(v)} | paper (arXiv 2605.27786) |")
    return "\n".join(lines) + "\n"
