"""What a report records about the software that produced it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from ..paths import CHECKOUT, REPO_ROOT
from ..version import __version__

_PACKAGES = ("torch", "transformers", "scikit-learn", "numpy", "pluggy", "datasets", "papermill", "lm-eval")


def package_versions() -> dict[str, str]:
    """Versions of Python, lorp and the libraries that shape results."""
    out = {"python": platform.python_version(), "lorp": __version__}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` if its code or settings are modified), or ``None`` outside git or for
    an installed package.

    Changes under ``reports/`` do not count: a study rewrites the committed
    reports as it goes, so without this every model after the first would be
    marked ``-dirty`` although the code that computed it is the commit's.
    """
    if not CHECKOUT:  # an installed package: its folder may sit inside someone else's git repository
        return None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


#: The tracked paths whose content can change a study's number (issue 43): the package, the notebooks, the
#: example plugins and the dependency pins. Reports, docs, tests and benchmarks cannot.
CODE_PATHS = ("lorp", "notebooks", "plugins", "pyproject.toml")


def _digest(files: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for name, path in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def code_hash() -> str:
    """A 16-hex-digit SHA-256 of the code that can change a study's number: the content, as it is on disk, of
    every git-tracked file under :data:`CODE_PATHS` (uncommitted edits count, untracked files and ``reports/``
    do not), each with its path. Equal hashes mean the same code whatever the commit, so committing reports
    does not change it.

    An installed package (no checkout) hashes its own files instead (``*.py``, ``*.ipynb``, ``*.yaml``, ``*.json``),
    prefixed ``installed-``: never equal to a checkout's hash, on purpose.

    Raises:
        OSError, subprocess.CalledProcessError: only from a checkout whose git cannot list its files.
    """
    if not CHECKOUT:
        package = Path(__file__).resolve().parent.parent
        files = [(str(p.relative_to(package)), p) for p in package.rglob("*")
                 if p.is_file() and p.suffix in (".py", ".ipynb", ".yaml", ".json") and "__pycache__" not in p.parts]
        return "installed-" + _digest(files)
    listed = subprocess.run(["git", "ls-files", "-z", "--", *CODE_PATHS], cwd=REPO_ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    return _digest([(name, REPO_ROOT / name) for name in listed if name and (REPO_ROOT / name).is_file()])


def machine() -> dict[str, str]:
    """A short description of the machine."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "argv": " ".join(sys.argv[:1]),
    }
