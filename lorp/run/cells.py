"""Cells as the unit of work: the one orchestration behind ``run_prune`` and ``sweep``, on any executor.

A run is: plan cells (:class:`lorp.run.records.CellSpec`) -> on workers, select each
cell's blocks -> group the cells by (model, removed block set, evaluation settings)
and evaluate each group once -> write one :class:`lorp.run.records.CellResult` per cell
into the atomic cell store. :class:`CellWorker` does the heavy work on one machine
(it loads the model once and keeps the calibration matrices and the dense prefix
states); :func:`orchestrate` drives workers through an executor
(:class:`lorp.run.executors.SerialExecutor` in-process, or
:class:`lorp.run.executors.RayExecutor` on a Ray cluster).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..builtins.baselines import block_influence
from ..errors import ConfigError, LorpError, UnknownNameError
from ..evaluate.perplexity import Perplexity, SweepPerplexity, single_removal_nll
from ..evaluate.speed import decode_speed, flops_per_token
from ..evaluate.zeroshot import zero_shot
from ..method.selection import select_blocks
from ..model import models  # load_model is looked up at call time, so tests can stand in for it
from ..model.blocks import find_blocks
from ..model.data import evaluation_windows, load_corpus
from ..model.pruning import blocks_removed
from ..plugins.registry import load_registry
from ..store.atomic import write_json
from ..store.cache import cache_key, notice, read_checked_json, write_checked_json
from .pipeline import block_metric, calibrate, calibration_nll
from .progress import report as progress_report
from .records import (Attribution, CellFailure, CellResult, CellSpec, EvalSettings, Evaluation, RunContext, Speed,
                      ZeroShot)


class CellsFailedError(LorpError):
    """Some cells raised; the others landed. ``failures`` holds each failed cell's spec, error and traceback."""

    def __init__(self, failures: Sequence[CellFailure]):
        self.failures = list(failures)
        names = ", ".join(f"{f.spec.name} ({f.stage}: {f.error})" for f in self.failures[:3])
        more = f" and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        super().__init__(f"{len(self.failures)} cell(s) failed: {names}{more}; the other cells landed "
                         "(tracebacks in failures.json); rerun to retry the failed cells")


