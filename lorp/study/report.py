"""From a sweep folder to the report a reader opens: study results, tables, winners, verdict, why.

Used by the study notebooks (``notebooks/lorp_study.ipynb``, ``notebooks/ablation.ipynb``,
``notebooks/summary.ipynb``) so that they stay thin: parse parameters (:mod:`lorp.study.parameters`,
re-exported here), run, render.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluate.perplexity import Perplexity
from ..evaluate.uncertainty import (LEVEL, SAMPLES, SEED, AccuracyComparison, PerplexityComparison, accuracy_intervals,
                                    compare_accuracy, compare_perplexity, window_series)
from ..method.locality import choose_k
from ..run.provenance import git_commit
from ..run.records import (STUDY_SCHEMA, CellResult, StudyCell, StudyDense, StudyResult, SweepRecord, ZeroShot,
                           as_study, schema_of)
from ..run.sweep import SweepConfig, load_sweep_folder
from .attribution import compared_cells, detail_budget, first_order_damage, rank_of, signals, spearman
from .parameters import coerce_parameters, split_ints, split_list, study_config, study_executor  # noqa: F401 (re-exported)
from .sensitivity import seed_runs
from .sensitivity import sensitivity_markdown as _sensitivity_markdown

#: RLS the paper reports for its models (arXiv 2605.27786, Table 1).
PAPER_RLS = {"Llama-3.1-8B": 1.149, "OLMo-3-7B": 0.941, "Mistral-Nemo-12B": 0.926, "Qwen3-8B": 0.685,
             "Qwen3-14B": 0.644}


def load_sweep(folder: str | Path, methods: Sequence[str] | None = None,
               budgets: Sequence[int] | None = None, config: SweepConfig | None = None
               ) -> tuple[SweepRecord, list[CellResult]]:
    """``(sweep.json, cells)`` of a sweep folder as typed records, cells sorted by method order, budget, seed.

    Only cells of ``methods`` × ``budgets`` are returned (default: those the sweep
    last ran), so a folder reused with fewer methods reports just those. With ``config``
    (the :class:`lorp.run.sweep.SweepConfig` that ran), only its methods, budgets and each
    method's seeds (:meth:`lorp.run.sweep.SweepConfig.seeds_of`): cells an earlier run left for
    other seeds stay out of the report.
    """
    record, cells = load_sweep_folder(folder)
    if config is not None:
        methods, budgets = config.methods, config.budgets
    order = {m: i for i, m in enumerate(methods or record.config["methods"])}
    budgets = set(budgets or record.config["budgets"])
    cells = [c for c in cells if c.method in order and c.budget in budgets
             and (config is None or c.spec.seed in config.seeds_of(c.method))]
    return record, sorted(cells, key=lambda c: (order[c.method], c.budget, c.spec.seed))


def mean_perplexity(ppl: Mapping[str, Any]) -> float:
    """Arithmetic mean over evaluation corpora of ``{corpus: Perplexity}`` (or ``{corpus: {"perplexity": …}}``)."""
    return statistics.fmean(v.perplexity if isinstance(v, Perplexity) else v["perplexity"] for v in ppl.values())


def per_sample(perplexity: Mapping[str, Perplexity], zero_shot: ZeroShot | None) -> dict[str, Any]:
    """``window_nll``, ``window_tokens`` and ``zero_shot_correct`` of a study row from its evaluation.

    ``window_nll``/``window_tokens`` are ``None`` unless every corpus kept one NLL per
    window over windows of equal length (evaluations cached before per-window NLL was
    kept have none); ``zero_shot_correct`` holds the tasks that kept per-item results
    (``None``: none did).
    """
    ok = all(len(p.window_nll) == p.windows > 0 and p.tokens % p.windows == 0 for p in perplexity.values())
    correct = {t: list(v.correct) for t, v in zero_shot.tasks.items() if v.correct is not None} if zero_shot else {}
    return {"window_nll": {c: list(p.window_nll) for c, p in perplexity.items()} if ok and perplexity else None,
            "window_tokens": {c: p.tokens // p.windows for c, p in perplexity.items()} if ok and perplexity else None,
            "zero_shot_correct": correct or None}


def summarize(meta: SweepRecord, cells: Sequence[CellResult], allocation: str = "lorp") -> StudyResult:
    """The per-model study result (``results.json``, ``"schema": "lorp.study"``): settings, RLS/K, every cell, dense.

    ``rls``, ``k`` and ``labels`` come from the ``allocation`` method's cells
    (LoRP's clustering, eqs. 5-7); each cell carries its pruned blocks, perplexity
    per corpus and their mean, parameters, and, at detail budgets, zero-shot
    accuracy and decode speed. ``compute_seconds`` is the time the numbers took when
    computed (calibration pass, dense evaluation, every cell), which a rerun that
    reuses them does not repeat. ``git_commit`` is the checkout rendering the report;
    ``computed_at_commit`` the one that computed the sweep's numbers (finished cells
    are reused across reruns). ``evaluations_shared`` counts cells whose evaluation
    came from another cell removing the same blocks. Per-window NLL and per-item
    zero-shot results are carried over where the evaluations kept them
    (:func:`per_sample`), for the intervals of :mod:`lorp.evaluate.uncertainty`. ``attribution`` is the
    sweep's single-block removal profile (:class:`lorp.run.records.Attribution`), ``None`` where it has none.
    (:func:`per_sample`), for the intervals of :mod:`lorp.evaluate.uncertainty`. With several
    run seeds, ``seeds`` holds each seed's S, calibration record, RLS and K
    (:func:`lorp.study.sensitivity.seed_runs`); ``cells`` are the first seed's cells (what the tables,
    figures and verdict read) and ``seed_cells`` the other seeds'.
    """
    lorp_cells = [c for c in cells if c.method == allocation and c.selection.rls is not None]
    ref = lorp_cells[0].selection if lorp_cells else None
    dense, ctx = meta.dense, meta.context
    first = int((meta.config.get("seeds") or [meta.config.get("seed", 0)])[0])
    rows, seed_rows = [], []
    for c in cells:
        ev = c.evaluation
        zs = ev.zero_shot
        (rows if c.spec.seed == first else seed_rows).append(StudyCell(
            method=c.method, budget=c.budget, seed=c.spec.seed, pruned=c.pruned,
            perplexity={k: v.perplexity for k, v in ev.perplexity.items()}, mean_perplexity=mean_perplexity(ev.perplexity),
            parameters=ev.parameters, seconds=dict(c.timings), nll_passes=c.nll_passes,
            evaluation_reused=c.evaluation_reused,
            zero_shot={t: v.score for t, v in zs.tasks.items()} if zs else None,
            zero_shot_items={t: v.items for t, v in zs.tasks.items()} if zs else None,
            zero_shot_average=zs.average if zs else None, speed=asdict(ev.speed) if ev.speed else None,
            **per_sample(ev.perplexity, zs)))
    return StudyResult(
        model=ctx.model, num_blocks=ctx.num_blocks,
        config={**meta.config, "methods": list(dict.fromkeys(c.method for c in cells)),
                "budgets": sorted({c.budget for c in cells})},
        rls=ref.rls if ref else None, k=ref.k if ref else None, k_source=ref.k_source if ref else None,
        labels=ref.labels if ref else None, similarity=ctx.similarity, calibration=ctx.calibration,
        dense=StudyDense(
            parameters=dense.parameters, perplexity={k: v.perplexity for k, v in dense.perplexity.items()},
            mean_perplexity=mean_perplexity(dense.perplexity),
            zero_shot={t: v.score for t, v in dense.zero_shot.tasks.items()} if dense.zero_shot else None,
            zero_shot_average=dense.zero_shot.average if dense.zero_shot else None,
            speed=asdict(dense.speed) if dense.speed else None, flops_per_token=meta.dense_flops_per_token,
            **per_sample(dense.perplexity, dense.zero_shot)),
        cells=rows, seed_cells=seed_rows, perplexity_reuse=meta.perplexity_reuse,
        evaluations_shared=sum(c.evaluation_reused for c in cells),
        compute_seconds={"load": ctx.model.get("load_seconds"), "calibration": ctx.calibration.get("seconds"),
                         "dense": dense.seconds, "dense_stages": dict(dense.stage_seconds),
                         "cells": sum(c.timings["total"] for c in cells),
                         **({"attribution": meta.attribution.seconds} if meta.attribution else {})},
        evaluation={n: {"source": ctx.eval_sources.get(n), "windows": w, "window_tokens": t,
                        "tokens_scored": w * (t - 1)} for n, (w, t) in ctx.eval_windows.items()},
        plugins={c.method: c.plugin for c in cells},
        versions=meta.versions, computed_at_commit=meta.git_commit, git_commit=git_commit(),
        attribution=meta.attribution, seeds=seed_runs(meta, cells, allocation))


def sensitivity_markdown(results: StudyResult | dict[str, Any]) -> str:
    """Is the selection stable across calibration draws? See :func:`lorp.study.sensitivity.sensitivity_markdown`."""
    return _sensitivity_markdown(results)


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}" if abs(x) < 1e5 else f"{x:.2e}"


#: Footnotes of reports on records without per-window NLL or per-item zero-shot results (older runs).
NO_WINDOW_NLL = "_No per-window NLL: intervals unavailable._"
NO_ITEM_RESULTS = "_No per-item zero-shot results: intervals unavailable._"


def _times(x: float) -> str:
    """A perplexity ratio: ``1.14``, ``72.5``, ``1.10e+04``; three decimals near 1 (``1.003``), so a bound
    that excludes parity never prints as ``1.00``."""
    if x != 1.0 and 0.995 <= x < 1.005:
        return f"{x:.3f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 1e4 else f"{x:.2e}"


def _ratio_ci(k: PerplexityComparison) -> str:
    return f"{_times(k.ratio)}× [{_times(k.ratio_low)}, {_times(k.ratio_high)}]"


def _points_ci(k: AccuracyComparison) -> str:
    return f"{100 * k.difference:+.1f} [{100 * k.low:+.1f}, {100 * k.high:+.1f}]"


def _interval_method(what: str) -> str:
    return (f"{100 * LEVEL:.0f} % paired percentile bootstrap over the {what} both methods share "
            f"({SAMPLES} resamples, seed {SEED})")


def _windows_per_corpus(cells: Sequence[StudyCell]) -> str:
    counts = sorted({len(v) for c in cells if c.window_nll for v in c.window_nll.values()})
    return "/".join(map(str, counts)) or "?"


def lorp_vs_best_baseline(cells: Sequence[StudyCell], allocation: str = "lorp") -> dict[str, Any] | None:
    """LoRP against the baseline with the lowest mean perplexity among ``cells`` (one budget).

    Returns ``{"baseline", "ratio", "low", "high", "decision"}``: ratio of LoRP's mean
    perplexity over the baseline's with its paired 95 % interval
    (:func:`lorp.evaluate.uncertainty.compare_perplexity`), and whether LoRP ``"wins"``,
    ``"loses"`` or is ``"undecided"``; ``None`` without a LoRP cell, a baseline, or
    per-window NLL.
    """
    lorp = next((c for c in cells if c.method == allocation), None)
    rivals = [c for c in cells if c.method != allocation]
    if lorp is None or not rivals:
        return None
    base = min(rivals, key=lambda c: c.mean_perplexity)
    k = compare_perplexity(base, lorp)
    return None if k is None else {"baseline": base.method, "ratio": k.ratio, "low": k.ratio_low,
                                   "high": k.ratio_high, "decision": k.decision}


def lorp_vs_best_baseline_accuracy(cells: Sequence[StudyCell], allocation: str = "lorp") -> dict[str, Any] | None:
    """LoRP against the baseline with the highest mean zero-shot accuracy among ``cells`` (one budget).

    Returns ``{"baseline", "difference", "low", "high", "decision", "mcnemar_p"}``:
    LoRP's mean accuracy minus the baseline's (fractions) with its paired 95 %
    interval over items (:func:`lorp.evaluate.uncertainty.compare_accuracy`) and the exact
    McNemar p-value on the pooled items; ``None`` without per-item results.
    """
    lorp = next((c for c in cells if c.method == allocation and c.zero_shot_average is not None), None)
    rivals = [c for c in cells if c.method != allocation and c.zero_shot_average is not None]
    if lorp is None or not rivals:
        return None
    base = max(rivals, key=lambda c: c.zero_shot_average)
    k = (compare_accuracy(base, lorp) or {}).get("average")
    return None if k is None else {"baseline": base.method, "difference": k.difference, "low": k.low,
                                   "high": k.high, "decision": k.decision, "mcnemar_p": k.mcnemar.p_value}


def perplexity_markdown(results: StudyResult | dict[str, Any]) -> str:
    """Markdown: one row per (method, budget) with perplexity per corpus and their mean; best per budget in bold.

    With per-window NLL a column gives each method's mean perplexity over the
    budget's best with its paired 95 % bootstrap interval (:mod:`lorp.evaluate.uncertainty`);
    bold marks the best and every method that interval cannot separate from it, and
    a line per budget gives LoRP against the best baseline. Without it (older
    results) the table is the point-estimate one, with :data:`NO_WINDOW_NLL` below.
    """
    r = as_study(results)
    corpora = list(r.dense.perplexity)
    intervals = any(window_series(c) for c in r.cells)
    head = "| method | budget | " + " | ".join(corpora) + " | mean | " + ("× best [95 % CI] | " if intervals else "")
    lines = [head + "pruned blocks |",
             "|---|---:|" + "---:|" * (len(corpora) + 1) + ("---:|" if intervals else "") + "---|",
             "| dense | 0 | " + " | ".join(_fmt(r.dense.perplexity[c]) for c in corpora)
             + f" | {_fmt(r.dense.mean_perplexity)} | " + ("| " if intervals else "") + "|"]
    best = {b: min((c for c in r.cells if c.budget == b), key=lambda c: c.mean_perplexity)
            for b in {c.budget for c in r.cells}}
    for c in sorted(r.cells, key=lambda c: (c.budget, c.mean_perplexity)):
        top = best[c.budget]
        k = None if c is top or not intervals else compare_perplexity(top, c)
        tied = c.mean_perplexity == top.mean_perplexity if k is None else k.decision != "loses"
        mean = f"**{_fmt(c.mean_perplexity)}**" if tied else _fmt(c.mean_perplexity)
        ratio = ("best | " if c is top else f"{_ratio_ci(k)} | " if k else "– | ") if intervals else ""
        lines.append(f"| {c.method} | {c.budget} | " + " | ".join(_fmt(c.perplexity[k_]) for k_ in corpora)
                     + f" | {mean} | {ratio}{' '.join(map(str, c.pruned))} |")
    if not intervals:
        return "\n".join(lines) + "\n\n" + NO_WINDOW_NLL + "\n"
    lines += ["", (f"Bold: the lowest mean perplexity at its budget and every method whose interval against it "
                   f"includes 1. × best: mean perplexity over the best's, {_interval_method('evaluation windows')}; "
                   f"{_windows_per_corpus(r.cells)} windows per corpus, so the intervals are rough."), ""]
    for b in sorted(best):
        v = lorp_vs_best_baseline([c for c in r.cells if c.budget == b])
        if v:
            lines.append(f"- Budget {b}: LoRP's mean perplexity is {_times(v['ratio'])}× that of the best baseline, "
                         f"{v['baseline']} (95 % CI {_times(v['low'])}–{_times(v['high'])}): LoRP {v['decision']}.")
    return "\n".join(lines) + "\n"


def zero_shot_markdown(results: StudyResult | dict[str, Any]) -> str:
    """Markdown: zero-shot accuracy (%) per task and average, dense and every method at the detail budget.

    With per-item results each accuracy carries its 95 % interval (Wilson per task,
    bootstrap over items for the average; :mod:`lorp.evaluate.uncertainty`) and a second table
    gives LoRP minus every other method, paired on the same items (95 % bootstrap
    interval, exact McNemar p per task). Without them (older results) the table is
    the point-estimate one, with :data:`NO_ITEM_RESULTS` below.
    """
    r = as_study(results)
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
        others = [("dense", 0, r.dense)] + [(c.method, c.budget, c) for c in rows if c.budget == b and c is not lorp]
        diffs = [(m, bb, compare_accuracy(o, lorp)) for m, bb, o in others] if lorp else []
        if not any(k for *_, k in diffs):
            continue
        lines += ["", (f"LoRP minus each method at budget {b}, in points: {_interval_method('items')}; "
                       "exact McNemar (1947) p per task."), "",
                  "| method | budget | " + " | ".join(tasks) + " | average | LoRP (average) |",
                  "|---|---:|" + "---:|" * (len(tasks) + 1) + "---|"]
        for m, bb, k in diffs:
            k = k or {}
            cells = [(_points_ci(k[t]) + f" (p {k[t].mcnemar.p_value:.2g})") if t in k else "–" for t in tasks]
            avg = k.get("average")
            lines.append(f"| {m} | {bb} | " + " | ".join(cells) + f" | {_points_ci(avg) if avg else '–'} | "
                         f"{avg.decision if avg else '–'} |")
    return "\n".join(lines) + "\n"


def speed_markdown(results: StudyResult | dict[str, Any]) -> str:
    """Markdown: parameters, FLOPs per token and measured decode speed, dense vs each pruned model measured."""
    r = as_study(results)
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


def winners(results: StudyResult | dict[str, Any]) -> list[dict[str, Any]]:
    """Per budget: the method with the lowest mean perplexity and (where measured) the highest mean accuracy.

    Tied methods are all named, comma-separated, best first. With per-window NLL
    (per-item results for accuracy) "tied" means the paired 95 % interval against
    the best includes zero (:mod:`lorp.evaluate.uncertainty`): a method is beaten
    only when the interval excludes zero. Without them, only equal point estimates
    tie.

    Returns rows ``{"model", "budget", "perplexity_winner", "perplexity", "lorp_perplexity",
    "accuracy_winner", "accuracy", "lorp_accuracy", "perplexity_intervals", "accuracy_intervals",
    "lorp_vs_best_baseline", "lorp_vs_best_baseline_accuracy"}`` (accuracy fields ``None`` where not
    measured; ``*_intervals`` say whether ties were judged by intervals; the ``lorp_vs_*`` entries are
    :func:`lorp_vs_best_baseline` and :func:`lorp_vs_best_baseline_accuracy`, ``None`` where unavailable).
    """
    r = as_study(results)
    out = []
    for b in sorted({c.budget for c in r.cells}):
        cells = sorted((c for c in r.cells if c.budget == b), key=lambda c: c.mean_perplexity)
        ppl = cells[0]
        lorp = next((c for c in cells if c.method == "lorp"), None)
        acc_cells = sorted((c for c in cells if c.zero_shot_average is not None), key=lambda c: -c.zero_shot_average)
        acc = acc_cells[0] if acc_cells else None
        ppl_k = [compare_perplexity(ppl, c) for c in cells[1:]]
        ppl_iv = bool(ppl_k) and all(ppl_k)
        ppl_names = ", ".join([ppl.method] + [c.method for c, k in zip(cells[1:], ppl_k)
                                              if (k.decision != "loses" if ppl_iv else c.mean_perplexity
                                                  == ppl.mean_perplexity)])
        acc_k = [(compare_accuracy(acc, c) or {}).get("average") for c in acc_cells[1:]]
        acc_iv = bool(acc_k) and all(acc_k)
        acc_names = acc and ", ".join([acc.method] + [c.method for c, k in zip(acc_cells[1:], acc_k)
                                                      if (k.decision != "loses" if acc_iv else c.zero_shot_average
                                                          == acc.zero_shot_average)])
        out.append({"model": r.model["name"], "budget": b, "perplexity_winner": ppl_names,
                    "perplexity": ppl.mean_perplexity, "lorp_perplexity": lorp and lorp.mean_perplexity,
                    "accuracy_winner": acc_names, "accuracy": acc and acc.zero_shot_average,
                    "lorp_accuracy": lorp and lorp.zero_shot_average, "perplexity_intervals": ppl_iv,
                    "accuracy_intervals": acc_iv, "lorp_vs_best_baseline": lorp_vs_best_baseline(cells),
                    "lorp_vs_best_baseline_accuracy": lorp_vs_best_baseline_accuracy(cells)})
    return out


#: The baselines the paper compares LoRP against.
PAPER_BASELINES = ("shortgpt", "streamline")


def disclosure_markdown(results: StudyResult | dict[str, Any]) -> str:
    """Markdown: exactly what was measured — checkpoint, calibration, evaluation windows and tokens scored,
    zero-shot items, SLEB's scoring set, seeds and the commit. Fields an older ``results.json`` lacks are
    shown as "not recorded"."""
    r = as_study(results)
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
    lines.append(f"- **Seeds**: {cfg.get('seeds', [cfg.get('seed')])}; **computed at** `{r.computed_at_commit or na}`.")
    return "\n".join(lines) + "\n"


def _blocks(blocks: Sequence[int]) -> str:
    return "{" + ", ".join(map(str, sorted(blocks))) + "}" if len(blocks) else "none"


#: What :func:`attribution_markdown` says for a study without the single-block removal profile.
NO_ATTRIBUTION = "_No single-block removal profile in this run (set attribution=True and rerun; finished cells are reused)._"


def attribution_markdown(results: StudyResult | dict[str, Any], budget: int | None = None,
                         allocation: str = "lorp") -> str:
    """Markdown: which of the removed blocks do the damage, LoRP's set against the best baseline's.

    At ``budget`` (default: the detail budget, :func:`lorp.study.attribution.detail_budget`) the
    blocks LoRP removes and the blocks the best baseline removes (lowest mean perplexity
    at that budget) are listed, each ranked by its single-removal ΔNLL (the calibration
    NLL with only that block removed minus the dense NLL, nats per scored token;
    :class:`lorp.run.records.Attribution`), most damaging first, with its LoRP redundancy
    ``r`` (eq. 8), ShortGPT Block Influence and rank among the removable blocks. The sum
    of each set's single-removal ΔNLL is given as a first-order account of the damage
    (interactions between removed blocks ignored), next to the first-order optimum (the
    ``budget`` removable blocks of least ΔNLL). Last, the Spearman rank correlation
    (``scipy.stats.spearmanr``) between ΔNLL and each signal across the removable blocks.

    Returns :data:`NO_ATTRIBUTION` for a study without the profile.
    """
    r = as_study(results)
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
    damage = [f"{m} {_blocks(c.pruned)}: {first_order_damage(sig.delta, c.pruned):.3f}" for m, c in sets]
    lines.append("Sum of single-removal ΔNLL (nats/token) — " + "; ".join(
        damage + [f"first-order optimum {_blocks(best)}: {first_order_damage(sig.delta, best):.3f}"]) + ".")
    if lorp is not None and rival is not None:
        own, other = sorted(set(lorp.pruned) - set(rival.pruned)), sorted(set(rival.pruned) - set(lorp.pruned))
        if own or other:
            lines.append(f"Only LoRP removes {_blocks(own)} (ΔNLL sum {first_order_damage(sig.delta, own):.3f}); only "
                         f"{rival.method} removes {_blocks(other)} (ΔNLL sum {first_order_damage(sig.delta, other):.3f}).")
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


def reading(results: StudyResult | dict[str, Any]) -> str:
    """A plain-language reading of one model's study (Markdown): who wins where, by how much, and how sure."""
    r = as_study(results)
    name, n = r.model["name"], r.num_blocks
    lines = [f"**{name}** has RLS {r.rls:.3f}, so LoRP splits its {n} blocks into K = {r.k} "
             f"clusters (eq. 6: RLS ≥ 1.0 → 2, ≥ 0.7 → 3, else 4).", ""]
    rows = winners(r)
    for w in rows:
        b = w["budget"]
        tied = " (not separable at 95 %)" if w["perplexity_intervals"] and ", " in w["perplexity_winner"] else ""
        line = (f"- Budget {b} ({100 * b / n:.0f} % of the blocks): lowest mean perplexity from "
                f"**{w['perplexity_winner']}**{tied} ({_fmt(w['perplexity'])}; dense {_fmt(r.dense.mean_perplexity)})")
        if w["lorp_perplexity"] is not None and "lorp" not in w["perplexity_winner"].split(", "):
            line += f", LoRP {_fmt(w['lorp_perplexity'])} ({w['lorp_perplexity'] / w['perplexity']:.1f}× the best)"
        v = w["lorp_vs_best_baseline"]
        if v:
            line += (f"; against the best baseline, {v['baseline']}, LoRP's mean perplexity is {_times(v['ratio'])}× "
                     f"(95 % CI {_times(v['low'])}–{_times(v['high'])}): LoRP {v['decision']}")
        if w["accuracy_winner"] is not None:
            line += (f"; highest mean zero-shot accuracy from **{w['accuracy_winner']}** ({100 * w['accuracy']:.1f} %, "
                     f"dense {100 * r.dense.zero_shot_average:.1f} %"
                     + (f", LoRP {100 * w['lorp_accuracy']:.1f} %" if w["lorp_accuracy"] is not None else "") + ")")
        v = w["lorp_vs_best_baseline_accuracy"]
        if v:
            line += (f"; LoRP minus the best baseline, {v['baseline']}, on accuracy: {100 * v['difference']:+.1f} "
                     f"points (95 % CI {100 * v['low']:+.1f} to {100 * v['high']:+.1f}; McNemar p "
                     f"{v['mcnemar_p']:.2g}): LoRP {v['decision']}")
        lines.append(line + ".")
    limit = r.config.get("zero_shot_limit")
    measured = any(c.zero_shot_average is not None for c in r.cells)
    item_intervals = any(accuracy_intervals(c) for c in r.cells if c.zero_shot)
    if limit and measured and not item_intervals:
        lines += ["", f"Zero-shot accuracies rest on {limit} items per task: differences under about "
                      f"{100 / limit ** 0.5:.0f} points are within sampling noise."]
    notes = ([(f"Intervals: {_interval_method('evaluation windows (items for accuracy)')}; a method beats "
               "another only where its interval excludes zero (a perplexity ratio of 1).")]
             if any(w["perplexity_intervals"] or w["lorp_vs_best_baseline"] for w in rows) else [NO_WINDOW_NLL])
    if measured and not item_intervals:
        notes.append(NO_ITEM_RESULTS)
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


