"""The on-disk cache: keys from the content of every input, entries that cannot lie.

Every entry under ``$LORP_CACHE_DIR`` (similarity matrices of calibration passes,
converted models, extracted data, zero-shot task files; sweep cells use the same
rules) follows three rules:

* **Keyed by content.** A key hashes every setting that changes the entry and,
  for a local text file or model folder, a digest of its *content*
  (:func:`input_fingerprint`), never just its path: rewrite the file and the old
  entry is no longer found.
* **Written as if another process wrote the same key at the same moment.** An
  entry is written under a unique temporary name in its final folder and moved
  into place with one ``os.replace`` (:func:`publish_folder` for folders), so a
  reader sees a whole entry or none, and two writers of one key each leave a
  whole entry (the last one wins; both are equal for a deterministic entry).
* **Checked when read.** A truncated, corrupt or partly written entry (a zip
  CRC, a JSON parse, a size or checksum in a manifest) is reported with a
  one-line notice on stderr and recomputed; it is never returned as data.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import to_json, write_text
from .errors import StorageError, os_reason
from .paths import cache_dir

#: Bump when the capture code changes the numbers it produces.
CAPTURE_VERSION = "1"
#: Name of the manifest that seals a cached folder (written last, inside the folder).
MANIFEST = ".lorp-manifest.json"
#: Files up to this size are checksummed in manifests; larger ones (model weights) are checked by size.
_HASHED_SIZE = 64 << 20
_CHUNK = 1 << 22


def notice(message: str) -> None:
    """Print one ``lorp: …`` line on stderr (a cache entry was unusable and is being recomputed)."""
    print(f"lorp: {message}", file=sys.stderr, flush=True)


def cache_key(fields: Mapping[str, Any]) -> str:
    """Stable 24-hex-digit key of ``fields`` (sha256 of sorted-key JSON, plus :data:`CAPTURE_VERSION`)."""
    blob = json.dumps({**fields, "capture_version": CAPTURE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and ".git" not in p.parts)


@functools.lru_cache(maxsize=64)
def _digest(path: str, stamp: tuple) -> str:
    root = Path(path)
    if root.is_file():
        return _file_sha256(root)
    digest = hashlib.sha256()
    for f in _files(root):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + _file_sha256(f).encode() + b"\n")
    return digest.hexdigest()


def content_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, or of a folder's relative file names and contents.

    Within one process the digest is remembered while every file keeps its size,
    modification time and inode; any rewrite hashes again.

    Raises:
        StorageError: the path cannot be read.
    """
    root = Path(path).resolve()
    try:
        files = [root] if root.is_file() else _files(root)
        stamp = tuple((str(f), (st := f.stat()).st_size, st.st_mtime_ns, st.st_ino) for f in files)
        return _digest(str(root), stamp)
    except OSError as exc:
        raise StorageError(f"cannot read {root} to fingerprint its content ({os_reason(exc)})") from None


def input_fingerprint(model: str, corpora: Iterable[str], registry=None) -> dict[str, str]:
    """Content digests of the *local* inputs of a run: a model folder and text-file corpora.

    Bundled models (pinned by GGUF sha256), hub ids and registered corpora are
    named by their spec alone and do not appear. The result goes into cache keys,
    so a changed local file gives new keys.

    Returns:
        ``{"model": sha256, "corpus:<path>": sha256, ...}`` (empty when nothing is local).
    """
    from .models import resolve_model
    from .plugins import default_registry

    out: dict[str, str] = {}
    source = resolve_model(model)
    if source.kind == "local":
        out["model"] = content_digest(source.location)
    registry = registry or default_registry()
    for name in dict.fromkeys(corpora):
        if name not in registry.components["corpus"] and Path(name).expanduser().is_file():
            out[f"corpus:{name}"] = content_digest(Path(name).expanduser())
    return out


# -- single files ----------------------------------------------------------------------------------------------

def atomic_write_bytes(path: Path, write) -> Path:
    """Create ``path`` through a uniquely named temporary file in its folder and ``os.replace``.

    ``write(fh)`` fills the open binary file. Safe with concurrent writers of the
    same path: each moves in a whole file.

    Raises:
        StorageError: the folder or file cannot be written (read-only, disk full, ...).
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise StorageError(f"cannot write the cache entry {path} ({os_reason(exc)}); free some space or set "
                           "LORP_CACHE_DIR to a writable folder") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def read_json(path: str | os.PathLike, what: str) -> Any | None:
    """The JSON in ``path``; ``None`` when it is missing or unreadable (with a notice for the latter).

    Args:
        what: what the file is, for the notice (e.g. ``"sweep cell"``).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError covers JSONDecodeError and UnicodeDecodeError
        notice(f"{what} {path} is unreadable ({type(exc).__name__}); recomputing it")
        return None


def seal_file(path: Path) -> None:
    """Write ``<path>.sha256`` (size and checksum), after ``path`` itself is in place."""
    record = {"size": path.stat().st_size, "sha256": _file_sha256(path)}
    write_text(path.with_name(path.name + ".sha256"), json.dumps(record) + "\n")


