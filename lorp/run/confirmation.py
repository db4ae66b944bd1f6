"""The held-out confirmation set: the verdict pairs evaluated again on windows that chose nothing.

The screening windows (every cell's perplexity) choose what is compared: the best baseline at each
budget. Testing that choice on the same windows would reuse the data that made it, so the verdict
pairs (dense, LoRP, the best baseline, our selector) are scored once more on confirmation windows:
spread over the evaluation text like the screening ones and disjoint from them
(:func:`lorp.model.data.confirmation_windows`). Results are cached per removed set in the sweep
folder, ``confirmation/<key>.json``, written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError
from ..evaluate.perplexity import Perplexity
from ..plugins.registry import Registry, load_registry
from ..store.cache import cache_key
from .cells import Task
from .executors import RayExecutor, SerialExecutor
from .scored_sets import scored_sets
from .fingerprint import evaluation_code
from .sweep import SweepConfig


def confirmation_key(config: SweepConfig, removed: Sequence[int], count: int, code: Mapping[str, str]) -> str:
    """Cache key of one removed set on ``count`` confirmation windows per corpus, for the sweep ``config``."""
    return cache_key({"confirmation": 1, "sweep": config.identity(), "windows": int(count),
                      "removed": sorted(int(b) for b in removed), "code": dict(code)})


def confirm(config: SweepConfig, folder: str | Path, removed_sets: Sequence[Sequence[int]], count: int,
            registry: Registry | None = None, executor: SerialExecutor | RayExecutor | None = None
            ) -> dict[tuple[int, ...], dict[str, Perplexity]]:
    """Perplexity of dense and of each removed set on ``count`` confirmation windows per evaluation corpus.

    Sets already in ``folder/confirmation/`` are read back; the others are computed in one
    worker call (:meth:`lorp.run.worker.CellWorker.confirm`; one model load) and stored.

    Args:
        config: the sweep the sets come from (its model, corpora, window length and screening budget).
        folder: the sweep folder.
        removed_sets: block sets to score (dense, ``()``, is always scored).
        count: confirmation windows per corpus (>= 1).
    Returns:
        ``{(): dense, tuple(sorted(removed)): pruned}``, each ``{corpus: Perplexity}`` with per-window NLL.
    Raises:
        ConfigError: ``count`` is not a whole number >= 1, or the text holds too few windows.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"confirmation windows must be a whole number >= 1 per corpus, got {count!r}")
    registry = registry or load_registry()
    code = evaluation_code(registry, config.base.eval_corpora)
    wanted = list(dict.fromkeys([(), *(tuple(sorted(int(b) for b in r)) for r in removed_sets)]))
    return scored_sets(config, Path(folder) / "confirmation", wanted,
                       lambda r: confirmation_key(config, r, count, code),
                       lambda missing: Task("confirm", ([r for r in missing if r], count)), "confirmation", registry,
                       executor, extra={"windows": count})


__all__ = ["confirm", "confirmation_key"]