def load_studies(root: str | Path, names: Sequence[str] | None = None) -> dict[str, StudyResult]:
    """Per-model study results under ``root``: ``{folder name: StudyResult}``.

    Every ``root/<name>/results.json`` written by the study notebook is read (or
    only ``names``).

    Raises:
        ConfigError: a named report is missing, or none is found.
    """
    root = Path(root)
    if names:
        missing = [n for n in names if not (root / n / "results.json").is_file()]
        if missing:
            raise ConfigError(f"no study report for {missing} under {root}; run `lorp study --models ...` first")
        folders = [root / n for n in names]
    else:
        folders = sorted(p.parent for p in root.glob("*/results.json"))
    studies = {}
    for folder in folders:
        data = json.loads((folder / "results.json").read_text())
        if schema_of(data) == STUDY_SCHEMA:
            studies[folder.name] = StudyResult.from_json(data)
    if not studies:
        raise ConfigError(f"no study reports under {root}; run `lorp study` first")
    return studies


def rls_markdown(studies: Mapping[str, StudyResult | dict[str, Any]]) -> str:
    """Markdown: RLS and K of each studied model, then the paper's values."""
    lines = ["| model | architecture | blocks | RLS | K | source |", "|---|---|---:|---:|---:|---|"]
    for name, r in studies.items():
        r = as_study(r)
        lines.append(f"| {name} | {r.model.get('model_type', '')} | {r.num_blocks} | {r.rls:.3f} | {r.k} | "
                     f"this study ({r.config['num_samples']} × {r.config['seq_len']} tokens of "
                     f"{r.config['calibration']}) |")

    for name, v in PAPER_RLS.items():
        lines.append(f"| {name} | | | {v:.3f} | {choose_k(v)} | paper (arXiv 2605.27786) |")
    return "\n".join(lines) + "\n"


