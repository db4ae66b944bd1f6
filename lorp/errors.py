"""The one exception family lorp raises for bad input or missing resources.

Every user-facing failure is a :class:`LorpError` (or a subclass) whose message
says what was wrong and how to fix it. The CLI prints the message alone, without
a traceback, and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LorpError(Exception):
    """Base class of every error lorp raises on purpose."""


class ConfigError(LorpError, ValueError):
    """An argument or parameter has an invalid value (budget, K, path, ...)."""


class UnknownNameError(ConfigError, KeyError):
    """A component, model key or corpus name is not known.

    The message lists the known names and, where one is close, suggests it.
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = ""):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        plural = kind[:-1] + "ies" if kind.endswith("y") else kind[:-2] + "ora" if kind.endswith("us") else kind + "s"
        msg += f"; known {plural}: {', '.join(known) if known else '(none)'}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class ResourceUnavailableError(LorpError, RuntimeError):
    """A model, corpus or package cannot be obtained (offline, missing, corrupt)."""


class PluginError(LorpError, RuntimeError):
    """A plugin is malformed, collides with another plugin, or failed to load."""


class StorageError(LorpError, OSError):
    """An output folder or the cache cannot be written or read (read-only, full, missing, a mount point).

    The message names the path and the setting to change (``--out``, ``--reports``,
    ``$LORP_CACHE_DIR``).
    """


def os_reason(exc: OSError) -> str:
    """``"[Errno 30] Read-only file system"``-style text of an OS error, without the path repeated."""
    if exc.errno is not None and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return str(exc) or type(exc).__name__
