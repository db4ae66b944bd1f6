"""``lorp prune``: one model, one method, one budget, end to end, and the run folder it writes.

The same cell a sweep runs (:class:`lorp.run.worker.CellWorker`), plus the pruned
model saved with ``save_pretrained``. Above :mod:`lorp.run.cells`, which uses the
calibration helpers of :mod:`lorp.run.pipeline`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..heal.saved import carried_stream_maps, save_healed
from ..method.allocation import check_budget, normalize_protected
from ..model.blocks import find_blocks
from ..model.gguf_export import DEFAULT_HEALED_TYPE
from ..model.models import resolve_model
from ..model.pruning import remove_blocks
from ..plugins.components import AllocationStrategy
from ..plugins.registry import Registry, load_registry
from ..store.atomic import check_output_location, staged_dir, write_json
from ..store.cache import check_cache_writable
from .pipeline import PruneConfig, block_metric
from .provenance import git_commit, machine, package_versions
from .gguf import check_gguf_export, export_run_gguf
from .healing import HealedRun, check_heal, heal_run, healing_record
from .record_schema import PRUNE_SCHEMA
from .records import CellSpec, EvalSettings
from .worker import CellWorker


@dataclass
class RunResult:
    """What :func:`run_prune` returns: the results dict and where it was written."""

    results: dict[str, Any]
    out_dir: Path | None
    similarity: np.ndarray
    model: Any = field(repr=False, default=None)
    tokenizer: Any = field(repr=False, default=None)


def _count_parameters(model: torch.nn.Module) -> int:
    """Parameters, plus the values of any residual-stream maps (``d²`` each): what the saved model holds."""
    return sum(p.numel() for p in model.parameters()) + sum(m.t.numel() for m in carried_stream_maps(model).values())


#: What a run folder holds; anything else in an existing --out folder stops the run.
RUN_OUTPUTS = frozenset({"results.json", "similarity.npy", "model"})


def check_output_folder(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that cannot be written, or that holds anything but a previous run's outputs.

    Raises:
        ConfigError: ``out_dir`` is a file, or holds files lorp did not write.
        StorageError: ``out_dir`` is a mount point or its folder cannot be written.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output folder {out_dir} is a file; choose another --out")
    check_output_location(out_dir)
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in RUN_OUTPUTS)
        if foreign:
            raise ConfigError(f"output folder {out_dir} holds files lorp did not write ({', '.join(foreign[:5])}); "
                              "a run replaces its folder whole, so choose another --out")


def run_prune(config: PruneConfig, out_dir: str | Path | None = None, registry: Registry | None = None, *,
              gguf_path: str | Path | None = None, gguf_type: str = DEFAULT_HEALED_TYPE) -> RunResult:
    """Run LoRP end to end on a real model and (optionally) write the outputs.

    One cell (:class:`lorp.run.worker.CellWorker`, the same code a sweep runs) plus
    saving the pruned model. Steps: load model -> calibration pass (similarity S,
    eqs. 3-4, cached on disk) -> RLS and K (eqs. 5-6) -> clusters (eq. 7) ->
    allocation (eqs. 8-11) -> perplexity of the dense model -> perplexity of the pruned
    model -> (with ``config.heal``) fit the healer on the same calibration draw, write
    its weights, perplexity of the healed pruned model (:mod:`lorp.run.healing`) ->
    remove blocks. ``results.json`` is tagged ``"schema": "lorp.prune"``.

    Output (when ``out_dir`` is given), written atomically: ``results.json``,
    ``similarity.npy`` (float64 ``[N, N]``) and, with ``save_model``, ``model/``
    (the pruned model and tokenizer, loadable by ``from_pretrained``; with residual-stream maps, by
    :func:`lorp.load_healed` only, :mod:`lorp.heal.saved`). On error
    nothing is left behind and an existing ``out_dir`` is untouched.

    With ``gguf_path`` (a bundled model only, a foldable healer), the pruned (and healed) model is also written as
    that GGUF file (:func:`lorp.run.gguf.export_run_gguf`; healed tensors in ``gguf_type``), before the run folder;
    checked before the model loads. ``results["gguf"]`` then names the file and the type.

    Raises:
        ConfigError, UnknownNameError, ResourceUnavailableError: bad settings
            or missing resources, raised before any heavy computation where possible.
    """
    registry = registry or load_registry()
    if gguf_path is not None:
        if not registry.healer(config.heal).foldable:
            raise ConfigError(f"healer {config.heal!r} repairs with residual-stream maps, which fold into no weight, "
                              "so a GGUF file cannot hold them; heal with a foldable healer (e.g. linear) for --gguf")
        gguf_path = check_gguf_export(config.model, gguf_path, gguf_type)
    out_dir, registry, strategy, worker = _checked_worker(config, out_dir, registry)
    settings = EvalSettings(corpora=tuple(config.eval_corpora), seq_len=config.eval_seq_len, tokens=config.eval_tokens,
                            batch_size=config.batch_size, zero_shot_tasks=tuple(config.zero_shot_tasks),
                            zero_shot_limit=config.zero_shot_limit, zero_shot_seed=config.seed)
    spec = CellSpec(config.allocation, config.budget, config.seed, settings)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    loaded = worker.load()
    model, tokenizer = loaded.model, loaded.tokenizer
    timings["load_model_s"] = loaded.load_seconds
    num_blocks = len(find_blocks(model, registry)[1])
    check_budget(config.budget, num_blocks, normalize_protected(config.protected, num_blocks))  # before the heavy work

    t = time.perf_counter()
    ctx = worker.context()
    timings["calibration_s"] = time.perf_counter() - t
    calib_meta = {k: v for k, v in ctx.calibration.items() if k not in ("seconds_this_run", "corpus", "source")}

    chosen = worker.select_one(spec)
    selection = chosen.selection
    timings["selection_s"] = chosen.seconds
    if chosen.nll_passes is not None:
        calib_meta["nll_forward_passes"] = chosen.nll_passes["full"]
        calib_meta["nll_partial_passes"] = chosen.nll_passes["partial"]

    dense, _, _ = worker.dense((), settings if settings.zero_shot_tasks else None,
                               [min(selection.pruned)] if selection.pruned else [])
    timings["evaluation_dense_s"] = dense.seconds
    after = worker.evaluate(selection.pruned, settings)
    timings["evaluation_pruned_s"] = after.seconds
    healed = None
    if config.heal != "none":  # the last step on the dense model: its prefix states no longer hold after it
        healed = heal_run(worker, config, selection.pruned, settings)
        timings["heal_fit_s"], timings["evaluation_healed_s"] = healed.fit.seconds, healed.evaluation_seconds
    remove_blocks(model, selection.pruned, registry)
    timings["total_s"] = time.perf_counter() - start
    results = _prune_record(config, loaded, ctx, calib_meta, selection, (dense, after), _count_parameters(model),
                            timings, registry, strategy, healed)
    run = RunResult(results, out_dir, ctx.similarity, model, tokenizer)
    if gguf_path is not None:
        export_run_gguf(results, healed.fit.weights if healed is not None else {}, gguf_path, gguf_type)
        results["gguf"] = {"path": str(gguf_path), "healed_type": gguf_type}
    try:
        if out_dir is not None:
            with staged_dir(out_dir) as stage:
                save_run(run, stage, save_model=config.save_model)
            run.out_dir = out_dir
    except BaseException:
        if gguf_path is not None:
            gguf_path.unlink(missing_ok=True)  # the run failed: no GGUF without its run folder
        raise
    return run


def _checked_worker(config: PruneConfig, out_dir: str | Path | None, registry: Registry | None
                    ) -> tuple[Path | None, Registry, AllocationStrategy, CellWorker]:
    """Every check that can fail before the model loads, in order; the output folder, registry, strategy, worker.

    Raises:
        ConfigError, UnknownNameError, ResourceUnavailableError: as :func:`run_prune`.
    """
    config.validate()
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        check_output_folder(out_dir)
    resolve_model(config.model)  # fail fast on a bad model argument
    check_cache_writable()
    config.check_against_model()
    registry = registry or load_registry()
    block_metric(registry, config.similarity)
    check_heal(registry, config.heal, config.heal_settings)
    strategy = registry.allocation(config.allocation)
    if strategy.needs_model:
        config.check_sleb_samples(f"method {config.allocation}")
    worker = CellWorker(config, (config.allocation,), reuse_states=False, registry=registry)
    worker.check()
    return out_dir, registry, strategy, worker


def _prune_record(config: PruneConfig, loaded: Any, ctx: Any, calib_meta: dict[str, Any], selection: Any,
                  evaluations: tuple[Any, Any], params_after: int, timings: dict[str, float], registry: Registry,
                  strategy: AllocationStrategy, healed: HealedRun | None = None) -> dict[str, Any]:
    """``results.json`` of ``lorp prune`` (``"schema": "lorp.prune"``): settings, S, the selection, before/after.

    ``"after"`` (perplexity, zero-shot) describes the saved model: the healed one when a healer ran, whose
    ``"healing"`` entry then holds the unhealed and healed numbers side by side
    (:func:`lorp.run.healing.healing_record`); ``"healing"`` is ``None`` without a healer.
    """
    dense, after = evaluations
    final = healed if healed is not None else after
    params_before = ctx.parameters
    ppl_before = {c: asdict(v) for c, v in dense.perplexity.items()}
    ppl_after = {c: asdict(v) for c, v in final.perplexity.items()}
    acc_before = asdict(dense.zero_shot) if dense.zero_shot is not None else None
    acc_after = asdict(final.zero_shot) if final.zero_shot is not None else None

    used = {"similarity": registry.provenance("similarity", config.similarity),
            "allocation": registry.provenance("allocation", config.allocation)}
    if strategy.uses_clusters:
        used["clustering"] = registry.provenance("clustering", config.clustering)
    if healed is not None:
        used["healer"] = registry.provenance("healer", config.heal)
    return {
        "schema": PRUNE_SCHEMA, "version": 1,
        "model": {"spec": config.model, "name": loaded.name, "source": loaded.source.kind, **loaded.info},
        "config": {**asdict(config), "eval_corpora": list(config.eval_corpora), "protected": list(config.protected),
                   "heal_settings": dict(config.heal_settings)},
        "calibration": {"corpus": config.calibration, "source": ctx.calibration["source"], "num_samples": config.num_samples,
                        "seq_len": config.seq_len, "seed": config.seed, **calib_meta},
        "num_blocks": selection.num_blocks,
        "similarity_metric": config.similarity,
        "similarity": ctx.similarity,
        "rls": selection.rls,
        "k": selection.k,
        "k_source": selection.k_source,
        "labels": selection.labels,
        "budget": config.budget,
        "pruned": selection.pruned,
        "kept": selection.kept,
        "protected": selection.protected,
        "removals": [asdict(r) for r in selection.removals],
        "parameters": {"before": params_before, "after": params_after, "removed_fraction": 1 - params_after / params_before},
        "perplexity": {"before": ppl_before, "after": ppl_after,
                       "eval_seq_len": config.eval_seq_len, "eval_tokens_limit": config.eval_tokens,
                       "sources": dict(ctx.eval_sources)},
        "zero_shot": {"before": acc_before, "after": acc_after} if config.zero_shot_tasks else None,
        "healing": healing_record(healed, after, used["healer"]) if healed is not None else None,
        "timings": timings,
        "plugins": used,
        "plugins_loaded": [asdict(p) for p in registry.plugins],
        "versions": package_versions(),
        "git_commit": git_commit(),
        "machine": machine(),
    }


def run_summary(r: dict[str, Any], allocation: str) -> str:
    """The lines ``lorp prune`` prints for a run's ``results.json`` ``r``: RLS and K, the removed blocks, perplexity
    before and after, the healer's unhealed and healed perplexity, and zero-shot accuracy when measured."""
    k = r["k"] if r["k"] is not None else f"- ({allocation} does not cluster)"
    lines = [f"RLS = {r['rls']:.4f}, K = {k}, pruned blocks: {r['pruned']}"]
    for name, before in r["perplexity"]["before"].items():
        after = r["perplexity"]["after"][name]
        lines.append(f"perplexity {name}: {before['perplexity']:.2f} -> {after['perplexity']:.2f} ({before['tokens']} tokens)")
    if r.get("healing"):
        h = r["healing"]
        lines.append(f"healer {h['healer']} (fitted in {h['fit_seconds']:.1f} s): perplexity unhealed -> healed " + ", ".join(
            f"{c} {h['perplexity']['unhealed'][c]['perplexity']:.2f} -> {v['perplexity']:.2f}"
            for c, v in h["perplexity"]["healed"].items()))
    if r.get("zero_shot"):
        zb, za = r["zero_shot"]["before"], r["zero_shot"]["after"]
        for task, v in zb["tasks"].items():
            lines.append(f"zero-shot {task} ({v['metric']}, {v['items']} items, {v['split']}): "
                         f"{v['score']:.3f} -> {za['tasks'][task]['score']:.3f}")
        lines.append(f"zero-shot average: {zb['average']:.3f} -> {za['average']:.3f}")
    return "\n".join(lines)


def save_run(run: RunResult, folder: str | Path, *, save_model: bool = True) -> Path:
    """Write a run's outputs into ``folder`` (created if needed).

    Files: ``similarity.npy`` (float64 ``[N, N]``), ``model/`` (pruned model and
    tokenizer, when ``save_model``; :func:`lorp.heal.saved.save_healed`) and ``results.json``, written last and
    atomically so that its presence marks a complete output;
    ``results["model_dir"]`` is relative to ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "similarity.npy", run.similarity)
    if save_model:
        save_healed(run.model, folder / "model")  # residual-stream maps beside the weights (lorp.load_healed)
        run.tokenizer.save_pretrained(folder / "model")
        for f in (folder / "model").iterdir():
            f.chmod(0o644)  # safetensors writes 0600 through a temporary file
        run.results["model_dir"] = "model"
    write_json(folder / "results.json", run.results)
    run.out_dir = folder
    return folder
