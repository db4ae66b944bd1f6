"""From sweep folders to study results: the per-model record the reports are rendered from.

:func:`load_sweep` reads a sweep folder, :func:`summarize` turns it into a
:class:`lorp.run.study_records.StudyResult` (``results.json``), :func:`load_studies` reads the
models' results back for the summary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluate.perplexity import Perplexity, geometric_mean_perplexity
from ..run.provenance import code_hash, git_commit
from ..run.record_schema import STUDY_SCHEMA, schema_of
from ..run.records import CellResult, ZeroShot
from ..run.study_records import StudyCell, StudyDense, StudyResult, SweepRecord
from ..run.sweep import SweepConfig, load_sweep_folder
from .sensitivity import seed_runs


def load_sweep(folder: str | Path, methods: Sequence[str] | None = None,
               budgets: Sequence[int] | None = None, config: SweepConfig | None = None, healer: str = "none"
               ) -> tuple[SweepRecord, list[CellResult]]:
    """``(sweep.json, cells)`` of a sweep folder as typed records, cells sorted by method order, budget, seed.

    Only cells of ``methods`` × ``budgets`` are returned (default: those the sweep
    last ran), so a folder reused with fewer methods reports just those. With ``config``
    (the :class:`lorp.run.sweep.SweepConfig` that ran), only its methods, each method's budgets
    (:meth:`lorp.run.sweep.SweepConfig.budgets_of`) and seeds (:meth:`lorp.run.sweep.SweepConfig.seeds_of`):
    cells an earlier run left for other budgets or seeds stay out of the report.

    Only cells healed by ``healer`` are returned (default ``"none"``: the unhealed cells), so a folder where
    ``lorp sweep --healers none,linear`` ran never puts a healed cell into an unhealed table, or one healer's
    cells beside another's.
    """
    record, cells = load_sweep_folder(folder)
    if config is not None:
        methods, budgets = config.methods, config.budgets
    order = {m: i for i, m in enumerate(methods or record.config["methods"])}
    budgets = set(budgets or record.config["budgets"])
    cells = [c for c in cells if c.method in order and c.budget in budgets and c.spec.healer == healer
             and (config is None or (c.spec.seed in config.seeds_of(c.method)
                                     and c.budget in config.budgets_of(c.method)))]
    return record, sorted(cells, key=lambda c: (order[c.method], c.budget, c.spec.seed))


def detail_fields(zero_shot: ZeroShot | None, speed: Any) -> dict[str, Any]:
    """A study row's ``zero_shot`` (score per task), ``zero_shot_items``, ``zero_shot_average`` and ``speed``
    (dict) from an evaluation's zero-shot result and decode speed; ``None`` each where not measured."""
    zs = zero_shot
    return {"zero_shot": {t: v.score for t, v in zs.tasks.items()} if zs else None,
            "zero_shot_items": {t: v.items for t, v in zs.tasks.items()} if zs else None,
            "zero_shot_average": zs.average if zs else None, "speed": asdict(speed) if speed else None}


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
    sweep's single-block removal profile (:class:`lorp.run.study_records.Attribution`), ``None`` where it has none.
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
            perplexity={k: v.perplexity for k, v in ev.perplexity.items()}, mean_perplexity=geometric_mean_perplexity(ev.perplexity),
            parameters=ev.parameters, seconds=dict(c.timings), nll_passes=c.nll_passes,
            evaluation_reused=c.evaluation_reused,
            **detail_fields(zs, ev.speed), **per_sample(ev.perplexity, zs)))
    return StudyResult(
        model=ctx.model, num_blocks=ctx.num_blocks,
        config={**meta.config, "methods": list(dict.fromkeys(c.method for c in cells)),
                "budgets": sorted({c.budget for c in cells})},
        rls=ref.rls if ref else None, k=ref.k if ref else None, k_source=ref.k_source if ref else None,
        labels=ref.labels if ref else None, similarity=ctx.similarity, calibration=ctx.calibration,
        dense=StudyDense(
            parameters=dense.parameters, perplexity={k: v.perplexity for k, v in dense.perplexity.items()},
            mean_perplexity=geometric_mean_perplexity(dense.perplexity),
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
        versions=meta.versions, computed_at_commit=meta.git_commit, git_commit=git_commit(), code_hash=code_hash(),
        attribution=meta.attribution, seeds=seed_runs(meta, cells, allocation))


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
    check_one_code(studies)
    return studies


def check_one_code(studies: Mapping[str, StudyResult]) -> str | None:
    """The one code hash (:attr:`StudyResult.code_hash`) shared by every study, so that a summary compares models
    computed by the same code; ``None`` when every record predates the hash.

    Raises:
        ConfigError: two hashes differ (a record without one counts as ``none recorded``); the message names
            every model with its hash and says how to make them agree.
    """
    hashes = {name: r.code_hash or "none recorded" for name, r in studies.items()}
    if len(set(hashes.values())) > 1:
        listed = "; ".join(f"{name}: {h}" for name, h in hashes.items())
        raise ConfigError(f"the model reports were computed by different code ({listed}); a summary combines only "
                          "models computed at one code hash: rerun the others at this checkout "
                          "(`lorp study --models ...`) or summarise them apart (`-p models ...`)")
    return next(iter(studies.values())).code_hash