def winners_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown of :func:`winners` rows across models.

    Where rows carry intervals, two columns give LoRP against the best baseline
    (perplexity ratio, accuracy difference, with 95 % intervals and the outcome) and
    a line counts the settings LoRP wins, loses and leaves undecided; rows without
    them (older results) give the point-estimate table with :data:`NO_WINDOW_NLL`.
    """
    intervals = any(w.get("lorp_vs_best_baseline") or w.get("lorp_vs_best_baseline_accuracy")
                    or w.get("perplexity_intervals") for w in rows)
    head = ("| model | budget | best on mean perplexity | its perplexity | LoRP perplexity | best on mean accuracy "
            "| its accuracy | LoRP accuracy |")
    rule = "|---|---:|---|---:|---:|---|---:|---:|"
    if intervals:
        head += " LoRP ÷ best baseline, perplexity [95 % CI] | LoRP − best baseline, accuracy (points) [95 % CI] |"
        rule += "---|---|"
    lines = [head, rule]
    for w in rows:
        acc = "–" if w["accuracy"] is None else f"{100 * w['accuracy']:.1f} %"
        lacc = "–" if w["lorp_accuracy"] is None else f"{100 * w['lorp_accuracy']:.1f} %"
        line = (f"| {w['model']} | {w['budget']} | {w['perplexity_winner']} | {_fmt(w['perplexity'])} | "
                f"{_fmt(w['lorp_perplexity'])} | {w['accuracy_winner'] or '–'} | {acc} | {lacc} |")
        if intervals:
            v, a = w.get("lorp_vs_best_baseline"), w.get("lorp_vs_best_baseline_accuracy")
            line += (f" {_times(v['ratio'])}× [{_times(v['low'])}, {_times(v['high'])}] vs {v['baseline']}: "
                     f"{v['decision']} |" if v else " – |")
            line += (f" {100 * a['difference']:+.1f} [{100 * a['low']:+.1f}, {100 * a['high']:+.1f}] vs "
                     f"{a['baseline']}: {a['decision']} |" if a else " – |")
        lines.append(line)
    if not intervals:
        return "\n".join(lines) + "\n\n" + NO_WINDOW_NLL + "\n"
    lines.append("")
    for what, key in (("perplexity", "lorp_vs_best_baseline"), ("accuracy", "lorp_vs_best_baseline_accuracy")):
        got = [w[key]["decision"] for w in rows if w.get(key)]
        if got:
            lines.append(f"LoRP against the best baseline on mean {what}: wins in {got.count('wins')}, loses in "
                         f"{got.count('loses')}, undecided in {got.count('undecided')} of {len(got)} settings.")
    lines.append(f"Best names every method, best first, whose interval against the best includes no difference "
                 f"(a perplexity ratio of 1, an accuracy difference of 0): "
                 f"{_interval_method('evaluation windows (items for accuracy)')}.")
    return "\n".join(lines) + "\n"


def _outcome(decisions: Sequence[str]) -> str:
    """One setting from LoRP's comparisons with each baseline: wins all, loses any, else undecided."""
    return "wins" if all(d == "wins" for d in decisions) else "loses" if "loses" in decisions else "undecided"


