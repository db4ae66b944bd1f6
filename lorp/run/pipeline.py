"""The main job: calibrate, select, prune, evaluate, and write the results atomically."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .allocation import check_budget, check_seed, normalize_protected
from .atomic import check_output_location, staged_dir, write_json
from .blocks import find_blocks
from .cache import cache_key, check_cache_writable, content_id, load_matrices, notice, save_matrices
from .capture import capture_similarities
from .data import calibration_samples
from .errors import ConfigError, UnknownNameError
from .components import Corpus, SimilarityMetric
from .evaluation import CalibrationNLL
from .models import DEFAULT_MODEL, LoadedModel, resolve_model
from .plugins import Registry, load_registry
from .provenance import git_commit, machine, package_versions
from .pruning import remove_blocks
from .records import PRUNE_SCHEMA
from .selection import DEFAULT_PROTECTED
from .zeroshot import NOT_AVAILABLE_OFFLINE
from .zeroshot import TASKS as ZERO_SHOT_TASKS


@dataclass(frozen=True)
class PruneConfig:
    """Parameters of one LoRP run (defaults sized for 2 CPU cores, a few minutes).

    The paper's protocol is 128 calibration sequences of 2048 tokens of C4
    (``calibration="c4", num_samples=128, seq_len=2048``) and full evaluation sets
    (``eval_tokens=None``).

    Attributes:
        model: bundled key, local folder or hub id.
        budget: blocks to remove.
        calibration: calibration corpus name or text file.
        num_samples: calibration sequences.
        seq_len: tokens per calibration sequence.
        seed: seed of calibration sampling and clustering.
        eval_corpora: corpora for perplexity (their evaluation parts).
        eval_seq_len: tokens per perplexity window.
        eval_tokens: token limit per evaluation corpus (``None``: all).
        similarity, clustering, allocation: plugin component names.
        k: override the number of clusters (``None``: from RLS, eq. 6).
        protected: blocks never removed (negative counts from the end).
        save_model: write the pruned model folder.
        device: torch device.
        batch_size: sequences per forward call.
        use_cache: reuse a cached calibration pass with identical settings.
        progress: show progress bars.
        sleb_samples: calibration sequences SLEB scores each candidate removal on.
        sleb_tokens: tokens scored per SLEB sequence, the last ones (0: every token); the whole
            sequence is still run as context. Fewer scored tokens skip most of the LM head.
        zero_shot_tasks: lm-eval tasks for zero-shot accuracy before and after
            pruning (empty: none; see :mod:`lorp.zeroshot`).
        zero_shot_limit: items per zero-shot task, drawn with ``seed`` (``None``: all).
    """

    model: str = DEFAULT_MODEL
    budget: int = 6
    calibration: str = "lambada"
    num_samples: int = 32
    seq_len: int = 256
    seed: int = 0
    eval_corpora: tuple[str, ...] = ("ptb", "wiki-paragraphs")
    eval_seq_len: int = 256
    eval_tokens: int | None = 4096
    similarity: str = "cosine"
    clustering: str = "spectral"
    allocation: str = "lorp"
    k: int | None = None
    protected: tuple[int, ...] = DEFAULT_PROTECTED
    save_model: bool = True
    device: str = "cpu"
    batch_size: int = 1
    use_cache: bool = True
    progress: bool = True
    sleb_samples: int = 4
    sleb_tokens: int = 0
    zero_shot_tasks: tuple[str, ...] = ()
    zero_shot_limit: int | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values that cannot work, before any heavy work."""
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"budget must be a whole number of blocks >= 1, got {self.budget!r}")
        if self.k is not None and (not isinstance(self.k, int) or self.k < 2):
            raise ConfigError(f"K must be a whole number >= 2 (omit --k to choose it from RLS), got {self.k!r}")
        for name in ("num_samples", "seq_len", "eval_seq_len", "batch_size", "sleb_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        check_seed(self.seed)
        for name in ("model", "calibration", "similarity", "clustering", "allocation", "device"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name} must be a non-empty name, got {getattr(self, name)!r}")
        if isinstance(self.sleb_tokens, bool) or not isinstance(self.sleb_tokens, int) or not \
                0 <= self.sleb_tokens < self.seq_len:
            raise ConfigError(f"sleb_tokens must be a whole number of tokens in 0..seq_len-1 ({self.seq_len - 1}; "
                              f"0 scores every token), got {self.sleb_tokens!r}")
        if self.sleb_samples > self.num_samples:
            raise ConfigError(f"sleb_samples ({self.sleb_samples}) cannot exceed the {self.num_samples} calibration "
                              "samples it is drawn from; lower --sleb-samples or raise --samples")
        if self.eval_tokens is not None and (isinstance(self.eval_tokens, bool) or not isinstance(self.eval_tokens, int)
                                             or self.eval_tokens < 0):
            raise ConfigError(f"eval_tokens must be a whole number of tokens >= 0 (0 or None: all), "
                              f"got {self.eval_tokens!r}")
        try:
            protected = tuple(int(b) for b in self.protected)
        except (TypeError, ValueError):
            raise ConfigError(f"protected must be whole block indices, got {self.protected!r}") from None
        if any(isinstance(b, bool) for b in self.protected) or protected != tuple(self.protected):
            raise ConfigError(f"protected must be whole block indices, got {self.protected!r}")
        if not self.eval_corpora:
            raise ConfigError("give at least one evaluation corpus")
        if self.seq_len < 2 or self.eval_seq_len < 2:
            raise ConfigError(f"sequence lengths must be at least 2 tokens, got seq_len {self.seq_len}, "
                              f"eval_seq_len {self.eval_seq_len}")
        if self.eval_tokens and self.eval_tokens < self.eval_seq_len:
            raise ConfigError(f"the evaluation token limit ({self.eval_tokens}) must hold at least one window of "
                              f"{self.eval_seq_len} tokens; raise --eval-tokens (0 evaluates everything)")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"unknown device {self.device!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but this torch build sees no CUDA GPU; use the CPU "
                              "(--device cpu; in lorp study -p device=cpu)")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {self.device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) "
                              f"visible (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but Apple MPS is not available here; use --device cpu")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"device {self.device!r} is not supported; use cpu, cuda, cuda:N or mps")
        for task in self.zero_shot_tasks:
            if task not in ZERO_SHOT_TASKS:
                raise UnknownNameError("zero-shot task", task, ZERO_SHOT_TASKS, hint=NOT_AVAILABLE_OFFLINE.get(task, ""))
        if self.zero_shot_tasks and self.zero_shot_limit is not None and self.zero_shot_limit < 1:
            raise ConfigError(f"zero-shot item limit must be >= 1, got {self.zero_shot_limit}")


    def check_against_model(self, budgets: tuple[int, ...] | None = None) -> int | None:
        """Check the settings that depend on the model (budget, protected blocks, K, window lengths) before loading it.

        The block count comes from the bundled table or the folder's config.json;
        for a hub model it is known only after loading (checked again then).

        Args:
            budgets: the budgets to check (default: ``(self.budget,)``).
        Returns:
            the model's block count, or ``None`` if not known yet.
        Raises:
            ConfigError: a budget leaves no block or exceeds the removable blocks, a
                protected index or K is out of range, or a window is longer than
                the model's positions.
        """
        from .models import model_config, num_blocks_of

        n = num_blocks_of(self.model)
        if n is not None:
            protected = normalize_protected(self.protected, n)
            for budget in budgets or (self.budget,):
                check_budget(budget, n, protected)
            if self.k is not None and self.k > n:
                raise ConfigError(f"K = {self.k} exceeds the {n} blocks of {self.model}; choose K between 2 and {n}")
        config = model_config(self.model)
        if config is not None:
            config = getattr(config, "text_config", None) or config
            limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
            for name in ("seq_len", "eval_seq_len"):
                if isinstance(limit, int) and getattr(self, name) > limit:
                    raise ConfigError(f"{name} {getattr(self, name)} is longer than the {limit} positions "
                                      f"{self.model} was built for; choose at most {limit}")
        return n


