"""Where lorp keeps its files: the cache directory, the notebooks, the reports and the local plugins.

The cache (converted models, downloaded wheels, extracted data, similarity
matrices) lives in ``$LORP_CACHE_DIR`` if set, else ``~/.cache/lorp``.

In a source checkout (the folder above the package holds ``pyproject.toml`` and
``notebooks/lorp_study.ipynb``) the notebooks, ``reports/`` and ``plugins/`` are the
checkout's own. In an installed package (``pip install lorp``, not editable) the notebooks and
``variants.yaml`` are the copies shipped in the wheel (``lorp/notebooks/``), and reports and local
plugins go to ``reports/`` and ``plugins/`` under the directory lorp runs from.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StorageError, os_reason

#: Root of the source checkout (holds ``notebooks/``, ``plugins/``, ``reports/``); for an installed package, the
#: folder that holds the package.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Whether lorp runs from a source checkout (editable install or ``pythonpath``) rather than an installed wheel.
CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "notebooks" / "lorp_study.ipynb").is_file()
#: The study notebooks and ``variants.yaml``: the checkout's, else those shipped in the package.
NOTEBOOKS_DIR = REPO_ROOT / "notebooks" if CHECKOUT else Path(__file__).resolve().parent / "notebooks"
#: Default reports folder and local plugins folder: the checkout's, else under the working directory at import.
REPORTS_DIR = REPO_ROOT / "reports" if CHECKOUT else Path.cwd() / "reports"
PLUGINS_DIR = REPO_ROOT / "plugins" if CHECKOUT else Path.cwd() / "plugins"


def report_name(model: str) -> str:
    """Folder name of a model's report (and default run folders): the model argument with ``/`` made safe."""
    return model.rstrip("/").replace("/", "--").lstrip(".-") or "model"


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
