"""Removed sets scored on the screening windows outside the sweep's cells: the random floor and SLEB's second count.

Two checks place every method against what it should beat and against its own settings:

* **The random floor** (:func:`random_floor`): ``draws`` removed sets of ``budget`` blocks, each
  drawn uniformly among the removable blocks, scored on the screening windows every cell is
  scored on. One random draw (the ``random`` baseline) says little; the draws' median and
  range say where chance lies.
* **Detail measures of a removed set** (:func:`detail`): zero-shot accuracy and decode speed at the
  study's detail settings, for a removed set no cell holds (a method ``lorp study --add`` puts beside
  a committed study).
* **SLEB at a second token count** (:func:`sleb_at`): SLEB's greedy search again at one budget,
  scoring each candidate on ``samples`` calibration sequences instead of ``base.sleb_samples``,
  and its picks scored on the screening windows.

All are cached in the sweep folder (``screening/<key>.json``, ``detail/<key>.json``, ``sleb/<key>.json``), written
atomically (:func:`lorp.store.cache.write_checked_json`), keyed by the sweep's identity, the
removed set or search settings, and the code that computes them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..evaluate.perplexity import Perplexity
from ..method.allocation import normalize_protected
from ..plugins.registry import Registry, load_registry
from ..store.cache import cache_key, read_checked_json, write_checked_json
from .cells import Task
from .executors import RayExecutor, SerialExecutor
from .scored_sets import scored_sets
from .fingerprint import evaluation_code
from .records import CellSpec, EvalSettings, Evaluation
from .sweep import SweepConfig

#: Offset of the random floor's draw seeds from the run seed, so that no draw repeats the ``random`` baseline's.
FLOOR_SEED_OFFSET = 1_000


def floor_draws(num_blocks: int, budget: int, draws: int, seed: int, protected: Sequence[int] = ()
                ) -> list[tuple[int, ...]]:
    """The random floor's removed sets: draw ``i`` takes ``budget`` blocks uniformly without replacement among
    the unprotected ones with ``numpy.random.default_rng(seed + FLOOR_SEED_OFFSET + i)``.

    Args:
        num_blocks: N, blocks of the model.
        budget: blocks per draw (>= 1).
        draws: number of draws (>= 1).
        seed: the run seed.
        protected: blocks never removed (negative counts from the end).
    Returns:
        ``draws`` sorted tuples of block indices (two draws may coincide).
    Raises:
        ConfigError: ``draws`` or ``budget`` < 1, or fewer unprotected blocks than ``budget``.
    """
    for name, value in (("draws", draws), ("budget", budget)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"random floor: {name} must be a whole number >= 1, got {value!r}")
    keep = set(normalize_protected(tuple(protected), num_blocks))
    eligible = [b for b in range(num_blocks) if b not in keep]
    if len(eligible) < budget:
        raise ConfigError(f"random floor: only {len(eligible)} unprotected blocks, fewer than the budget {budget}")
    return [tuple(sorted(int(b) for b in np.random.default_rng(seed + FLOOR_SEED_OFFSET + i).choice(
        eligible, size=budget, replace=False))) for i in range(draws)]


def _key(kind: str, config: SweepConfig, what: Any, code: dict[str, str]) -> str:
    return cache_key({kind: 1, "sweep": config.identity(), "what": what, "code": code})


def screen(config: SweepConfig, folder: str | Path, removed_sets: Sequence[Sequence[int]],
           registry: Registry | None = None, executor: SerialExecutor | RayExecutor | None = None
           ) -> dict[tuple[int, ...], dict[str, Perplexity]]:
    """Perplexity of each removed set on the sweep's screening windows; cached per set in ``folder/screening/``.

    Sets already stored are read back; the others are scored in one worker call
    (:meth:`lorp.run.worker.CellWorker.screen`, one model load).

    Returns:
        ``{tuple(sorted(removed)): {corpus: Perplexity}}`` with per-window NLL; the empty set is skipped.
    """
    registry = registry or load_registry()
    code = evaluation_code(registry, config.base.eval_corpora)
    wanted = list(dict.fromkeys(tuple(sorted(int(b) for b in r)) for r in removed_sets if len(r)))
    return scored_sets(config, Path(folder) / "screening", wanted,
                       lambda r: _key("screening", config, list(r), code), lambda missing: Task("screen", (missing,)),
                       "screening", registry, executor)


def detail(config: SweepConfig, folder: str | Path, removed_sets: Sequence[Sequence[int]], settings: EvalSettings,
           registry: Registry | None = None, executor: SerialExecutor | RayExecutor | None = None,
           firsts: Sequence[int] = ()) -> dict[tuple[int, ...], Evaluation]:
    """Each removed set evaluated as a detailed cell is (:meth:`lorp.run.worker.CellWorker.evaluate`): perplexity
    on the screening windows, zero-shot accuracy and decode speed per ``settings``; cached per set in
    ``folder/detail/`` (keyed by the sweep's identity, the set, ``settings`` and the evaluation corpora's code).
    ``firsts``: the blocks whose dense entering states the perplexity restarts from (a worker held open after
    :func:`screen` of the same sets keeps its dense pass when they are the ones it used).

    Returns:
        ``{tuple(sorted(removed)): Evaluation}``; the empty set is skipped.
    Raises:
        ConfigError: ``settings`` asks for neither zero-shot accuracy nor decode speed.
    """
    if not settings.detailed:
        raise ConfigError("detail evaluation needs zero-shot tasks or decode tokens in its settings")
    registry = registry or load_registry()
    code = evaluation_code(registry, config.base.eval_corpora)
    wanted = list(dict.fromkeys(tuple(sorted(int(b) for b in r)) for r in removed_sets if len(r)))
    store = Path(folder) / "detail"
    key = {r: _key("detail", config, [list(r), settings.to_json()], code) for r in wanted}
    out, missing = {}, []
    for r in wanted:
        raw = read_checked_json(store / f"{key[r]}.json", "detail evaluation")
        if raw is None:
            missing.append(r)
        else:
            out[r] = Evaluation.from_json(raw)
    if missing:
        with (executor or SerialExecutor()).workers(config.run_base, config.methods, reuse_states=config.reuse_states,
                                                    registry=registry) as workers:
            for task, ev in workers.run([Task("evaluate", (list(r), settings, tuple(firsts)), key=r) for r in missing]):
                if isinstance(ev, BaseException):
                    raise ev
                write_checked_json(store / f"{key[task.key]}.json", ev.to_json())
                out[task.key] = ev
    return out


def random_floor(config: SweepConfig, folder: str | Path, budget: int, draws: int, num_blocks: int,
                 registry: Registry | None = None, executor: SerialExecutor | RayExecutor | None = None
                 ) -> list[dict[str, Any]]:
    """The random floor at ``budget``: :func:`floor_draws` at the first run seed, each scored by :func:`screen`.

    Returns:
        one ``{"draw", "seed", "pruned", "perplexity": {corpus: Perplexity}}`` per draw, in draw order.
    Raises:
        ConfigError: as :func:`floor_draws`.
    """
    seed = config.cell_seeds[0]
    sets = floor_draws(num_blocks, budget, draws, seed, config.base.protected)
    scored = screen(config, folder, sets, registry, executor)
    return [{"draw": i, "seed": seed + FLOOR_SEED_OFFSET + i, "pruned": list(r), "perplexity": scored[r]}
            for i, r in enumerate(sets)]


def scoring_tokens(base: Any, samples: int) -> int:
    """Tokens SLEB's scorer scores on ``samples`` calibration sequences: ``sleb_tokens`` of each, or all but the
    first (``seq_len − 1``) when ``sleb_tokens`` is 0."""
    return samples * (base.sleb_tokens or base.seq_len - 1)


def sleb_at(config: SweepConfig, folder: str | Path, budget: int, samples: int, registry: Registry | None = None,
            executor: SerialExecutor | RayExecutor | None = None) -> dict[str, Any]:
    """SLEB's picks at ``budget`` scoring on ``samples`` calibration sequences (first run seed), and their perplexity.

    The scored tokens per sequence stay ``base.sleb_tokens`` (0: all), so the token count is
    ``samples × (sleb_tokens or seq_len − 1)``. The search is cached in ``folder/sleb/``, its
    picks' perplexity as :func:`screen`'s.

    Returns:
        ``{"budget", "samples", "tokens", "pruned", "seconds", "perplexity": {corpus: Perplexity}}``
        (``seconds``: the search when it was computed).
    Raises:
        ConfigError: ``samples`` < 1 or more than the calibration sequences.
    """
    base = config.base
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= base.num_samples:
        raise ConfigError(f"SLEB's second count must be 1..{base.num_samples} calibration sequences (the draw), "
                          f"got {samples!r}; raise num_samples or lower the factor")
    registry = registry or load_registry()
    seed = config.cell_seeds[0]
    code = {"allocation": registry.provenance("allocation", "sleb").get("code") or ""}
    path = Path(folder) / "sleb" / f"{_key('sleb', config, [budget, samples, seed], code)}.json"
    raw = read_checked_json(path, "SLEB search")
    if raw is None:
        with (executor or SerialExecutor()).workers(config.run_base, config.methods, reuse_states=config.reuse_states,
                                                    registry=registry) as workers:
            t = time.perf_counter()
            picked = workers.first(Task("select_one", (CellSpec("sleb", budget, seed, config.plain_settings()),
                                                       samples)))
            raw = {"pruned": sorted(int(b) for b in picked.selection.pruned), "seconds": time.perf_counter() - t}
        write_checked_json(path, raw)
    tokens = scoring_tokens(base, samples)
    ppl = screen(config, folder, [raw["pruned"]], registry, executor)[tuple(raw["pruned"])]
    return {"budget": budget, "samples": samples, "tokens": tokens, "pruned": raw["pruned"],
            "seconds": raw["seconds"], "perplexity": ppl}


__all__ = ["FLOOR_SEED_OFFSET", "detail", "floor_draws", "random_floor", "scoring_tokens", "screen", "sleb_at"]