def _point(lorp: float, rival: float, lower_is_better: bool) -> str:
    if lorp == rival:
        return "undecided"
    return "wins" if (lorp < rival) == lower_is_better else "loses"


def _status(outcomes: Sequence[str]) -> str:
    """``holds`` when LoRP wins most settings, ``fails`` when it loses most, else ``undecided``."""
    if outcomes.count("wins") > len(outcomes) / 2:
        return "holds"
    return "fails" if outcomes.count("loses") > len(outcomes) / 2 else "undecided"


def verdict(studies: Mapping[str, StudyResult | dict[str, Any]]) -> str:
    """Plain statement of whether the paper's claim holds on these models, whichever way it falls.

    The claim tested: at the same budget, LoRP's pruned model has lower perplexity and
    higher zero-shot accuracy than the paper's baselines (ShortGPT, LLM-Streamline).
    Counted per (model, budget) on mean perplexity, and per (model, detail budget)
    on mean accuracy.

    With per-window NLL (per-item results for accuracy) LoRP wins a setting only when
    its paired 95 % interval against each baseline excludes zero in its favour, loses
    it when the interval against either excludes zero the other way, and otherwise the
    setting is undecided (:mod:`lorp.evaluate.uncertainty`). Each criterion holds when LoRP
    wins most settings and fails when it loses most; the claim holds when every
    measured criterion holds, in part when some do, does not hold when none does and
    one fails, and cannot be decided when all are undecided. Settings without
    intervals are compared on point estimates (ties undecided) and counted as such.
    Results without any intervals (older runs) get the point-estimate verdict (ties
    count as not beaten) with :data:`NO_WINDOW_NLL`.
    """
    studies = {name: as_study(r) for name, r in studies.items()}
    ppl, acc, best, point = [], [], [], {"perplexity": 0, "accuracy": 0}
    for r in studies.values():
        for b in sorted({c.budget for c in r.cells}):
            cells = {c.method: c for c in r.cells if c.budget == b}
            lorp = cells.get("lorp")
            rivals = [cells[m] for m in PAPER_BASELINES if m in cells]
            if lorp is None or not rivals:
                continue
            ks = [compare_perplexity(c, lorp) for c in rivals]
            if all(ks):
                ppl.append(_outcome([k.decision for k in ks]))
            else:
                point["perplexity"] += 1
                ppl.append(_outcome([_point(lorp.mean_perplexity, c.mean_perplexity, True) for c in rivals]))
            others = [c for m, c in cells.items() if m != "lorp"]
            kb = [compare_perplexity(c, lorp) for c in others]
            best.append(all(k.decision == "wins" for k in kb) if kb and all(kb)
                        else lorp.mean_perplexity == min(c.mean_perplexity for c in cells.values()))
            if lorp.zero_shot_average is not None and all(c.zero_shot_average is not None for c in rivals):
                ka = [(compare_accuracy(c, lorp) or {}).get("average") for c in rivals]
                if all(ka):
                    acc.append(_outcome([k.decision for k in ka]))
                else:
                    point["accuracy"] += 1
                    acc.append(_outcome([_point(lorp.zero_shot_average, c.zero_shot_average, False) for c in rivals]))
    if not ppl:
        return "The studies hold no LoRP cells next to ShortGPT or LLM-Streamline cells; the claim cannot be tested.\n"
    if point["perplexity"] == len(ppl) and point["accuracy"] == len(acc):
        return _point_verdict(studies, ppl, acc, best)
    statuses = [_status(ppl)] + ([_status(acc)] if acc else [])
    if all(s == "holds" for s in statuses):
        head = "**The paper's claim holds on these models.**"
    elif "holds" in statuses:
        head = "**The paper's claim holds only in part on these models.**"
    elif "fails" in statuses:
        head = "**The paper's claim does not hold on these models.**"
    else:
        head = "**The paper's claim cannot be decided on these models and samples.**"
    text = (f"{head} Counting a win only where the paired 95 % interval excludes parity (a perplexity ratio of 1, "
            "an accuracy difference of 0): LoRP beats both "
            f"ShortGPT and LLM-Streamline on mean perplexity in {ppl.count('wins')} of {len(ppl)} (model, budget) "
            f"settings, loses to at least one of them in {ppl.count('loses')}, and {ppl.count('undecided')} are "
            f"undecided; it beats every other method compared in {sum(best)}")
    text += (f"; on mean zero-shot accuracy it beats both in {acc.count('wins')} of {len(acc)} settings, loses in "
             f"{acc.count('loses')}, and {acc.count('undecided')} are undecided." if acc
             else "; zero-shot accuracy was not measured.")
    text += f" Intervals: {_interval_method('evaluation windows (items for accuracy)')}."
    for what, n in point.items():
        if n:
            text += (f" {n} setting(s) lacked per-{'window NLL' if what == 'perplexity' else 'item results'} and were "
                     f"compared on point {what} (equal values undecided).")
    return text + _samples_and_models(studies) + "\n"


