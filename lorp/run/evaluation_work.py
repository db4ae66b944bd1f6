"""A cell worker's evaluation: the dense pass and its kept states, perplexity, zero-shot accuracy and decode speed
of removed sets, healed evaluations, and removed sets scored on confirmation or extra screening windows."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..evaluate.compute_floor import floor_record
from ..evaluate.perplexity import Perplexity, SweepPerplexity
from ..evaluate.speed import decode_speed, flops_per_token
from ..evaluate.zeroshot import zero_shot
from ..evaluate.zeroshot_prefix import DensePrefixStates
from ..model.data import confirmation_windows, load_corpus
from ..model.pruning import blocks_removed
from .fingerprint import model_fields
from .healing import evaluate_healed
from .progress import report as progress_report
from .records import CellFailure, CellSpec, EvalSettings, Evaluation, Speed, ZeroShot
from .cell_results import cell_failure


class EvaluationWork:
    """The evaluation half of :class:`lorp.run.worker.CellWorker` (which supplies ``base``, ``registry``,
    ``load()``, ``context()``, ``windows`` and the caches its ``__init__`` sets)."""

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
        if count not in self._confirmation_windows:  # the grid scores each healed set on them: tokenize once
            base, loaded = self.base, self.load()
            self.context()
            self._confirmation_windows[count] = {
                n: confirmation_windows(loaded.tokenizer, load_corpus(n, self.registry), base.eval_seq_len, count,
                                        base.eval_tokens) for n in base.eval_corpora}
        return self._confirmation_windows[count]

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


__all__ = ["EvaluationWork"]
