"""Running plugin code so that it can neither end nor hijack a run silently.

:func:`import_local_plugin` imports a single-file plugin (afresh when the file changed since
this process imported it), :func:`probe_plugin_imports` imports new plugins once in a child
process so that one ending the process at import is named, and :func:`plugin_code` turns a
``sys.exit()`` inside a component into a :class:`lorp.errors.PluginError`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import PluginError, StorageError
from ..paths import cache_dir
from ..store.cache import cache_key, content_digest
from .code import local_file_code


def import_local_plugin(path: Path) -> ModuleType:
    """Import ``path`` as a top-level module named by its stem (so its objects pickle into workers).

    Whatever the file does at import, the result is that module or a
    :class:`PluginError` naming the file: an exception, ``sys.exit()`` or any
    other ``BaseException`` but Ctrl-C is caught. A file named like a module
    that is importable anyway (``numpy.py``, ``ray.py``) is refused, since loading
    it would shadow that module for the rest of the process.
    """
    name = path.stem
    existing = sys.modules.get(name)
    edited = False
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == path.resolve():
            if getattr(existing, "__lorp_code__", None) in (None, local_file_code(path)):
                return existing
            edited = True  # the file changed since this process imported it: run the new code
        else:
            raise PluginError(
                f"local plugin {path} is named {name!r}, which is already an imported module "
                f"({getattr(existing, '__file__', 'builtin')}); rename the file"
            )
    if not name.isidentifier():
        raise PluginError(f"local plugin {path} is not named like a Python module; rename it (letters, digits, _)")
    try:
        other = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        other = None
    if other is not None and Path(other.origin or "").resolve() != path.resolve():
        raise PluginError(f"local plugin {path} has the name of the importable module {name!r} ({other.origin}) "
                          "and would shadow it; rename the file")
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.append(folder)
    try:
        code = local_file_code(path)
        module = _run_source(name, path) if edited else importlib.import_module(name)
        module.__lorp_code__ = code
        return module
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001  (sys.exit() in a plugin must not end lorp silently)
        sys.modules.pop(name, None)
        raise PluginError(f"local plugin {path} failed to import: {describe_error(exc)}; fix or remove the file, "
                          "or skip it with --deny-plugin " + name) from None


def _run_source(name: str, path: Path) -> ModuleType:
    """Import ``path`` afresh from its source (not from a compiled cache that an edit in the same second can
    leave looking current), replacing the module of that name."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)  # noqa: S102  (the user's own plugin file)
    return module


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    try:
        return repr(exc)
    except Exception:  # noqa: BLE001  (an exception whose repr fails still gets named)
        return f"{type(exc).__name__} (unprintable)"


@contextlib.contextmanager
def plugin_code(what: str):
    """Run a plugin component's code; a ``sys.exit()`` inside it becomes a :class:`PluginError` naming ``what``.

    Ordinary exceptions pass through unchanged (lorp's own errors keep their
    message; a plugin's bug keeps its traceback).
    """
    try:
        yield
    except SystemExit as exc:
        raise PluginError(f"{what} {describe_error(exc)}, which would end lorp; a component must raise an error "
                          "instead") from None


_PROBE = """
import importlib, importlib.metadata, importlib.util, sys
for item in sys.argv[1:]:
    kind, _, target = item.partition(":")
    print("start", item, flush=True)
    try:
        if kind == "ep":
            next(ep for ep in importlib.metadata.entry_points(group="lorp") if ep.name == target).load()
        else:
            folder, _, stem = target.rpartition("/")
            sys.path.append(folder)
            spec = importlib.util.spec_from_file_location(stem, folder + "/" + stem + ".py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[stem] = module
            spec.loader.exec_module(module)
    except BaseException:  # ordinary failures are reported in-process, with their message
        pass
    print("done", item, flush=True)
"""


def probe_plugin_imports(entry_points: list, files: list[Path], timeout: float = 600) -> None:
    """Import the plugins once in a child process, so that one ending the process at import is named.

    ``sys.exit()`` and exceptions at import are caught in-process; ``os._exit()``,
    a crash or a signal cannot be, so lorp first imports every entry point and
    local file in a child Python and stops with a :class:`PluginError` naming the
    one during whose import the child ended. A clean probe is remembered in the
    cache under the files' contents and the distributions' versions, so it runs
    once per change.

    Raises:
        PluginError: a plugin ended the child process, or its import did not finish within ``timeout`` seconds.
    """
    if not entry_points and not files:
        return

    items = [f"ep:{ep.name}" for ep in entry_points] + [f"file:{p.parent.resolve()}/{p.stem}" for p in files]
    key = cache_key({"plugin-probe": items, "python": sys.executable,
                     "files": [content_digest(p) for p in files],
                     "dists": [f"{ep.dist.name}=={ep.dist.version}" if ep.dist else ep.value for ep in entry_points]})
    try:
        marker = cache_dir() / "plugin-probes" / key
        if marker.is_file():
            return
    except StorageError:
        marker = None
    import subprocess

    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, *items], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        lines, code = proc.stdout.splitlines(), proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        lines, code = out.splitlines(), None
    started = [ln.split(" ", 1)[1] for ln in lines if ln.startswith("start ")]
    finished = {ln.split(" ", 1)[1] for ln in lines if ln.startswith("done ")}
    culprit = next((item for item in started if item not in finished), None)
    if culprit is not None or code not in (0,):
        kind, _, target = (culprit or "file:?").partition(":")
        what = (f"entry-point plugin {target!r}" if kind == "ep" else
                f"local plugin {target.rpartition('/')[0]}/{target.rpartition('/')[2]}.py")
        how = (f"did not finish importing within {timeout:.0f} s" if code is None else
               f"ended the process at import (exit status {code}, e.g. os._exit() or a crash)")
        skip = target if kind == "ep" else target.rpartition("/")[2]
        raise PluginError(f"{what} {how}; fix or remove it, or skip it with --deny-plugin {skip}")
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass
