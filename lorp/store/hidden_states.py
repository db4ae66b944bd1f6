"""Dense hidden states of evaluation windows, cached on disk so each is computed once.

A pruned variant restarts from the hidden states the dense model computes entering its first
removed block (:class:`lorp.evaluate.perplexity.SweepPerplexity`). The study asks for those states
on the same windows several times, in several workers and processes: the sweep's cells, the random
floor's draws, SLEB's check, the ablation notebook, the held-out confirmation windows of each. One
entry under ``$LORP_CACHE_DIR/hidden_states/<key>.npz`` holds the dense pass of one set of windows:
per-window NLL (the dense perplexity) and the float32 states entering the blocks it kept, so a later
caller loads them instead of running the dense model again. Float32 in, float32 out: a loaded state is
bit-identical to the one computed.

The entry follows :mod:`lorp.store.cache`'s rules: keyed by everything that changes it (the caller's
key), written under a temporary name and moved into place (concurrent writers of one key each leave a
whole entry), checked when read (zip CRC, the key, shapes, finite values), and an unusable entry gives a
notice and ``None``, so the caller recomputes it.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import cache_dir
from .atomic import to_json, write_atomically
from .cache import CACHE_HINT, notice

#: Bump when the layout of an entry changes.
STATES_VERSION = 1


def states_path(key: str) -> Path:
    """Where the entry of ``key`` lives: ``$LORP_CACHE_DIR/hidden_states/<key>.npz``."""
    return cache_dir() / "hidden_states" / f"{key}.npz"


def _name(corpus: int, batch: int, block: int) -> str:
    return f"c{corpus}_b{batch}_k{block}"


def save_hidden_states(key: str, states: Mapping[str, list[Mapping[int, np.ndarray]]], meta: Mapping[str, Any]) -> Path:
    """Store the dense states of some evaluation windows and their JSON metadata under ``key``, atomically.

    Args:
        key: the cache key (:func:`lorp.store.cache.cache_key` of everything the states depend on).
        states: ``{corpus: [{block: float32 array [B, T, H]} per batch]}``; any block set, possibly empty.
        meta: JSON-able metadata returned as is by :func:`load_hidden_states` (the dense perplexity, ...).
    Returns:
        the entry's path.
    Raises:
        StorageError: the cache cannot be written.
    """
    corpora = list(states)
    arrays = {_name(c, b, k): np.ascontiguousarray(v, dtype=np.float32)
              for c, name in enumerate(corpora) for b, batch in enumerate(states[name]) for k, v in batch.items()}
    layout = {name: [sorted(int(k) for k in batch) for batch in states[name]] for name in corpora}
    head = {"cache_key": key, "version": STATES_VERSION, "corpora": corpora, "layout": layout, "meta": dict(meta)}
    blob = {"__meta__": np.array(to_json(head)), **arrays}
    return write_atomically(states_path(key), lambda fh: np.savez(fh, **blob), binary=True, hint=CACHE_HINT)


def load_hidden_states(key: str) -> tuple[dict[str, list[dict[int, np.ndarray]]], dict[str, Any]] | None:
    """``(states, meta)`` stored under ``key`` by :func:`save_hidden_states`, or ``None`` when absent or unusable.

    ``states`` is ``{corpus: [{block: float32 array} per batch]}`` in the stored order. An entry that cannot be
    read whole (truncated, bad CRC, another key or version, a missing or non-finite array) gives a notice
    on stderr and ``None``.
    """
    path = states_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            head = json.loads(str(data["__meta__"]))
            if head.get("cache_key") != key or head.get("version") != STATES_VERSION:
                raise ValueError("entry stored under another key or version")
            states: dict[str, list[dict[int, np.ndarray]]] = {}
            for c, name in enumerate(head["corpora"]):
                states[name] = []
                for b, blocks in enumerate(head["layout"][name]):
                    batch = {}
                    for k in blocks:
                        arr = data[_name(c, b, k)]
                        if arr.dtype != np.float32 or arr.ndim != 3 or not np.isfinite(arr).all():
                            raise ValueError(f"state {_name(c, b, k)} is {arr.dtype} {arr.shape} or not finite")
                        batch[int(k)] = arr
                    states[name].append(batch)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        reason = type(exc).__name__ + (f": {exc}" if isinstance(exc, ValueError) and str(exc) else "")
        notice(f"cached hidden states {path} are unreadable ({reason[:200]}); recomputing them")
        return None
    return states, head["meta"]


__all__ = ["STATES_VERSION", "load_hidden_states", "save_hidden_states", "states_path"]