def file_is_sealed(path: Path) -> bool:
    """Whether ``path`` exists and matches its ``.sha256`` record (notice when it exists but does not)."""
    if not path.is_file():
        return False
    seal = path.with_name(path.name + ".sha256")
    try:
        record = json.loads(seal.read_text())
        ok = path.stat().st_size == record["size"] and _file_sha256(path) == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        notice(f"cache entry {path} is incomplete or changed; recomputing it")
    return ok


# -- folders --------------------------------------------------------------------------------------------------

def write_manifest(folder: Path, extra: Mapping[str, Any] | None = None) -> None:
    """Seal ``folder``: record every file's size (and sha256 up to 64 MiB) in :data:`MANIFEST`."""
    files = {}
    for f in _files(folder):
        size = f.stat().st_size
        files[f.relative_to(folder).as_posix()] = {"size": size, **(
            {"sha256": _file_sha256(f)} if size <= _HASHED_SIZE else {})}
    write_text(folder / MANIFEST, json.dumps({"files": files, **dict(extra or {})}, indent=1, sort_keys=True))


def folder_is_sealed(folder: Path, expect: Mapping[str, Any] | None = None) -> bool:
    """Whether ``folder`` holds exactly what its manifest lists (sizes, small files' sha256) and ``expect``.

    A folder that exists but fails the check gets a notice. ``expect`` entries must
    equal the manifest's extra fields (e.g. the GGUF checksum a model came from).
    """
    if not folder.is_dir():
        return False
    try:
        record = json.loads((folder / MANIFEST).read_text())
        files = record["files"]
        ok = all(record.get(k) == v for k, v in (expect or {}).items())
        present = {f.relative_to(folder).as_posix() for f in _files(folder)}
        ok = ok and present == set(files)
        for name, info in files.items() if ok else ():
            f = folder / name
            if f.stat().st_size != info["size"] or ("sha256" in info and _file_sha256(f) != info["sha256"]):
                ok = False
                break
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        notice(f"cache entry {folder} is incomplete or changed; rebuilding it")
    return ok


def publish_folder(tmp: Path, target: Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Seal the finished folder ``tmp`` and move it to ``target``, safely against concurrent builders.

    If another process published a sealed ``target`` meanwhile, ``tmp`` is dropped
    and theirs is kept. A stale (unsealed) ``target`` is moved aside first.

    Raises:
        StorageError: the folder cannot be written.
    """
    try:
        write_manifest(tmp, extra)
        for _ in range(3):
            try:
                os.replace(tmp, target)
                return target
            except OSError:
                if target.is_dir() and (target / MANIFEST).is_file() and folder_is_sealed(target, extra):
                    shutil.rmtree(tmp, ignore_errors=True)
                    return target
                if target.exists():
                    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale.", dir=target.parent))
                    with contextlib.suppress(OSError):
                        os.replace(target, aside / "old")
                    shutil.rmtree(aside, ignore_errors=True)
        os.replace(tmp, target)
        return target
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StorageError(f"cannot write the cache entry {target} ({os_reason(exc)}); free some space or set "
                           "LORP_CACHE_DIR to a writable folder") from None


def new_build_dir(target: Path) -> Path:
    """A uniquely named empty folder beside ``target`` to build it in (then :func:`publish_folder`).

    Raises:
        StorageError: the folder cannot be created.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".build", dir=target.parent))
        os.chmod(tmp, 0o755)
        return tmp
    except OSError as exc:
        raise StorageError(f"cannot write in the cache folder {target.parent} ({os_reason(exc)}); set "
                           "LORP_CACHE_DIR to a writable folder") from None


# -- similarity matrices of calibration passes ------------------------------------------------------------------

def _path(key: str) -> Path:
    return cache_dir() / "similarity" / f"{key}.npz"


def load_matrices(key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Return ``(matrices, meta)`` cached under ``key``, or ``None`` when absent or unusable.

    An entry that cannot be read whole (truncated, bad CRC, missing metadata, a
    key that does not match, a non-finite or non-square matrix) gives a notice and
    ``None``, so the caller recomputes it.
    """
    path = _path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            matrices = {k: np.asarray(data[k], dtype=np.float64) for k in data.files if k != "__meta__"}
            meta = json.loads(str(data["__meta__"]))
        if meta.get("cache_key", key) != key or not matrices:
            raise ValueError("entry stored under another key")
        for m in matrices.values():
            if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.isfinite(m).all():
                raise ValueError(f"matrix of shape {m.shape} or with non-finite values")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        notice(f"cached similarity {path} is unreadable ({type(exc).__name__}); recomputing it")
        return None
    meta.pop("cache_key", None)
    return matrices, meta


def save_matrices(key: str, matrices: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Store matrices (float64 ``[N, N]`` each) and JSON metadata under ``key``, atomically.

    Raises:
        StorageError: the cache cannot be written.
    """
    blob = {"__meta__": np.array(to_json({**dict(meta), "cache_key": key})),
            **{k: np.asarray(v, dtype=np.float64) for k, v in matrices.items()}}
    return atomic_write_bytes(_path(key), lambda fh: np.savez(fh, **blob))


__all__ = [
    "CAPTURE_VERSION", "MANIFEST", "atomic_write_bytes", "cache_key", "content_digest", "file_is_sealed",
    "folder_is_sealed", "input_fingerprint", "load_matrices", "new_build_dir", "notice", "publish_folder",
    "read_json", "save_matrices", "seal_file", "write_manifest",
]
