"""Read a similarity matrix S from a file, for ``lorp select`` (selection from a saved S, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def read_similarity(path: Path) -> np.ndarray:
    """Read an ``[N, N]`` matrix from ``.npy``, a JSON list of lists, or a results.json ``similarity``.

    Raises:
        ConfigError: missing or unreadable file, or no matrix inside.
    """
    if not path.is_file():
        raise ConfigError(f"similarity file {path} does not exist")
    try:
        with open(path, "rb") as fh:
            is_npy = fh.read(6) == b"\x93NUMPY"
        if is_npy:
            data = np.load(path, allow_pickle=False)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data = data["similarity"]
        if np.iscomplexobj(data):
            raise ValueError("the matrix holds complex numbers")
        return np.asarray(data, dtype=np.float64)
    except (ValueError, KeyError, TypeError, OSError, UnicodeDecodeError) as exc:
        reason = type(exc).__name__ + (f": {str(exc)[:120]}" if not isinstance(exc, UnicodeDecodeError) else "")
        raise ConfigError(f"cannot read a numeric similarity matrix from {path} ({reason}); "
                          "give a .npy file, a JSON list of lists, or a lorp results.json") from None


__all__ = ["read_similarity"]