def _samples_and_models(studies: Mapping[str, StudyResult]) -> str:
    sizes = sorted({(r.config.get("num_samples"), r.config.get("seq_len"), r.config.get("eval_tokens"),
                     r.config.get("zero_shot_limit")) for r in studies.values()}, key=str)
    scored = sorted({e["tokens_scored"] for r in studies.values() for e in (r.evaluation or {}).values()})
    samples = "; ".join(f"{n} x {t} calibration tokens, {e or 'all'} evaluation tokens per corpus"
                        + (f" ({'/'.join(f'{s:,}' for s in scored)} scored)" if scored else "")
                        + (f", {z} zero-shot items per task" if z else "") for n, t, e, z in sizes)
    models = ", ".join(f"{name} (RLS {r.rls:.2f}, {r.dense.parameters / 1e6:.0f}M parameters)"
                       for name, r in studies.items())
    seeds = sorted({tuple(r.seeds) for r in studies.values() if len(r.seeds) > 1})
    runs = "; ".join(f"the counts above are for run seed {s[0]}, and seeds {', '.join(s[1:])} are in each model's "
                     "sensitivity.md and selector.md" for s in seeds)
    return (f" Sample sizes: {samples}." + (f" Seeds: {runs}." if runs else "") + f" Models: {models}. These are small models evaluated on small samples; the "
            "paper's models have 7-14B parameters, so this tests whether the method transfers down in scale, not "
            "the paper's numbers.")


