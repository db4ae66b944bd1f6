"""What a report records about the software that produced it."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys

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
