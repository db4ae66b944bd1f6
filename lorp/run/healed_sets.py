"""Removed sets healed and scored outside the sweep's cells: the study's selection × healing grid.

The grid heals a few removed sets (e.g. LoRP's and the best baseline's at the detail budget) with each
healer. The sets are already chosen, so no selection runs again (SLEB's search is not repeated). Each
(removed set, healer) evaluation is the worker's :meth:`lorp.run.worker.CellWorker.evaluate_healed`: the
healer fitted on the first run seed's calibration draw, then plain perplexity on the screening windows.
It is cached as one file in ``folder/healing/``, written atomically
(:func:`lorp.store.cache.write_checked_json`). The key holds the sweep's identity, the removed set, the
evaluation settings and corpora code, and the healer, its settings, its code and the calibration draw
(:func:`lorp.run.fingerprint.healing_inputs`). So a set two methods share is healed once, and a changed
healer plugin is fitted anew.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError
from ..plugins.registry import Registry, load_registry
from ..store.cache import cache_key, read_checked_json, write_checked_json
from .cell_store import CellStore
from .cells import Task
from .executors import RayExecutor, SerialExecutor
from .fingerprint import evaluation_code, healing_inputs
from .records import CellSpec, EvalSettings, Evaluation
from .sweep import SweepConfig

Removed = tuple[int, ...]


def heal_sets(config: SweepConfig, folder: str | Path, removed_sets: Sequence[Sequence[int]], healers: Sequence[str],
              registry: Registry | None = None, executor: SerialExecutor | RayExecutor | None = None,
              zero_shot_healers: Sequence[str] = (), confirmation: int = 0,
              zero_shot_tasks: Sequence[str] | None = None) -> dict[tuple[Removed, str], Evaluation]:
    """Each removed set healed by each healer (``none`` included when asked: the unhealed plain evaluation's
    equal, scored the same way), read from ``folder/healing/`` or computed in one worker pool.

    The healers in ``zero_shot_healers`` also get zero-shot accuracy on ``zero_shot_tasks`` (``None``: the
    sweep's tasks), items drawn with the first run seed as for the detail cells (none when there is no task). ``confirmation`` > 0: each
    healed model is also scored on that many held-out confirmation windows per corpus, from the same fit
    (:func:`lorp.run.healing.evaluate_healed`; ``Evaluation.healing["confirmation"]``).

    Returns:
        ``{(tuple(sorted(removed)), healer): Evaluation}``; a healed evaluation's ``healing`` holds the
        healer's record and fit seconds, its ``stage_seconds`` ``heal_fit`` and ``perplexity``.
    Raises:
        UnknownNameError: an unknown healer, before any model loads.
        ConfigError, PluginError: a healer's fit failed (the message names it).
    """
    registry = registry or load_registry()
    base, seed = config.base, config.cell_seeds[0]
    plain = EvalSettings(corpora=tuple(base.eval_corpora), seq_len=base.eval_seq_len, tokens=base.eval_tokens,
                         batch_size=base.batch_size)
    tasks = tuple(base.zero_shot_tasks if zero_shot_tasks is None else zero_shot_tasks)
    detail = replace(plain, zero_shot_tasks=tasks, zero_shot_limit=base.zero_shot_limit,
                     zero_shot_seed=seed)
    healers = tuple(dict.fromkeys(healers))
    store = CellStore(folder, config.identity(), healing=healing_inputs(registry, base, healers))
    code = evaluation_code(registry, base.eval_corpora)
    wanted = list(dict.fromkeys(tuple(sorted(int(b) for b in r)) for r in removed_sets if len(r)))
    out: dict[tuple[Removed, str], Evaluation] = {}
    missing: dict[str, tuple[Removed, CellSpec]] = {}
    for removed in wanted:
        for healer in healers:
            settings = detail if healer in zero_shot_healers and detail.zero_shot_tasks else plain
            spec = CellSpec("healed-set", len(removed), seed, settings, healer)
            key = cache_key({"healed_set": 1, "sweep": config.identity(), "removed": list(removed),
                             "settings": settings.to_json(), "code": code, "healing": store.healing_key(spec),
                             **({"confirmation": int(confirmation)} if confirmation else {})})
            raw = read_checked_json(Path(folder) / "healing" / f"{key}.json", "healed evaluation")
            if raw is not None:
                out[removed, healer] = Evaluation.from_json(raw)
            else:
                missing[key] = (removed, spec)
    if missing:
        tasks = [Task("try_evaluate", (list(r), spec.evaluation, (), [spec], int(confirmation)), key=key)
                 for key, (r, spec) in missing.items()]
        with (executor or SerialExecutor()).workers(config.run_base, (), reuse_states=False,
                                                    registry=registry) as workers:
            for task, outcome in workers.run(tasks):
                if isinstance(outcome, BaseException):
                    raise outcome
                if isinstance(outcome, list):  # a CellFailure per spec: its error, in words
                    raise ConfigError(f"healing {missing[task.key][1].healer!r} on blocks "
                                      f"{list(missing[task.key][0])} failed: {outcome[0].error}")
                write_checked_json(Path(folder) / "healing" / f"{task.key}.json", outcome.to_json())
                removed, spec = missing[task.key]
                out[removed, spec.healer] = outcome
    return out


__all__ = ["heal_sets"]