def _point_verdict(studies: Mapping[str, StudyResult], ppl: Sequence[str], acc: Sequence[str],
                   best: Sequence[bool]) -> str:
    """The verdict on point estimates alone (results without per-window NLL), as before intervals."""
    ppl_wins, ppl_total, acc_wins, acc_total = ppl.count("wins"), len(ppl), acc.count("wins"), len(acc)
    ppl_holds = ppl_wins > ppl_total / 2
    acc_holds = acc_total > 0 and acc_wins > acc_total / 2
    if ppl_holds and (acc_holds or not acc_total):
        head = "**The paper's claim holds on these models.**"
    elif not ppl_holds and not acc_holds:
        head = "**The paper's claim does not hold on these models.**"
    else:
        head = "**The paper's claim holds only in part on these models.**"
    text = (f"{head} LoRP beats both ShortGPT and LLM-Streamline on mean perplexity in {ppl_wins} of {ppl_total} "
            f"(model, budget) settings and is the best of all methods compared in {sum(best)}")
    text += (f"; it beats both on mean zero-shot accuracy in {acc_wins} of {acc_total} settings." if acc_total
             else "; zero-shot accuracy was not measured.")
    text += " Ties do not count as wins." + _samples_and_models(studies)
    return text + "\n\n" + NO_WINDOW_NLL + "\n"


