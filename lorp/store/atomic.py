"""Atomic writes: a result appears whole under its final name or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StorageError, os_reason


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _finite(obj: Any) -> Any:
    """Replace non-finite floats (inf, nan) by ``None`` so the output is strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Serialise ``obj`` to indented, strict JSON.

    numpy arrays and scalars become lists and numbers; non-finite floats
    (e.g. an infinite RLS) become ``null``.
    """
    plain = json.loads(json.dumps(obj, default=_json_default, allow_nan=True))
    return json.dumps(_finite(plain), indent=2, allow_nan=False)


def write_atomically(path: str | os.PathLike, write, *, binary: bool = False,
                     hint: str = "choose a writable location with free space") -> Path:
    """Create ``path`` through a uniquely named temporary file in its folder and one ``os.replace``.

    ``write(fh)`` fills the open file (text in UTF-8, or binary). Concurrent
    writers of one path each move in a whole file; a reader never sees a partial one.

    Raises:
        StorageError: the folder or file cannot be written (read-only, disk full, ...);
            the message names ``path`` and ends with ``hint``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise StorageError(f"cannot write {path} ({os_reason(exc)}); {hint}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`write_atomically`).

    Raises:
        StorageError: the folder or file cannot be written (read-only, disk full, ...).
    """
    return write_atomically(path, lambda fh: fh.write(text))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as JSON to ``path``."""
    return write_text(path, to_json(obj) + "\n")


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; on success it replaces ``final``.

    On any exception the temporary folder is removed and ``final`` is left as it
    was, so a failed run leaves no half-written output. An existing ``final`` is
    replaced only once the new one is complete.
    """
    final = Path(final)
    check_output_location(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent)) / "old"
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError as exc:
        if old is not None and not final.exists():
            with contextlib.suppress(OSError):
                os.replace(old, final)  # put the previous output back
        raise StorageError(f"cannot move the finished output into {final} ({os_reason(exc)}); "
                           "choose another output folder") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old.parent, ignore_errors=True)


def check_output_location(final: str | os.PathLike) -> None:
    """Check, before any work, that an output folder ``final`` can be created or replaced.

    Creates the parent folder and a probe folder in it (removed at once).

    Raises:
        StorageError: ``final`` is a mount point (it cannot be replaced by a rename),
            a file, or its parent folder cannot be written.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise StorageError(f"output folder {final} is a file; choose another output folder")
    if final.is_dir() and os.path.ismount(final):
        raise StorageError(f"output folder {final} is a mount point, which a finished run cannot replace; "
                           f"choose a folder inside it, e.g. {final / 'run'}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".probe", dir=final.parent)
        os.rmdir(probe)
    except OSError as exc:
        raise StorageError(f"cannot write the output folder {final} ({os_reason(exc)}); choose a writable "
                           "output folder") from None