@dataclass
class RunResult:
    """What :func:`run_prune` returns: the results dict and where it was written."""

    results: dict[str, Any]
    out_dir: Path | None
    similarity: np.ndarray
    model: Any = field(repr=False, default=None)
    tokenizer: Any = field(repr=False, default=None)


def _count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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


def block_metric(registry: Registry, name: str) -> SimilarityMetric:
    """The similarity metric ``name``, checked to compare block inputs (``[N, N]``), as LoRP's S must.

    Raises:
        UnknownNameError: no such metric.
        ConfigError: the metric compares the ``N + 1`` residual-stream states.
    """
    metric = registry.similarity(name)
    if metric.states != "blocks":
        blocks = sorted(n for n, e in registry.components["similarity"].items() if e.component.states == "blocks")
        raise ConfigError(f"similarity metric {name!r} compares the N + 1 residual-stream states, not the N block "
                          f"inputs; for --similarity choose one of: {', '.join(blocks)}")
    return metric


def calibrate(loaded: LoadedModel, corpus: Corpus, config: PruneConfig, metrics: Mapping[str, SimilarityMetric],
              registry: Registry) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One calibration pass for every metric not already cached; returns ``(matrices, meta)``.

    Each metric's matrix is cached on disk under a key of the model (bundled key
    and checkpoint hash, or a local folder's content digest), the calibration
    corpus (a text file's content digest), sample count and length, seed and the
    metric's name and version (:mod:`lorp.cache`). Metrics found in the cache are not
    recomputed; the rest share a single forward pass over the calibration set.
    ``meta`` reports tokens, forward passes run (0 when all were cached) and time.
    """
    base = {  # a local model folder or text file enters by its content, not its path
        "model": content_id(config.model, "model"),
        "model_info": {k: loaded.info.get(k) for k in ("model_type", "num_parameters", "gguf_sha256", "dtype")},
        "corpus": content_id(config.calibration, "corpus", registry), "num_samples": config.num_samples,
        "seq_len": config.seq_len, "seed": config.seed,
    }
    keys = {name: cache_key({**base, "metric": name, "metric_version": m.version}) for name, m in metrics.items()}
    matrices: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    if config.use_cache:
        n = len(find_blocks(loaded.model, registry)[1])
        for name, key in keys.items():
            hit = load_matrices(key)
            size = n if metrics[name].states == "blocks" else n + 1
            if hit is not None and (name not in hit[0] or hit[0][name].shape != (size, size)):
                notice(f"cached similarity {key} does not fit this {n}-block model; recomputing it")
                hit = None
            if hit is not None:
                matrices[name], meta = hit[0][name], hit[1]
    missing = {name: m for name, m in metrics.items() if name not in matrices}
    if missing:
        samples = calibration_samples(loaded.tokenizer, corpus, config.num_samples, config.seq_len, config.seed)
        calib = capture_similarities(loaded.model, samples, missing, batch_size=config.batch_size,
                                     progress=config.progress, registry=registry)
        meta = {"num_sequences": calib.num_sequences, "num_tokens": calib.num_tokens, "seconds": calib.seconds}
        for name in missing:
            matrices[name] = calib.matrices[name]
            save_matrices(keys[name], {name: calib.matrices[name]}, meta)
        meta["forward_passes"] = calib.forward_passes
    else:
        meta = {**meta, "forward_passes": 0}
    return matrices, {**meta, "from_cache": sorted(set(metrics) - set(missing)), "cache_keys": keys}


def calibration_nll(loaded: LoadedModel, corpus: Corpus, config: PruneConfig, registry: Registry) -> CalibrationNLL:
    """Calibration NLL scorer for SLEB-style strategies: the first ``config.sleb_samples`` calibration sequences,
    scoring their last ``config.sleb_tokens`` tokens (0: all)."""
    samples = calibration_samples(loaded.tokenizer, corpus, config.num_samples, config.seq_len, config.seed)
    return CalibrationNLL(loaded.model, samples[: config.sleb_samples], registry=registry,
                          scored_tokens=config.sleb_tokens or None)


def run_prune(config: PruneConfig, out_dir: str | Path | None = None, registry: Registry | None = None) -> RunResult:
    """Run LoRP end to end on a real model and (optionally) write the outputs.

    One cell (:class:`lorp.cells.CellWorker`, the same code a sweep runs) plus
    saving the pruned model. Steps: load model -> calibration pass (similarity S,
    eqs. 3-4, cached on disk) -> RLS and K (eqs. 5-6) -> clusters (eq. 7) ->
    allocation (eqs. 8-11) -> perplexity of the dense model -> remove blocks ->
    perplexity of the pruned model. ``results.json`` is tagged
    ``"schema": "lorp.prune"``.

    Output (when ``out_dir`` is given), written atomically: ``results.json``,
    ``similarity.npy`` (float64 ``[N, N]``) and, with ``save_model``, ``model/``
    (the pruned model and tokenizer, loadable by ``from_pretrained``). On error
    nothing is left behind and an existing ``out_dir`` is untouched.

    Raises:
        ConfigError, UnknownNameError, ResourceUnavailableError: bad settings
            or missing resources, raised before any heavy computation where possible.
    """
    from .cells import CellWorker
    from .records import CellSpec, EvalSettings

    config.validate()
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        check_output_folder(out_dir)
    resolve_model(config.model)  # fail fast on a bad model argument
    check_cache_writable()
    config.check_against_model()
    registry = registry or load_registry()
    block_metric(registry, config.similarity)
    strategy = registry.allocation(config.allocation)
    worker = CellWorker(config, (config.allocation,), reuse_states=False, registry=registry)
    worker.check()
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
    params_before = ctx.parameters
    calib_meta = {k: v for k, v in ctx.calibration.items() if k not in ("seconds_this_run", "corpus", "source")}
    s = ctx.similarity

    chosen = worker.select_one(spec)
    selection = chosen.selection
    timings["selection_s"] = chosen.seconds
    if chosen.nll_passes is not None:
        calib_meta["nll_forward_passes"] = chosen.nll_passes["full"]
        calib_meta["nll_partial_passes"] = chosen.nll_passes["partial"]

    dense, _, _ = worker.dense((), settings if settings.zero_shot_tasks else None)
    timings["evaluation_dense_s"] = dense.seconds
    after = worker.evaluate(selection.pruned, settings)
    timings["evaluation_pruned_s"] = after.seconds
    remove_blocks(model, selection.pruned, registry)
    timings["total_s"] = time.perf_counter() - start
    params_after = _count_parameters(model)
    ppl_before = {c: asdict(v) for c, v in dense.perplexity.items()}
    ppl_after = {c: asdict(v) for c, v in after.perplexity.items()}
    acc_before = asdict(dense.zero_shot) if dense.zero_shot is not None else None
    acc_after = asdict(after.zero_shot) if after.zero_shot is not None else None

    used = {"similarity": registry.provenance("similarity", config.similarity),
            "allocation": registry.provenance("allocation", config.allocation)}
    if strategy.uses_clusters:
        used["clustering"] = registry.provenance("clustering", config.clustering)
    results: dict[str, Any] = {
        "schema": PRUNE_SCHEMA, "version": 1,
        "model": {"spec": config.model, "name": loaded.name, "source": loaded.source.kind, **loaded.info},
        "config": {**asdict(config), "eval_corpora": list(config.eval_corpora), "protected": list(config.protected)},
        "calibration": {"corpus": config.calibration, "source": ctx.calibration["source"], "num_samples": config.num_samples,
                        "seq_len": config.seq_len, "seed": config.seed, **calib_meta},
        "num_blocks": selection.num_blocks,
        "similarity_metric": config.similarity,
        "similarity": s,
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
        "timings": timings,
        "plugins": used,
        "plugins_loaded": [asdict(p) for p in registry.plugins],
        "versions": package_versions(),
        "git_commit": git_commit(),
        "machine": machine(),
    }
    run = RunResult(results, out_dir, s, model, tokenizer)
    if out_dir is not None:
        with staged_dir(out_dir) as stage:
            save_run(run, stage, save_model=config.save_model)
        run.out_dir = out_dir
    return run


def save_run(run: RunResult, folder: str | Path, *, save_model: bool = True) -> Path:
    """Write a run's outputs into ``folder`` (created if needed).

    Files: ``similarity.npy`` (float64 ``[N, N]``), ``model/`` (pruned model and
    tokenizer, when ``save_model``) and ``results.json``, written last and
    atomically so that its presence marks a complete output;
    ``results["model_dir"]`` is relative to ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "similarity.npy", run.similarity)
    if save_model:
        run.model.save_pretrained(folder / "model")
        run.tokenizer.save_pretrained(folder / "model")
        for f in (folder / "model").iterdir():
            f.chmod(0o644)  # safetensors writes 0600 through a temporary file
        run.results["model_dir"] = "model"
    write_json(folder / "results.json", run.results)
    run.out_dir = folder
    return folder
