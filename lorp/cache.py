"""On-disk cache of calibration results, keyed by everything that changes them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import to_json
from .paths import cache_dir

#: Bump when the capture code changes the numbers it produces.
CAPTURE_VERSION = "1"


def cache_key(fields: Mapping[str, Any]) -> str:
    """Stable hex digest of ``fields`` (JSON, sorted keys)."""
    blob = json.dumps({**fields, "capture_version": CAPTURE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _path(key: str) -> Path:
    return cache_dir() / "similarity" / f"{key}.npz"


def load_matrices(key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Return ``(matrices, meta)`` cached under ``key``, or ``None``."""
    path = _path(key)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        matrices = {k: data[k] for k in data.files if k != "__meta__"}
        meta = json.loads(str(data["__meta__"]))
    return matrices, meta


def save_matrices(key: str, matrices: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Store matrices (float64 ``[N, N]`` each) and JSON metadata under ``key``, atomically."""
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, __meta__=np.array(to_json(dict(meta))), **{k: np.asarray(v) for k, v in matrices.items()})
    tmp.replace(path)
    return path


__all__ = ["cache_key", "load_matrices", "save_matrices"]
