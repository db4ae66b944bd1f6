"""A cell worker's selection: the calibration statistics per run seed, the scorers model-scoring strategies call,
choosing each cell's removed blocks, and the single-block removal profile."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..builtins.baselines import block_influence
from ..errors import ConfigError
from ..evaluate.perplexity import single_removal_nll
from ..method.selection import select_blocks
from ..model.data import calibration_samples
from .pipeline import calibrate, calibration_nll
from .healed_nll import HealedCalibrationNLL, split_rows
from .progress import report as progress_report
from .records import CellFailure, CellSpec
from .study_records import Attribution
from .cell_results import Selected, cell_failure


class SelectionWork:
    """The selection half of :class:`lorp.run.worker.CellWorker` (which supplies ``base``, ``registry``, ``load()``,
    ``context()`` and the caches its ``__init__`` sets)."""

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



__all__ = ["SelectionWork"]
