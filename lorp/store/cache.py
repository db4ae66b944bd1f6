"""The on-disk cache: keys from the content of every input, entries that cannot lie.

Every entry under ``$LORP_CACHE_DIR`` (similarity matrices of calibration passes,
converted models, extracted data, zero-shot task files; sweep cells use the same
rules) follows three rules:

* **Keyed by content.** A key hashes every setting that changes the entry and,
  for a local text file or model folder, a digest of its *content* in place of
  its path (:func:`content_digest`, applied by :mod:`lorp.run.fingerprint`):
  rewrite the file and the old entry is no longer found; copy it elsewhere and the entry is still found.
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

from ..errors import StorageError, os_reason
from ..paths import cache_dir
from .atomic import to_json, write_atomically, write_json, write_text

#: Bump when the capture code changes the numbers it produces.
CAPTURE_VERSION = "1"
#: Name of the manifest that seals a cached folder (written last, inside the folder).
MANIFEST = ".lorp-manifest.json"
_CHUNK = 1 << 22


def notice(message: str) -> None:
    """Print one ``lorp: …`` line on stderr (a cache entry was unusable and is being recomputed)."""
    print(f"lorp: {message}", file=sys.stderr, flush=True)


def cache_key(fields: Mapping[str, Any]) -> str:
    """Stable 24-hex-digit key of ``fields`` (sha256 of sorted-key JSON, plus :data:`CAPTURE_VERSION`)."""
    blob = json.dumps({**fields, "capture_version": CAPTURE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file, remembered within the process while its size, mtime and inode stay the same.

    Raises:
        OSError: the file cannot be read.
    """
    st = path.stat()
    return _sha256_of(str(path.resolve()), (st.st_size, st.st_mtime_ns, st.st_ino))


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, _stamp: tuple) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST and ".git" not in p.parts)


def content_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, or of a folder's relative file names and contents.

    Each file's checksum is remembered within the process while it keeps its
    size, modification time and inode (:func:`file_sha256`); any rewrite hashes again.

    Raises:
        StorageError: the path cannot be read.
    """
    root = Path(path).resolve()
    try:
        if root.is_file():
            return file_sha256(root)
        digest = hashlib.sha256()
        for f in _files(root):
            digest.update(f.relative_to(root).as_posix().encode() + b"\0" + file_sha256(f).encode() + b"\n")
        return digest.hexdigest()
    except OSError as exc:
        raise StorageError(f"cannot read {root} to fingerprint its content ({os_reason(exc)})") from None


# -- single files ----------------------------------------------------------------------------------------------

#: What to do about an OS error writing the cache, ending every such message.
CACHE_HINT = "free some space or set LORP_CACHE_DIR to a writable folder"


def cache_write_error(path: Path, exc: OSError) -> StorageError:
    """The one-line error for an OS error writing the cache entry ``path``."""
    return StorageError(f"cannot write the cache entry {path} ({os_reason(exc)}); {CACHE_HINT}")


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


def _payload_sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_checked_json(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Atomically write the JSON object ``obj`` with a ``"sha256"`` of its other fields, for :func:`read_checked_json`.

    Raises:
        StorageError: the file cannot be written.
    """
    plain = json.loads(to_json({k: v for k, v in obj.items() if k != "sha256"}))
    return write_json(path, {**plain, "sha256": _payload_sha256(plain)})


def read_checked_json(path: str | os.PathLike, what: str, required: Iterable[str] = ()) -> dict[str, Any] | None:
    """The object written by :func:`write_checked_json`, or ``None`` if missing, unreadable or changed.

    A file that exists but does not parse, lacks a ``required`` field or whose
    ``"sha256"`` does not match its content (truncated, edited, written by an older
    lorp) gets a one-line notice, and ``None`` so the caller recomputes it.
    """
    obj = read_json(path, what)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        problem = "not a JSON object"
    elif obj.get("sha256") != _payload_sha256({k: v for k, v in obj.items() if k != "sha256"}):
        problem = "its checksum does not match its content"
    elif any(k not in obj for k in required):
        problem = f"it lacks {sorted(k for k in required if k not in obj)}"
    else:
        return obj
    notice(f"{what} {path} is unusable ({problem}); recomputing it")
    return None


def seal_file(path: Path) -> None:
    """Write ``<path>.sha256`` (size and checksum), after ``path`` itself is in place."""
    record = {"size": path.stat().st_size, "sha256": file_sha256(path)}
    write_text(path.with_name(path.name + ".sha256"), json.dumps(record) + "\n")


def file_is_sealed(path: Path) -> bool:
    """Whether ``path`` exists and matches its ``.sha256`` record (notice when it exists but does not)."""
    if not path.is_file():
        return False
    seal = path.with_name(path.name + ".sha256")
    try:
        record = json.loads(seal.read_text())
        ok = path.stat().st_size == record["size"] and file_sha256(path) == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        notice(f"cache entry {path} is incomplete or changed; recomputing it")
    return ok


