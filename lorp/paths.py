"""Where lorp keeps its files: the cache directory and the repository folders.

The cache (converted models, downloaded wheels, extracted data, similarity
matrices) lives in ``$LORP_CACHE_DIR`` if set, else ``~/.cache/lorp``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StorageError, os_reason

#: Root of the source checkout (holds ``notebooks/``, ``plugins/``, ``reports/``).
REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
REPORTS_DIR = REPO_ROOT / "reports"
PLUGINS_DIR = REPO_ROOT / "plugins"


def cache_dir() -> Path:
    """Return the cache directory (created if missing).

    Reads ``$LORP_CACHE_DIR`` at call time, so tests and users may redirect it.

    Raises:
        StorageError: the folder cannot be created (read-only, a file in the way, ...).
    """
    root = Path(os.environ.get("LORP_CACHE_DIR") or Path.home() / ".cache" / "lorp")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the lorp cache folder {root} ({os_reason(exc)}); set LORP_CACHE_DIR "
                           "to a writable folder") from None
    return root