def _failure(spec: CellSpec, stage: str, exc: BaseException) -> CellFailure:
    return CellFailure(spec, stage, f"{type(exc).__name__}: {exc}",
                       "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


@dataclass(frozen=True)
class Selected:
    """A cell's selection as a worker returns it.

    Attributes:
        spec: the cell.
        selection: :class:`lorp.method.selection.Selection`.
        seconds: selection wall time.
        nll_passes: ``{"full", "partial"}`` forwards of a model-scoring strategy, else ``None``.
        plugin: provenance of the strategy's plugin.
    """

    spec: CellSpec
    selection: Any
    seconds: float
    nll_passes: dict[str, int] | None
    plugin: dict[str, Any]


def evaluation_key(model: Mapping[str, Any], removed: Iterable[int], settings: EvalSettings) -> str:
    """Key of an evaluation: the model's identity, the sorted removed blocks and the evaluation settings."""
    ident = {k: model.get(k) for k in ("spec", "model_type", "num_parameters", "gguf_sha256", "dtype")}
    return cache_key({"evaluation": 1, "model": ident, "removed": sorted(int(b) for b in removed),
                      "settings": settings.to_json()})


class CellWorker:
    """Loads the model once and selects and evaluates cells on it; what a Ray actor wraps.

    Every method loads what it needs lazily (model, corpora, calibration pass, dense
    prefix states), so a restarted worker answers any call. Calibration matrices
    come from the on-disk cache when present (:func:`lorp.run.pipeline.calibrate`).

    Args:
        base: the shared settings (:class:`lorp.run.pipeline.PruneConfig`; ``budget``
            and ``allocation`` are ignored).
        methods: allocation strategies this worker may be asked for (their
            statistics are captured in the one calibration pass).
        reuse_states: restart pruned perplexity from the dense hidden states
            (:class:`lorp.evaluate.perplexity.SweepPerplexity`).
        registry: plugin registry (default: from the ``LORP_*`` environment).
    Raises:
        ConfigError: a component the run needs is not registered here (the
            message names it), raised by :meth:`check`.
    """

    def __init__(self, base: Any, methods: Sequence[str], *, reuse_states: bool = True, registry: Any = None):
        self.base, self.methods, self.reuse_states = base, tuple(methods), reuse_states
        self._registry = registry
        self._loaded = self._ctx = self._matrices = self._windows = self._calib_corpus = None
        self._scorer = None
        self._scorer_firsts: tuple[int, ...] | None = None
        self._nll = None
        self._seed_runs: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._seed_nll: dict[tuple[int, int], Any] = {}
        self.load_seconds = 0.0

    # -- loading -------------------------------------------------------------------------------------------------
    @property
    def registry(self):
        if self._registry is None:
            self._registry = load_registry()
        return self._registry

    def check(self, where: str = "") -> None:
        """Raise :class:`ConfigError` naming the first component the run needs that is not registered here.

        Checked: the similarity metric, every allocation strategy and the similarity
        metrics they need, the clustering algorithm (when a strategy clusters) and the
        corpora (registered names; file paths must exist here).
        """
        here = f" on {where}" if where else ""
        try:
            block_metric(self.registry, self.base.similarity)
            for m in self.methods:
                strategy = self.registry.allocation(m)
                for n in strategy.needs:
                    self.registry.similarity(n)
                if strategy.uses_clusters:
                    self.registry.clustering(self.base.clustering)
            for name in (self.base.calibration, *self.base.eval_corpora):
                if name in self.registry.components.get("corpus", {}):
                    continue
                if not Path(name).is_file():
                    load_corpus(name, self.registry)
        except UnknownNameError as exc:
            if not where:
                raise
            raise ConfigError(f"{exc}{here} (plugins there: {', '.join(p.name for p in self.registry.plugins)}; "
                              "install the plugin on every node or share its folder through LORP_PLUGINS_DIR)") from None

    def load(self):
        """The loaded model (:class:`lorp.model.models.LoadedModel`), loaded on first use."""
        if self._loaded is None:
            t = time.perf_counter()
            self._loaded = models.load_model(self.base.model, device=self.base.device)
            self.load_seconds = time.perf_counter() - t
        return self._loaded

    def context(self) -> RunContext:
        """Load the model and corpora, run (or fetch) the one calibration pass; the shared :class:`RunContext`."""
        if self._ctx is not None:
            return self._ctx

        base, registry = self.base, self.registry
        loaded = self.load()
        self._calib_corpus = load_corpus(base.calibration, registry)
        eval_corpora = {name: load_corpus(name, registry) for name in base.eval_corpora}
        _, blocks = find_blocks(loaded.model, registry)
        needed = {base.similarity: block_metric(registry, base.similarity)}
        for m in self.methods:
            needed.update({n: registry.similarity(n) for n in registry.allocation(m).needs})
        t = time.perf_counter()
        progress_report(stage="calibration", message=f"calibration pass ({base.num_samples} x {base.seq_len} tokens "
                                                     f"of {base.calibration}; a cached pass is reused)")
        self._matrices, meta = calibrate(loaded, self._calib_corpus, base, needed, registry)
        self._needed = needed
        self._windows = {n: evaluation_windows(loaded.tokenizer, c, base.eval_seq_len, base.eval_tokens)
                         for n, c in eval_corpora.items()}
        self._ctx = RunContext(
            model={"spec": base.model, "name": loaded.name, "source": loaded.source.kind, **loaded.info,
                   "num_blocks": len(blocks), "load_seconds": self.load_seconds},
            num_blocks=len(blocks), parameters=sum(p.numel() for p in loaded.model.parameters()),
            block_parameters=[sum(p.numel() for p in blk.parameters()) for blk in blocks],
            calibration={**meta, "seconds_this_run": time.perf_counter() - t, "corpus": base.calibration,
                         "source": self._calib_corpus.source, "seed": base.seed},
            similarity_metric=base.similarity, similarity=self._matrices[base.similarity],
            eval_sources={n: c.source for n, c in eval_corpora.items()},
            eval_windows={n: list(w.shape) for n, w in self._windows.items()})
        return self._ctx

    @property
    def matrices(self) -> dict[str, Any]:
        """Every calibration statistic by metric name (float64 matrices)."""
        self.context()
        return self._matrices

    def matrices_for(self, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(matrices, calibration meta)`` of the calibration draw ``seed`` (a full run seed).

        ``base.seed`` gives :attr:`matrices` and :meth:`context`'s calibration record;
        another seed draws its own ``num_samples`` × ``seq_len`` calibration sequences
        (:func:`lorp.model.data.calibration_samples` with that seed) and runs (or fetches from
        the on-disk cache, which keys by seed) one more calibration pass for the same
        metrics. Matrices are float64 ``[N, N]`` (``[N + 1, N + 1]`` for residual-stream
        metrics); meta as in :attr:`lorp.run.records.RunContext.calibration` plus ``seed``
        and ``seconds_this_run``.
        """
        ctx = self.context()
        seed = int(seed)
        if seed == self.base.seed:
            return self._matrices, ctx.calibration
        if seed not in self._seed_runs:
            from dataclasses import replace

            t = time.perf_counter()
            progress_report(stage="calibration", message=f"calibration pass of seed {seed} "
                                                         f"({self.base.num_samples} x {self.base.seq_len} tokens)")
            matrices, meta = calibrate(self.load(), self._calib_corpus, replace(self.base, seed=seed), self._needed,
                                       self.registry)
            self._seed_runs[seed] = (matrices, {**meta, "seconds_this_run": time.perf_counter() - t,
                                                "corpus": self.base.calibration,
                                                "source": self._calib_corpus.source, "seed": seed})
        return self._seed_runs[seed]

    def seed_calibration(self, seeds: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per seed: ``{"similarity": S (float64 [N, N] of the block inputs), "calibration": meta}``
        (:meth:`matrices_for`); what a sweep record keeps for each extra seed."""
        out = {}
        for seed in seeds:
            matrices, meta = self.matrices_for(seed)
            out[int(seed)] = {"similarity": matrices[self.base.similarity], "calibration": meta}
        return out

    def nll_for(self, seed: int, samples: int | None = None):
        """:class:`lorp.evaluate.perplexity.CalibrationNLL` of SLEB-style strategies on the calibration draw ``seed``
        (its first ``samples`` sequences, default ``base.sleb_samples``, at most ``base.num_samples``; their
        last ``base.sleb_tokens`` tokens scored), built once per (seed, samples)."""
        from dataclasses import replace

        self.context()
        seed, samples = int(seed), min(int(samples or self.base.sleb_samples), self.base.num_samples)
        if seed == self.base.seed and samples == self.base.sleb_samples:
            if self._nll is None:
                self._nll = calibration_nll(self.load(), self._calib_corpus, self.base, self.registry)
            return self._nll
        if (seed, samples) not in self._seed_nll:
            self._seed_nll[(seed, samples)] = calibration_nll(
                self.load(), self._calib_corpus, replace(self.base, seed=seed, sleb_samples=samples), self.registry)
        return self._seed_nll[(seed, samples)]

    @property
    def windows(self) -> dict[str, Any]:
        """Evaluation windows, int64 ``[W, T]`` per corpus."""
        self.context()
        return self._windows

    # -- selection -----------------------------------------------------------------------------------------------
    def select_one(self, spec: CellSpec) -> Selected:
        """Choose ``spec.budget`` blocks with ``spec.method``; raises what the strategy raises.

        ``spec.seed`` is a full run seed: the calibration draw (S, the statistics and
        SLEB's scoring sequences, :meth:`matrices_for`, :meth:`nll_for`) and the
        selection's randomness (clustering, random baselines).
        """
        base, registry = self.base, self.registry
        strategy = registry.allocation(spec.method)
        matrices, _ = self.matrices_for(spec.seed)
        nll = self.nll_for(spec.seed, strategy.nll_samples) if strategy.needs_model else None
        t = time.perf_counter()
        selection = select_blocks(matrices[base.similarity], spec.budget, k=base.k, seed=spec.seed,
                                  clustering=base.clustering, allocation=spec.method, protected=base.protected,
                                  statistics=matrices, nll=nll, registry=registry)
        passes = {"full": nll.forward_passes, "partial": nll.partial_passes} if nll is not None else None
        return Selected(spec, selection, time.perf_counter() - t, passes, registry.provenance("allocation", spec.method))

    def select(self, specs: Sequence[CellSpec]) -> list[Selected | CellFailure]:
        """:meth:`select_one` for each spec; a spec that raises becomes a :class:`CellFailure` (the rest go on)."""
        out: list[Selected | CellFailure] = []
        for spec in specs:
            try:
                out.append(self.select_one(spec))
            except Exception as exc:  # noqa: BLE001 - reported per cell with its traceback
                out.append(_failure(spec, "selection", exc))
        return out

    # -- attribution ---------------------------------------------------------------------------------------------
    def attribution(self) -> Attribution:
        """The single-block removal profile: calibration NLL with only block ``b`` removed, for every block.

        Scored by the worker's SLEB scorer (:func:`lorp.run.pipeline.calibration_nll`: the
        first ``sleb_samples`` calibration sequences, their last ``sleb_tokens`` tokens;
        SLEB, Song et al., ICML 2024), built here if no SLEB cell ran on this worker. Its
        memo already holds every set SLEB's first greedy step scored (each unprotected
        block), so after SLEB only the other blocks cost passes; without SLEB it costs
        one partial pass per block from the dense states entering it (a full pass for the
        last block) and no extra pass for the dense NLL (:func:`lorp.evaluate.perplexity.single_removal_nll`).
        Run it after the selections. Also carries ShortGPT's Block Influence per block
        (:func:`lorp.builtins.baselines.block_influence`) when the calibration pass
        captured ``stream-cosine``.

        Returns:
            :class:`lorp.run.records.Attribution`: ``nll`` ``{block: nats per token}`` for blocks
            ``0..N-1``, ``dense_nll``, and which text (corpus, sequences × tokens, tokens scored).
        Raises:
            what loading the model or the forward passes raise.
        """
        ctx, base = self.context(), self.base
        shared = self._nll is not None
        if self._nll is None:
            self._nll = calibration_nll(self.load(), self._calib_corpus, base, self.registry)
        nll = self._nll
        t, full, partial = time.perf_counter(), nll.forward_passes, nll.partial_passes
        progress_report(stage="attribution", message=f"single-block removal profile ({ctx.num_blocks} blocks"
                                                     + (", sharing SLEB's scored sets)" if shared else ")"))
        dense, profile = single_removal_nll(nll)
        sequences, seq_len = (int(d) for d in nll.ids.shape)
        stream = (self._matrices or {}).get("stream-cosine")
        return Attribution(
            dense_nll=float(dense), nll={int(b): float(v) for b, v in profile.items()}, corpus=base.calibration,
            sequences=sequences, seq_len=seq_len, scored_tokens=(nll.keep or seq_len) - 1,
            source=self._calib_corpus.source, seed=base.seed,
            block_influence=None if stream is None else [float(v) for v in block_influence(stream)],
            passes={"full": nll.forward_passes - full, "partial": nll.partial_passes - partial}, shared=shared,
            seconds=time.perf_counter() - t)

    def try_attribution(self) -> Attribution | str:
        """:meth:`attribution`, or ``"<ExceptionType>: <message>"`` when it raises (the sweep goes on without it)."""
        try:
            return self.attribution()
        except Exception as exc:  # noqa: BLE001 - reported by the orchestration, never fatal to the cells
            return f"{type(exc).__name__}: {exc}"

    # -- evaluation ----------------------------------------------------------------------------------------------
    def _perplexity_scorer(self, firsts: Iterable[int]):
        firsts = tuple(sorted(set(firsts))) if self.reuse_states else ()
        if self._scorer is None or self._scorer_firsts != firsts:
            self._scorer = SweepPerplexity(self.load().model, self.windows, firsts, batch_size=self.base.batch_size,
                                           registry=self.registry, reuse=self.reuse_states)
            self._scorer_firsts = firsts
        return self._scorer

    def _details(self, settings: EvalSettings, stages: dict[str, float]) -> tuple[ZeroShot | None, Speed | None]:
        """Zero-shot accuracy and decode speed per ``settings``; their wall times go into ``stages``."""
        loaded = self.load()
        zs = speed = None
        if settings.zero_shot_tasks:
            t = time.perf_counter()
            zs = ZeroShot.from_dict(zero_shot(loaded.model, loaded.tokenizer, settings.zero_shot_tasks,
                                              limit=settings.zero_shot_limit, seed=settings.zero_shot_seed))
            stages["zero_shot"] = time.perf_counter() - t
        if settings.decode_tokens:
            t = time.perf_counter()
            prompt = next(iter(self.windows.values()))[:1, : min(32, settings.seq_len)]
            speed = Speed.from_dict({**decode_speed(loaded.model, prompt, new_tokens=settings.decode_tokens),
                                     "flops_per_token": flops_per_token(loaded.model, self.registry)})
            stages["speed"] = time.perf_counter() - t
        return zs, speed

    def dense(self, firsts: Iterable[int], settings: EvalSettings | None) -> tuple[Evaluation, dict[str, Any], int]:
        """The dense model's evaluation, the perplexity-reuse record and the dense FLOPs per token.

        The dense perplexity pass keeps the hidden states entering the blocks in
        ``firsts`` (first removed block of each cell). Zero-shot accuracy and speed
        are measured when ``settings`` asks for them.
        """
        t = time.perf_counter()
        progress_report(stage="dense", message="dense model: perplexity" + (
            ", zero-shot accuracy and decode speed" if settings is not None else ""))
        scorer = self._perplexity_scorer(firsts)
        stages = {"perplexity": time.perf_counter() - t}
        zs, speed = self._details(settings, stages) if settings is not None else (None, None)
        ctx = self.context()
        ev = Evaluation((), {c: Perplexity(**v) for c, v in scorer.dense.items()}, ctx.parameters, zs, speed,
                        time.perf_counter() - t, stages)
        return (ev, {"enabled": scorer.reuse, "stored_blocks": scorer.stored_blocks},
                flops_per_token(self.load().model, self.registry))

    def evaluate(self, removed: Sequence[int], settings: EvalSettings, firsts: Iterable[int] = ()) -> Evaluation:
        """Evaluate the model with ``removed`` deleted: perplexity per corpus, zero-shot and speed per ``settings``.

        Blocks are removed in place and restored (:func:`lorp.model.pruning.blocks_removed`);
        perplexity restarts from the dense states kept for ``firsts`` where it can.
        """
        t = time.perf_counter()
        ppl = {c: Perplexity(**v) for c, v in self._perplexity_scorer(firsts)(removed).items()}
        stages = {"perplexity": time.perf_counter() - t}
        zs = speed = None
        if settings.detailed:
            with blocks_removed(self.load().model, list(removed), self.registry):
                zs, speed = self._details(settings, stages)
        return Evaluation(tuple(sorted(removed)), ppl, self.context().parameters_without(removed), zs, speed,
                          time.perf_counter() - t, stages)

    def try_evaluate(self, removed: Sequence[int], settings: EvalSettings, firsts: Iterable[int],
                     specs: Sequence[CellSpec]) -> Evaluation | list[CellFailure]:
        """:meth:`evaluate`, or a :class:`CellFailure` per spec sharing it when it raises."""
        try:
            return self.evaluate(removed, settings, firsts)
        except Exception as exc:  # noqa: BLE001 - reported per cell with its traceback
            return [_failure(s, "evaluation", exc) for s in specs]


# -- executors see workers through this interface -----------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One call to run on a worker.

    Attributes:
        method: :class:`CellWorker` method name.
        args: its arguments (picklable).
        key: the caller's handle for the result.
    """

    method: str
    args: tuple
    key: Any = None


class Workers(Protocol):
    """What an executor provides: run tasks on its workers, yielding ``(task, result)`` as each finishes."""

    def first(self, task: Task) -> Any:
        """Run ``task`` on the first worker and return its result (raises what it raises)."""

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        """Run ``tasks`` spread over the workers, yielding each with its result as it finishes."""


# -- the cell store -----------------------------------------------------------------------------------------------
class CellStore:
    """One JSON file per finished cell (``cells/<name>.json``) and per evaluation (``evaluations/<key>.json``).

    Files are written with :func:`lorp.store.cache.write_checked_json` (uniquely named
    temporary file + ``os.replace``, a checksum of the content inside): a cell is
    present whole or not at all, so a killed worker or driver resumes with no lost
    and no duplicated cell, and a damaged or edited file is recomputed, never used.

    Args:
        folder: the sweep folder.
        identity: hash of the shared settings; cells of other settings are ignored.
    """

    def __init__(self, folder: str | Path, identity: str):
        self.folder, self.identity = Path(folder), identity

    def cell_path(self, spec: CellSpec) -> Path:
        return self.folder / "cells" / f"{spec.name}.json"

    def load(self, spec: CellSpec) -> CellResult | None:
        """The finished cell ``spec`` (same identity and evaluation settings), or ``None``.

        A cell file that is damaged or edited (its checksum does not match,
        :func:`lorp.store.cache.read_checked_json`) gets a notice and is recomputed.
        """
        data = read_checked_json(self.cell_path(spec), "sweep cell")
        if data is None:
            return None
        try:
            cell = CellResult.from_json(data)
        except (ConfigError, KeyError, TypeError, ValueError):
            return None  # written by another lorp version: recomputed
        return cell if cell.identity == self.identity and cell.spec == spec else None

    def save(self, cell: CellResult) -> Path:
        """Write ``cells/<name>.json`` atomically, with a checksum of its content."""
        return write_checked_json(self.cell_path(cell.spec), cell.to_json())

    def load_evaluation(self, key: str) -> Evaluation | None:
        """The stored evaluation ``key``, or ``None`` (missing, damaged or from another lorp version)."""
        data = read_checked_json(self.folder / "evaluations" / f"{key}.json", "sweep evaluation")
        if data is None:
            return None
        try:
            return Evaluation.from_json(data)
        except (ConfigError, KeyError, TypeError, ValueError):
            return None

    def save_evaluation(self, key: str, ev: Evaluation) -> Path:
        """Write ``evaluations/<key>.json`` atomically, with a checksum of its content."""
        return write_checked_json(self.folder / "evaluations" / f"{key}.json", ev.to_json())


@dataclass
class RunStats:
    """What one orchestration did.

    Attributes:
        cells_written: cells computed and stored in this run.
        evaluations_computed: evaluations run (one per distinct removed set and settings).
        evaluations_reused: cells whose evaluation came from another cell with the same removed set.
        failures: cells that raised.
        attribution_error: ``"<ExceptionType>: <message>"`` when the single-block removal profile raised
            (the cells still land; a rerun retries it), else ``None``.
        seconds_to_first_cell: from the start of the orchestration to the first stored cell.
        seconds: total.
    """

    cells_written: int = 0
    evaluations_computed: int = 0
    evaluations_reused: int = 0
    failures: list[CellFailure] = field(default_factory=list)
    attribution_error: str | None = None
    seconds_to_first_cell: float | None = None
    seconds: float = 0.0


#: Task keys of the dense evaluation and of the single-block removal profile (evaluation keys are strings).
DENSE_KEY, ATTRIBUTION_KEY = None, ("attribution",)


def orchestrate(workers: Workers, pending: Sequence[CellSpec], store: CellStore, *, reuse_states: bool,
                dense_settings: EvalSettings | None, need_dense: bool, on_dense=None, progress: bool = False,
                stats: RunStats | None = None, attribution: bool = False, on_attribution=None) -> RunStats:
    """Select every pending cell, evaluate each distinct (removed set, settings) once, store every cell.

    Args:
        workers: where the calls run (an executor's workers).
        pending: the cells to compute.
        store: the cell store cells and evaluations are written to.
        reuse_states: pass each selection's first removed block to the dense pass.
        dense_settings: settings of the dense evaluation (zero-shot/speed when any cell is detailed).
        need_dense: evaluate the dense model even when no cell is pending.
        on_dense: called with ``(context, (dense evaluation, reuse record, flops per token))`` once known.
        attribution: also compute the single-block removal profile (:meth:`CellWorker.attribution`), as a
            task queued after every selection (so a worker that ran SLEB answers most of it from its memo).
        on_attribution: called with ``(context, lorp.run.records.Attribution)`` once known.
    Returns:
        :class:`RunStats`; failed cells are in ``stats.failures`` (nothing raised for them), a failed
        profile in ``stats.attribution_error``.
    """
    from tqdm.auto import tqdm

    stats = stats or RunStats()
    start = time.perf_counter()
    ctx: RunContext = workers.first(Task("context", ()))
    by_group: dict[tuple[str, int], list[CellSpec]] = {}
    for spec in pending:
        by_group.setdefault((spec.method, spec.seed), []).append(spec)
    selected: list[Selected] = []
    for _task, outcome in workers.run([Task("select", (specs,)) for specs in by_group.values()]):
        if isinstance(outcome, BaseException):
            stats.failures += [_failure(s, "selection", outcome) for s in _task.args[0]]
            continue
        for item in outcome:
            (stats.failures if isinstance(item, CellFailure) else selected).append(item)
    firsts = tuple(sorted({min(s.selection.pruned) for s in selected})) if reuse_states else ()

    groups: dict[str, list[Selected]] = {}
    for s in selected:
        groups.setdefault(evaluation_key(ctx.model, s.selection.pruned, s.spec.evaluation), []).append(s)
    bar = tqdm(total=len(selected), desc="sweep cells", disable=not progress, unit="cell")
    several_seeds = len({s.spec.seed for s in selected}) > 1  # progress lines then name the seed
    progress_report(stage="cells", total=len(selected), message=f"{len(selected)} cells to compute")

    def land(key: str, ev: Evaluation, computed: bool) -> None:
        for i, s in enumerate(groups[key]):
            reused = not computed or i > 0
            stats.evaluations_reused += reused
            spent = 0.0 if reused else ev.seconds
            stages = {} if reused else {f"evaluation_{k}": v for k, v in ev.stage_seconds.items()}
            store.save(CellResult(s.spec, store.identity, s.selection, ev,
                                  {"selection": s.seconds, "evaluation": spent, "total": s.seconds + spent, **stages},
                                  key, reused, s.nll_passes, s.plugin))
            stats.cells_written += 1
            if stats.seconds_to_first_cell is None:
                stats.seconds_to_first_cell = time.perf_counter() - start
            bar.update(1)
            progress_report(stage="cell", done=stats.cells_written, total=len(selected), method=s.spec.method,
                            budget=s.spec.budget, seed=s.spec.seed if several_seeds else None)

    tasks = []
    if need_dense or groups:
        tasks.append(Task("dense", (firsts, dense_settings), key=DENSE_KEY))
    if attribution:
        tasks.append(Task("try_attribution", (), key=ATTRIBUTION_KEY))
    for key, members in groups.items():
        cached = store.load_evaluation(key)
        if cached is not None:
            land(key, cached, computed=False)
            continue
        first = members[0]
        tasks.append(Task("try_evaluate", (first.selection.pruned, first.spec.evaluation, firsts,
                                           [m.spec for m in members]), key=key))
    for task, outcome in workers.run(tasks):
        if task.key == ATTRIBUTION_KEY:
            if isinstance(outcome, (BaseException, str)):
                stats.attribution_error = outcome if isinstance(outcome, str) else f"{type(outcome).__name__}: {outcome}"
                notice(f"the single-block removal profile failed ({stats.attribution_error}); the cells go on, "
                       "a rerun retries it")
            elif on_attribution is not None:
                on_attribution(ctx, outcome)
            continue
        if task.key is DENSE_KEY:
            if isinstance(outcome, BaseException):
                raise outcome
            if on_dense is not None:
                on_dense(ctx, outcome)
            continue
        if isinstance(outcome, BaseException):
            outcome = [_failure(s, "evaluation", outcome) for s in task.args[3]]
        if isinstance(outcome, list):
            stats.failures += outcome
            continue
        stats.evaluations_computed += 1
        store.save_evaluation(task.key, outcome)
        land(task.key, outcome, computed=True)
    bar.close()
    stats.seconds = time.perf_counter() - start
    return stats


def write_failures(folder: Path, failures: Sequence[CellFailure]) -> Path | None:
    """``failures.json``: every failed cell's spec, stage, error and traceback (removed when none failed)."""
    path = Path(folder) / "failures.json"
    if not failures:
        path.unlink(missing_ok=True)
        return None
    return write_json(path, {"schema": "lorp.cell_failures", "version": 1,
                             "failures": [{"spec": f.spec.to_json(), "stage": f.stage, "error": f.error,
                                           "traceback": f.traceback} for f in failures]})


__all__ = ["CellStore", "CellWorker", "CellsFailedError", "RunStats", "Selected", "Task", "Workers",
           "evaluation_key", "orchestrate", "write_failures"]