# -- folders --------------------------------------------------------------------------------------------------

def write_manifest(folder: Path, extra: Mapping[str, Any] | None = None) -> None:
    """Seal ``folder``: record every file's size and sha256 in :data:`MANIFEST`."""
    files = {f.relative_to(folder).as_posix(): {"size": f.stat().st_size, "sha256": file_sha256(f)}
             for f in _files(folder)}
    write_text(folder / MANIFEST, json.dumps({"files": files, **dict(extra or {})}, indent=1, sort_keys=True))


def folder_is_sealed(folder: Path, expect: Mapping[str, Any] | None = None, *, quiet: bool = False) -> bool:
    """Whether ``folder`` holds exactly what its manifest lists (names, sizes, sha256) and ``expect``.

    A folder that exists but fails the check gets a notice. Checksums are
    remembered within the process while files keep their size, mtime and inode,
    so a second check of the same folder costs a ``stat`` per file. ``expect`` entries must
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
            if f.stat().st_size != info["size"] or file_sha256(f) != info["sha256"]:
                ok = False
                break
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok and not quiet:
        notice(f"cache entry {folder} is incomplete or changed; rebuilding it")
    return ok


def sealed_member(folder: Path, name: str, expect: Mapping[str, Any] | None = None) -> Path | None:
    """``folder / name`` if the folder's manifest lists it with this size and sha256 (and ``expect`` matches).

    A cheap check of one file of a sealed folder (e.g. a converted model's
    ``config.json``) that does not hash the rest (its weights). ``None`` otherwise.
    """
    try:
        record = json.loads((folder / MANIFEST).read_text())
        info = record["files"][name]
        member = folder / name
        if (all(record.get(k) == v for k, v in (expect or {}).items()) and member.stat().st_size == info["size"]
                and file_sha256(member) == info["sha256"]):
            return member
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


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
                if target.is_dir() and folder_is_sealed(target, extra, quiet=True):
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
        raise cache_write_error(target, exc) from None


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
        raise cache_write_error(target.parent, exc) from None


def check_cache_writable() -> Path:
    """Check, before any work, that the cache folder exists or can be made, and takes files.

    Raises:
        StorageError: it cannot be created or written (names ``$LORP_CACHE_DIR``).
    """
    root = cache_dir()
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StorageError(f"cannot write in the lorp cache folder {root} ({os_reason(exc)}); set LORP_CACHE_DIR "
                           "to a writable folder") from None
    return root


# -- similarity matrices of calibration passes ------------------------------------------------------------------

def _path(key: str) -> Path:
    return cache_dir() / "similarity" / f"{key}.npz"


def load_matrices(key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Return ``(matrices, meta)`` cached under ``key``, or ``None`` when absent or unusable.

    An entry that cannot be read whole (truncated, bad CRC, missing metadata, a
    key or checksum that does not match, a non-finite or non-square matrix) gives
    a notice and ``None``, so the caller recomputes it.
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
        if "sha256" in meta and meta["sha256"] != _matrices_sha256(matrices):
            raise ValueError("checksum does not match the matrices")
        for m in matrices.values():
            if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.isfinite(m).all():
                raise ValueError(f"matrix of shape {m.shape} or with non-finite values")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        reason = type(exc).__name__ + (f": {exc}" if isinstance(exc, ValueError) and str(exc) else "")
        notice(f"cached similarity {path} is unreadable ({reason[:200]}); recomputing it")
        return None
    meta.pop("cache_key", None)
    meta.pop("sha256", None)
    return matrices, meta


def _matrices_sha256(matrices: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(matrices):
        m = np.ascontiguousarray(matrices[name], dtype=np.float64)
        digest.update(f"{name}:{m.shape}".encode() + m.tobytes())
    return digest.hexdigest()


def save_matrices(key: str, matrices: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Store matrices (float64 ``[N, N]`` each) and JSON metadata under ``key``, atomically.

    Raises:
        StorageError: the cache cannot be written.
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in matrices.items()}
    blob = {"__meta__": np.array(to_json({**dict(meta), "cache_key": key, "sha256": _matrices_sha256(arrays)})),
            **arrays}
    return write_atomically(_path(key), lambda fh: np.savez(fh, **blob), binary=True, hint=CACHE_HINT)


__all__ = [
    "CACHE_HINT", "CAPTURE_VERSION", "MANIFEST", "cache_key", "cache_write_error", "check_cache_writable",
    "content_digest", "file_is_sealed", "file_sha256",
    "folder_is_sealed", "load_matrices", "new_build_dir", "notice", "publish_folder",
    "read_checked_json", "read_json", "save_matrices", "seal_file", "sealed_member", "write_checked_json",
    "write_manifest",
]
