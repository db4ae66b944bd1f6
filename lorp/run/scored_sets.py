"""Removed sets scored on some windows, cached one file per set in the sweep folder.

The held-out confirmation windows (:mod:`lorp.run.confirmation`) and the extra screening sets
(:mod:`lorp.run.screening`) both score a list of removed sets outside the sweep's cells. Each set's
result is one JSON file under a store folder, named by a key that holds everything it depends on,
written atomically (:func:`lorp.store.cache.write_checked_json`, safe when another process writes
the same key at once); sets already stored are read back, the rest computed in one worker call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..evaluate.perplexity import Perplexity
from ..plugins.registry import Registry
from ..store.cache import read_checked_json, write_checked_json
from .cells import Task
from .executors import RayExecutor, SerialExecutor
from .sweep import SweepConfig

Removed = tuple[int, ...]


def scored_sets(config: SweepConfig, store: str | Path, wanted: Sequence[Removed], key: Callable[[Removed], str],
                task: Callable[[list[Removed]], Task], what: str, registry: Registry,
                executor: SerialExecutor | RayExecutor | None = None, extra: Mapping[str, Any] | None = None
                ) -> dict[Removed, dict[str, Perplexity]]:
    """``{removed: {corpus: Perplexity}}`` for every set of ``wanted``, read from ``store`` or computed.

    Args:
        config: the sweep (its first run seed's settings start the worker).
        store: the folder of the cache files, ``<key(removed)>.json`` each.
        wanted: sorted block tuples, no repeats.
        key: the cache key of one set.
        task: the worker call that scores the missing sets, returning ``{removed: {corpus: Perplexity}}``.
        what: the record's name in messages about a damaged file.
        extra: fields written next to ``removed`` and ``perplexity`` in each file.
    """
    store = Path(store)
    out, missing = {}, []
    for r in wanted:
        raw = read_checked_json(store / f"{key(r)}.json", what)
        if raw is None:
            missing.append(r)
        else:
            out[r] = {c: Perplexity(**v) for c, v in raw["perplexity"].items()}
    if missing:
        with (executor or SerialExecutor()).workers(config.run_base, config.methods, reuse_states=config.reuse_states,
                                                    registry=registry) as workers:
            computed = workers.first(task(missing))
        for r in missing:
            write_checked_json(store / f"{key(r)}.json", {"removed": list(r), **(extra or {}),
                                                          "perplexity": {c: asdict(v) for c, v in computed[r].items()}})
            out[r] = computed[r]
    return out


__all__ = ["scored_sets"]
