"""What a plugin's code is, as a string that changes when the code does: the key of everything it computed.

A cached result that a plugin's component produced (a similarity matrix, a sweep
cell) holds the code string of that plugin, so a plugin edited between two runs
is recomputed, never served from the old code's cache:

* a builtin: lorp's version and :data:`BUILTIN_CODE_VERSION` (bump it when a
  builtin's output changes: ``docs/cache.md``);
* a local plugin file: the sha256 of the file;
* an entry-point plugin: its distribution's name and version, plus the sha256 of
  its module's ``.py`` files when the install is editable or the version is a
  development version (code that changes without a new version number).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

from ..store.cache import file_sha256
from ..version import __version__

#: Bump when a builtin component's output changes (a builtin's cached results are keyed by it).
BUILTIN_CODE_VERSION = 1


def builtin_code() -> str:
    """Code string of lorp's builtin plugins: ``"lorp 0.1.0, builtins 1"``."""
    return f"lorp {__version__}, builtins {BUILTIN_CODE_VERSION}"


def local_file_code(path: Path) -> str:
    """Code string of a single-file plugin: ``"sha256:<hex>"`` of the file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    return f"sha256:{file_sha256(Path(path))}"


def python_files_digest(origin: Path) -> str:
    """sha256 (hex) of a module's source: the file itself, or every ``.py`` file of its package folder.

    Compiled files (``__pycache__``) are left out, so importing the module does not change it.
    """
    if origin.name != "__init__.py":
        return file_sha256(origin)
    root = origin.parent
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + file_sha256(f).encode() + b"\n")
    return digest.hexdigest()


def editable(dist: importlib.metadata.Distribution) -> bool:
    """Whether ``dist`` is installed in editable (development) mode, from its ``direct_url.json`` (PEP 610)."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except (ValueError, OSError):
        return False
    return bool((info.get("dir_info") or {}).get("editable"))


def development_version(version: str) -> bool:
    """Whether a version string names a development release (``1.0.dev3``, ``0.2.0.dev0+g1234``)."""
    return re.search(r"\.?dev\d*", version or "") is not None


def entry_point_code(ep: importlib.metadata.EntryPoint) -> str:
    """Code string of an entry-point plugin: ``"<dist> <version>"``, plus ``", sha256:<hex>"`` of its
    module's source when the install is editable, the version a development one, or the distribution unknown.
    """
    dist = ep.dist
    base = f"{dist.name} {dist.version}" if dist is not None else f"entry point {ep.value}"
    if dist is not None and not editable(dist) and not development_version(dist.version):
        return base
    spec = importlib.util.find_spec(ep.module)
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return base
    return f"{base}, sha256:{python_files_digest(Path(spec.origin))}"
