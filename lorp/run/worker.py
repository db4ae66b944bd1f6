"""The worker of a cell: one model loaded once, its calibration pass, selection, and evaluation of removed sets.

:class:`CellWorker` does the heavy work of :mod:`lorp.run.cells` on one machine; executors
(:mod:`lorp.run.executors`) run one per process or Ray actor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnknownNameError
from ..evaluate.zeroshot_prefix import DensePrefixStates
from ..model import models  # load_model is looked up at call time, so tests can stand in for it
from ..model.blocks import find_blocks
from ..model.data import evaluation_windows, load_corpus
from ..plugins.registry import load_registry
from .pipeline import block_metric, calibrate
from .healed_nll import HealedCalibrationNLL
from .progress import report as progress_report
from .records import RunContext
from .evaluation_work import EvaluationWork
from .selection_work import SelectionWork


class CellWorker(SelectionWork, EvaluationWork):
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
        self._confirmation_windows: dict[int, dict[str, Any]] = {}
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
    def windows(self) -> dict[str, Any]:
        """Evaluation windows, int64 ``[W, T]`` per corpus."""
        self.context()
        return self._windows



__all__ = ["CellWorker"]