def why_markdown(studies: Mapping[str, StudyResult | dict[str, Any]], allocation: str = "lorp") -> str:
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
        r = as_study(res)
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
            f"- **{name}**, budget {budget}: LoRP ({_fmt(lorp.mean_perplexity)} mean perplexity) {verdict_word} "
            f"{rival.method} ({_fmt(rival.mean_perplexity)}). Blocks only LoRP removes, most damaging first: "
            f"{desc or 'none'}{share}. Across removable blocks, the damage of a single removal has Spearman ρ "
            f"{rho_r.rho:+.2f} with LoRP's redundancy r (eq. 8; a good signal would be strongly negative) and "
            f"{rho_bi.rho:+.2f} with Block Influence (a good signal would be strongly positive).")
    profiles = sorted({a.describe() for a in (as_study(r).attribution for r in studies.values()) if a})
    intro = ("Which removed blocks account for LoRP's loss, from the single-block removal profile (the calibration "
             "NLL with only that block removed minus the dense NLL, scored on " + ("; ".join(profiles) or "–")
             + "). This is first order: each block's cost alone, added up. Where the sum over a set is much "
             "smaller than the measured gap in perplexity (the ratio in winners.md), the blocks do their damage "
             "together, and naming single blocks explains only part of it.")
    return intro + "\n\n" + "\n".join(lines) + "\n"
