"""The worker of a cell: one model loaded once, its calibration pass, selection, and evaluation of removed sets.

:class:`CellWorker` does the heavy work of :mod:`lorp.run.cells` on one machine; executors
(:mod:`lorp.run.executors`) run one per process or Ray actor.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..builtins.baselines import block_influence
from ..errors import ConfigError, UnknownNameError
from ..evaluate.compute_floor import floor_record
from ..evaluate.perplexity import Perplexity, SweepPerplexity, single_removal_nll
from ..evaluate.speed import decode_speed, flops_per_token
from ..evaluate.zeroshot import zero_shot
from ..evaluate.zeroshot_prefix import DensePrefixStates
from ..method.selection import select_blocks
from ..model import models  # load_model is looked up at call time, so tests can stand in for it
from ..model.blocks import find_blocks
from ..model.data import calibration_samples, confirmation_windows, evaluation_windows, load_corpus
from ..model.pruning import blocks_removed
from ..plugins.registry import load_registry
from ..store.cache import cache_key
from .fingerprint import model_fields
from .pipeline import block_metric, calibrate, calibration_nll
from .healed_nll import HealedCalibrationNLL, split_rows
from .healing import evaluate_healed
from .progress import report as progress_report
from .records import CellFailure, CellSpec, EvalSettings, Evaluation, RunContext, Speed, ZeroShot
from .study_records import Attribution


def cell_failure(spec: CellSpec, stage: str, exc: BaseException) -> CellFailure:
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


def evaluation_key(model: Mapping[str, Any], removed: Iterable[int], settings: EvalSettings,
                   code: Mapping[str, str] | None = None, healing: Mapping[str, Any] | None = None) -> str:
    """Key of an evaluation: the model's identity, the sorted removed blocks, the evaluation settings and
    the code of the registered evaluation corpora (:func:`lorp.run.fingerprint.evaluation_code`); for a
    healed model also ``healing``: the healer, its settings, its plugin's code and the calibration draw it
    was fitted on (:meth:`lorp.run.cell_store.CellStore.healing_key`). Unhealed keys are as before healing
    existed."""
    ident = {k: model.get(k) for k in ("spec", "model_type", "num_parameters", "gguf_sha256", "dtype")}
    return cache_key({"evaluation": 1, "model": ident, "removed": sorted(int(b) for b in removed),
                      "settings": settings.to_json(), "code": dict(code or {}),
                      **({"healing": dict(healing)} if healing else {})})


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
        self._seed_nll: dict[tuple[int, int, str], Any] = {}
        self._healed_nll: dict[tuple[int, int], HealedCalibrationNLL] = {}
        self._zero_shot_prefix: DensePrefixStates | None = None
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

    def nll_for(self, seed: int, samples: int | None = None, prefix: str = "greedy"):
        """:class:`lorp.evaluate.perplexity.CalibrationNLL` of SLEB-style strategies on the calibration draw ``seed``
        (its first ``samples`` sequences, default ``base.sleb_samples``, at most ``base.num_samples``; their
        last ``base.sleb_tokens`` tokens scored; ``prefix``: the strategy's ``nll_prefix``), built once per
        (seed, samples, prefix)."""
        self.context()
        seed, samples = int(seed), min(int(samples or self.base.sleb_samples), self.base.num_samples)
        if seed == self.base.seed and samples == self.base.sleb_samples and prefix == "greedy":
            if self._nll is None:
                self._nll = calibration_nll(self.load(), self._calib_corpus, self.base, self.registry)
            return self._nll
        if (seed, samples, prefix) not in self._seed_nll:
            self._seed_nll[(seed, samples, prefix)] = calibration_nll(
                self.load(), self._calib_corpus, replace(self.base, seed=seed, sleb_samples=samples), self.registry,
                prefix)
        return self._seed_nll[(seed, samples, prefix)]

    def healed_nll_for(self, seed: int, samples: int | None, healer: str) -> HealedCalibrationNLL:
        """:class:`lorp.run.healed_nll.HealedCalibrationNLL` on the calibration draw ``seed``: its first ``samples``
        sequences (default ``base.sleb_samples``) scored on their last ``base.sleb_tokens`` tokens, the rest of the
        draw fitting ``healer``'s maps; built once per (seed, samples), so budgets share the fitted runs.

        Raises:
            ConfigError: ``healer`` is not ``linear``, or the draw leaves fewer than 2 sequences to fit.
        """
        if healer != "linear":
            raise ConfigError(f"a selector's nll_healer must be 'linear' (the healer whose runs candidates can "
                              f"share), got {healer!r}")
        self.context()
        seed, samples = int(seed), min(int(samples or self.base.sleb_samples), self.base.num_samples)
        if (seed, samples) not in self._healed_nll:
            ids = calibration_samples(self.load().tokenizer, self._calib_corpus, self.base.num_samples,
                                      self.base.seq_len, seed)
            score, fit = split_rows(ids, samples)
            self._healed_nll[(seed, samples)] = HealedCalibrationNLL(
                self.load().model, score, fit, scored_tokens=self.base.sleb_tokens or None, registry=self.registry)
        return self._healed_nll[(seed, samples)]

    @property
    def windows(self) -> dict[str, Any]:
        """Evaluation windows, int64 ``[W, T]`` per corpus."""
        self.context()
        return self._windows

    # -- selection -----------------------------------------------------------------------------------------------
    def select_one(self, spec: CellSpec, nll_samples: int | None = None) -> Selected:
        """Choose ``spec.budget`` blocks with ``spec.method``; raises what the strategy raises.

        ``spec.seed`` is a full run seed: the calibration draw (S, the statistics and
        SLEB's scoring sequences, :meth:`matrices_for`, :meth:`nll_for`) and the
        selection's randomness (clustering, random baselines). ``nll_samples`` overrides the
        calibration sequences a strategy that needs the model scores on (default: its own
        ``nll_samples``, else ``base.sleb_samples``); SLEB's second token count uses it.
        """
        base, registry = self.base, self.registry
        strategy = registry.allocation(spec.method)
        matrices, _ = self.matrices_for(spec.seed)
        samples = nll_samples or strategy.nll_samples
        healed = self.healed_nll_for(spec.seed, samples, strategy.nll_healer) if strategy.nll_healer else None
        nll = (self.nll_for(spec.seed, samples, strategy.nll_prefix)
               if strategy.needs_model and healed is None else None)
        t = time.perf_counter()
        selection = select_blocks(matrices[base.similarity], spec.budget, k=base.k, seed=spec.seed,
                                  clustering=base.clustering, allocation=spec.method, protected=base.protected,
                                  statistics=matrices, nll=nll, registry=registry, healed_nll=healed)
        passes = ({"full": nll.forward_passes, "partial": nll.partial_passes} if nll is not None
                  else healed.passes if healed is not None else None)
        return Selected(spec, selection, time.perf_counter() - t, passes, registry.provenance("allocation", spec.method))

    def select(self, specs: Sequence[CellSpec]) -> list[Selected | CellFailure]:
        """:meth:`select_one` for each spec; a spec that raises becomes a :class:`CellFailure` (the rest go on).

        Specs that differ only in their healer share one selection (made once, for the first of them).
        """
        out: list[Selected | CellFailure] = []
        made: dict[tuple[str, int, int], Selected | BaseException] = {}
        for spec in specs:
            key = (spec.method, spec.budget, spec.seed)
            if key not in made:
                try:
                    made[key] = self.select_one(spec)
                except Exception as exc:  # noqa: BLE001 - reported per cell with its traceback
                    made[key] = exc
            got = made[key]
            out.append(cell_failure(spec, "selection", got) if isinstance(got, BaseException) else replace(got, spec=spec))
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
            :class:`lorp.run.study_records.Attribution`: ``nll`` ``{block: nats per token}`` for blocks
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
    def states_fields(self) -> dict[str, Any] | None:
        """What identifies this model in the on-disk cache of dense hidden states
        (:class:`lorp.evaluate.perplexity.SweepPerplexity`'s ``cache_fields``), as in the calibration pass's key:
        its content id and load info (:func:`lorp.run.fingerprint.model_fields`). ``None`` (no cache) when
        ``base.use_cache`` is off."""
        return model_fields(self.base.model, self.load().info) if self.base.use_cache else None

    def _perplexity_scorer(self, firsts: Iterable[int]):
        firsts = tuple(sorted(set(firsts))) if self.reuse_states else ()
        if self._scorer is None or self._scorer_firsts != firsts:
            self._scorer = SweepPerplexity(self.load().model, self.windows, firsts, batch_size=self.base.batch_size,
                                           registry=self.registry, reuse=self.reuse_states,
                                           cache_fields=self.states_fields())
            self._scorer_firsts = firsts
        return self._scorer

    def detail_measures(self, settings: EvalSettings, stages: dict[str, float], forward=None,
                 speed_of: Any = None) -> tuple[ZeroShot | None, Speed | None]:
        """Zero-shot accuracy and decode speed per ``settings``; their wall times go into ``stages``.

        ``forward``: the zero-shot model call (:func:`lorp.evaluate.zeroshot.zero_shot`), ``None`` for the
        model as it is. ``speed_of``: a context manager around the decode-speed run (blocks removed), or
        ``None`` for the model as it is.
        """
        loaded = self.load()
        zs = speed = None
        if settings.zero_shot_tasks:
            t = time.perf_counter()
            zs = ZeroShot.from_dict(zero_shot(loaded.model, loaded.tokenizer, settings.zero_shot_tasks,
                                              limit=settings.zero_shot_limit, seed=settings.zero_shot_seed,
                                              forward=forward))
            stages["zero_shot"] = time.perf_counter() - t
        if settings.decode_tokens:
            t = time.perf_counter()
            prompt = next(iter(self.windows.values()))[:1, : min(32, settings.seq_len)]
            with speed_of if speed_of is not None else contextlib.nullcontext():
                speed = Speed.from_dict({**decode_speed(loaded.model, prompt, new_tokens=settings.decode_tokens),
                                         "flops_per_token": flops_per_token(loaded.model, self.registry)})
            stages["speed"] = time.perf_counter() - t
        return zs, speed

    def dense(self, firsts: Iterable[int], settings: EvalSettings | None, detail_firsts: Iterable[int] = ()
              ) -> tuple[Evaluation, dict[str, Any], int]:
        """The dense model's evaluation, the perplexity-reuse record and the dense FLOPs per token.

        The reuse record ``{"enabled", "stored_blocks", "floor"}`` also carries what the perplexity
        stages' floor needs (:func:`lorp.evaluate.compute_floor.floor_record`, the matmul rate measured here).

        The dense perplexity pass keeps the hidden states entering the blocks in
        ``firsts`` (first removed block of each cell). Zero-shot accuracy and speed
        are measured when ``settings`` asks for them; the zero-shot pass keeps the states entering
        ``detail_firsts`` (first removed block of each detailed cell), so that :meth:`evaluate` restarts
        those cells' zero-shot forwards there (:class:`lorp.evaluate.zeroshot_prefix.DensePrefixStates`).
        """
        t = time.perf_counter()
        progress_report(stage="dense", message="dense model: perplexity" + (
            ", zero-shot accuracy and decode speed" if settings is not None else ""))
        scorer = self._perplexity_scorer(firsts)
        stages = {"perplexity": time.perf_counter() - t}
        self._zero_shot_prefix = None
        wanted = set(detail_firsts) if self.reuse_states else set()
        if settings is not None and settings.zero_shot_tasks and wanted:
            self._zero_shot_prefix = DensePrefixStates(self.load().model, wanted, registry=self.registry)
        forward = self._zero_shot_prefix.record if self._zero_shot_prefix is not None else None
        zs, speed = self.detail_measures(settings, stages, forward) if settings is not None else (None, None)
        ctx = self.context()
        ev = Evaluation((), {c: Perplexity(**v) for c, v in scorer.dense.items()}, ctx.parameters, zs, speed,
                        time.perf_counter() - t, stages)
        model, window = self.load().model, next(iter(self.windows.values())).shape[-1]
        return (ev, {"enabled": scorer.reuse, "stored_blocks": scorer.stored_blocks,
                     "floor": floor_record(model, window, self.registry)}, flops_per_token(model, self.registry))

    def evaluate(self, removed: Sequence[int], settings: EvalSettings, firsts: Iterable[int] = ()) -> Evaluation:
        """Evaluate the model with ``removed`` deleted: perplexity per corpus, zero-shot and speed per ``settings``.

        Blocks are removed in place and restored (:func:`lorp.model.pruning.blocks_removed`);
        perplexity restarts from the dense states kept for ``firsts`` where it can, and zero-shot accuracy
        from those the dense zero-shot pass kept (:meth:`dense`'s ``detail_firsts``).
        """
        t = time.perf_counter()
        ppl = {c: Perplexity(**v) for c, v in self._perplexity_scorer(firsts)(removed).items()}
        stages = {"perplexity": time.perf_counter() - t}
        zs = speed = None
        if settings.detailed:
            model, prefix = self.load().model, self._zero_shot_prefix
            if prefix is not None and prefix.start_for(removed) is not None:
                zs, speed = self.detail_measures(settings, stages, prefix.replay(removed),
                                          speed_of=blocks_removed(model, list(removed), self.registry))
            else:
                with blocks_removed(model, list(removed), self.registry):
                    zs, speed = self.detail_measures(settings, stages)
        return Evaluation(tuple(sorted(removed)), ppl, self.context().parameters_without(removed), zs, speed,
                          time.perf_counter() - t, stages)

    def confirm(self, removed_sets: Sequence[Sequence[int]], count: int) -> dict[tuple[int, ...], dict[str, Perplexity]]:
        """Perplexity on the held-out confirmation windows of every evaluation corpus: dense and each removed set.

        ``count`` windows per corpus (:func:`lorp.model.data.confirmation_windows`: spread over the
        evaluation text, disjoint from the screening windows of ``base.eval_tokens``). The dense pass
        keeps the states entering each set's first removed block, so every set restarts from there.

        Returns:
            ``{(): dense, tuple(sorted(removed)): pruned}``, each ``{corpus: Perplexity}`` with per-window NLL.
        Raises:
            ConfigError: the text holds too few windows beside the screening ones.
        """
        base, loaded = self.base, self.load()
        windows = self.confirmation_windows(count)
        sets = [tuple(sorted(int(b) for b in r)) for r in removed_sets if len(r)]
        firsts = sorted({r[0] for r in sets}) if self.reuse_states else ()
        progress_report(stage="confirmation", message=f"confirmation windows: dense and {len(sets)} removed set(s), "
                                                      f"{count} windows per corpus")
        scorer = SweepPerplexity(loaded.model, windows, firsts, batch_size=base.batch_size, registry=self.registry,
                                 reuse=self.reuse_states, cache_fields=self.states_fields())
        out = {(): {c: Perplexity(**v) for c, v in scorer.dense.items()}}
        for r in sets:
            out[r] = {c: Perplexity(**v) for c, v in scorer(r).items()}
        return out

    def confirmation_windows(self, count: int) -> dict[str, Any]:
        """``count`` held-out confirmation windows per evaluation corpus, int64 ``[count, T]`` each
        (:func:`lorp.model.data.confirmation_windows`: disjoint from the screening windows).

        Raises:
            ConfigError: the text holds too few windows beside the screening ones.
        """
        base, loaded = self.base, self.load()
        self.context()
        return {n: confirmation_windows(loaded.tokenizer, load_corpus(n, self.registry), base.eval_seq_len, count,
                                        base.eval_tokens) for n in base.eval_corpora}

    def screen(self, removed_sets: Sequence[Sequence[int]]) -> dict[tuple[int, ...], dict[str, Perplexity]]:
        """Perplexity of each removed set on the screening windows (every cell's), outside the sweep's cells.

        The random floor's draws and SLEB's picks at a second token count use it. The dense pass keeps
        the states entering each set's first removed block (one dense pass for all the sets).

        Returns:
            ``{tuple(sorted(removed)): {corpus: Perplexity}}`` with per-window NLL.
        """
        sets = [tuple(sorted(int(b) for b in r)) for r in removed_sets if len(r)]
        progress_report(stage="screening", message=f"screening windows: {len(sets)} extra removed set(s)")
        scorer = self._perplexity_scorer(sorted({r[0] for r in sets}))
        return {r: {c: Perplexity(**v) for c, v in scorer(r).items()} for r in sets}

    def try_evaluate(self, removed: Sequence[int], settings: EvalSettings, firsts: Iterable[int],
                     specs: Sequence[CellSpec], confirmation: int = 0) -> Evaluation | list[CellFailure]:
        """:meth:`evaluate` (:meth:`evaluate_healed` when the specs are healed, also on ``confirmation`` held-out
        windows per corpus when > 0), or a :class:`CellFailure` per spec sharing it when it raises."""
        try:
            first = specs[0] if specs else None
            if first is not None and first.healed:
                return self.evaluate_healed(removed, settings, first.healer, first.seed, confirmation)
            return self.evaluate(removed, settings, firsts)
        except Exception as exc:  # noqa: BLE001 - reported per cell with its traceback
            return [cell_failure(s, "evaluation", exc) for s in specs]

    def evaluate_healed(self, removed: Sequence[int], settings: EvalSettings, healer: str, seed: int,
                        confirmation: int = 0) -> Evaluation:
        """Evaluate the model with ``removed`` deleted after ``healer`` repaired it
        (:func:`lorp.run.healing.evaluate_healed`)."""
        return evaluate_healed(self, removed, settings, healer, seed, confirmation)


__all__ = ["CellWorker", "Selected", "evaluation_key"]
