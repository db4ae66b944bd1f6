"""Plugin manager and component registry.

Nothing happens at import: :func:`load_registry` builds a fresh pluggy manager,
adds the hook specs, registers the builtin plugins (the same way a third-party
plugin registers), then, unless auto-loading is switched off, the entry-point
group ``lorp`` and every ``*.py`` file in the local plugin folders.

Environment variables (read by :meth:`PluginSettings.from_env`):

* ``LORP_DISABLE_PLUGIN_AUTOLOAD=1``: load builtins only (reproducible runs).
* ``LORP_PLUGINS_DIR``: extra local plugin folders, ``os.pathsep``-separated.
* ``LORP_DENY_PLUGINS``: comma-separated plugin names never to load.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from ..errors import PluginError, StorageError, UnknownNameError
from ..paths import PLUGINS_DIR, cache_dir
from ..store.cache import cache_key, content_digest
from ..version import __version__
from . import hookspecs
from .code import builtin_code, entry_point_code, local_file_code
from .components import (AllocationStrategy, ClusteringAlgorithm, Component, CorpusSource, ModelAdapter,
                         SimilarityMetric)

#: Builtin plugin modules, registered through the same hooks as any plugin.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "lorp.builtins.similarity",
    "lorp.builtins.clustering",
    "lorp.builtins.allocation",
    "lorp.builtins.baselines",
    "lorp.builtins.ablations",
    "lorp.builtins.selectors",
    "lorp.builtins.corpora",
    "lorp.builtins.adapters",
)
ENTRY_POINT_GROUP = "lorp"

_KINDS: dict[type, tuple[str, str]] = {
    SimilarityMetric: ("similarity", "lorp_register_similarity_metrics"),
    ClusteringAlgorithm: ("clustering", "lorp_register_clustering_algorithms"),
    AllocationStrategy: ("allocation", "lorp_register_allocation_strategies"),
    CorpusSource: ("corpus", "lorp_register_corpora"),
    ModelAdapter: ("adapter", "lorp_register_model_adapters"),
}


_KIND_LABELS = {"similarity": "similarity metric", "clustering": "clustering algorithm",
                "allocation": "allocation strategy", "corpus": "corpus", "adapter": "model adapter"}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PluginSettings:
    """Which plugins to load.

    Attributes:
        autoload: load entry-point and local-file plugins (builtins always load).
        plugin_dirs: folders whose ``*.py`` files are loaded as plugins.
        deny: plugin names never to load (entry-point names or file stems).
    """

    autoload: bool = True
    plugin_dirs: tuple[Path, ...] = (PLUGINS_DIR,)
    deny: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, **overrides: Any) -> PluginSettings:
        """Settings from the ``LORP_*`` environment variables, then ``overrides``."""
        dirs = [PLUGINS_DIR] + [Path(p) for p in os.environ.get("LORP_PLUGINS_DIR", "").split(os.pathsep) if p]
        deny = frozenset(n.strip() for n in os.environ.get("LORP_DENY_PLUGINS", "").split(",") if n.strip())
        values: dict[str, Any] = {
            "autoload": not _truthy(os.environ.get("LORP_DISABLE_PLUGIN_AUTOLOAD")),
            "plugin_dirs": tuple(dirs),
            "deny": deny,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["plugin_dirs"] = tuple(Path(p) for p in values["plugin_dirs"])
        values["deny"] = frozenset(values["deny"])
        return cls(**values)


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin: its name, where it came from, its version, what it provides."""

    name: str
    source: str  # "builtin", "entry point (dist)", or "local file PATH"
    version: str
    components: tuple[str, ...] = ()
    code: str = ""  # changes when the plugin's code does (lorp.plugins.code); keys what it computed


@dataclass(frozen=True)
class RegisteredComponent:
    """A component together with the plugin that registered it."""

    kind: str
    component: Component
    plugin: str


@dataclass
class Registry:
    """Components by kind and name, plus the plugins that provided them."""

    components: dict[str, dict[str, RegisteredComponent]] = field(
        default_factory=lambda: {kind: {} for kind, _ in _KINDS.values()}
    )
    plugins: list[PluginInfo] = field(default_factory=list)

    def _get(self, kind: str, name: str) -> Component:
        table = self.components[kind]
        if name not in table:
            raise UnknownNameError(
                _KIND_LABELS[kind],
                name,
                table,
                hint="Run `lorp plugins` to list what is loaded.",
            )
        return table[name].component

    def similarity(self, name: str) -> SimilarityMetric:
        """The similarity metric called ``name``; :class:`UnknownNameError` if none."""
        return self._get("similarity", name)  # type: ignore[return-value]

    def clustering(self, name: str) -> ClusteringAlgorithm:
        """The clustering algorithm called ``name``; :class:`UnknownNameError` if none."""
        return self._get("clustering", name)  # type: ignore[return-value]

    def allocation(self, name: str) -> AllocationStrategy:
        """The allocation strategy called ``name``; :class:`UnknownNameError` if none."""
        return self._get("allocation", name)  # type: ignore[return-value]

    def corpus(self, name: str) -> CorpusSource:
        """The corpus source called ``name``; :class:`UnknownNameError` if none."""
        return self._get("corpus", name)  # type: ignore[return-value]

    def adapters(self) -> list[ModelAdapter]:
        """Model adapters in registration order (builtins first)."""
        return [entry.component for entry in self.components["adapter"].values()]  # type: ignore[misc]

    def provenance(self, kind: str, name: str) -> dict[str, str]:
        """``{"name", "version", "plugin", "plugin_version", "source", "code"}`` of a registered component.

        ``code`` is the plugin's code string (:mod:`lorp.plugins.code`): what cached results are keyed by.
        """
        entry = self.components[kind][name]
        info = next(p for p in self.plugins if p.name == entry.plugin)
        return {
            "name": name,
            "version": getattr(entry.component, "version", ""),
            "plugin": info.name,
            "plugin_version": info.version,
            "source": info.source,
            "code": info.code,
        }


def _import_local_plugin(path: Path) -> ModuleType:
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
        raise PluginError(f"local plugin {path} failed to import: {_describe(exc)}; fix or remove the file, "
                          "or skip it with --deny-plugin " + name) from None


def _run_source(name: str, path: Path) -> ModuleType:
    """Import ``path`` afresh from its source (not from a compiled cache that an edit in the same second can
    leave looking current), replacing the module of that name."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)  # noqa: S102  (the user's own plugin file)
    return module


def _describe(exc: BaseException) -> str:
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
        raise PluginError(f"{what} {_describe(exc)}, which would end lorp; a component must raise an error "
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


def build_plugin_manager(settings: PluginSettings | None = None) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Build a fresh plugin manager with builtins and (optionally) third-party plugins.

    Returns:
        The manager and a list of :class:`PluginInfo` (components not yet filled).
    Raises:
        PluginError: a plugin failed to import or implements a hook that does not
            exist (misspelled hook names are errors, via ``check_pending``).
    """
    settings = settings or PluginSettings.from_env()
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []

    for modname in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
        infos.append(PluginInfo(modname, "builtin", __version__, code=builtin_code()))

    if settings.autoload:
        eps = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in settings.deny]
        files = [path for folder in settings.plugin_dirs if folder.is_dir() for path in sorted(folder.glob("*.py"))
                 if not path.name.startswith("_") and path.stem not in settings.deny]
        probe_plugin_imports(eps, [p for p in files if p.stem not in sys.modules])
        for ep in eps:
            try:
                plugin = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001  (a plugin's sys.exit() must not end lorp silently)
                raise PluginError(f"entry-point plugin {ep.name!r} ({ep.value}) failed to load: {_describe(exc)}; "
                                  f"uninstall it or skip it with --deny-plugin {ep.name}") from None
            _register(pm, plugin, ep.name)
            dist = ep.dist
            infos.append(PluginInfo(ep.name, f"entry point ({dist.name if dist else '?'})",
                                    dist.version if dist else "unknown", code=entry_point_code(ep)))
        for path in files:
            module = _import_local_plugin(path)
            _register(pm, module, path.stem)
            infos.append(PluginInfo(path.stem, f"local file {path}", str(getattr(module, "__version__", "local")),
                                    code=local_file_code(path)))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc} (is the hook name misspelled? see lorp.plugins.hookspecs)") from exc
    return pm, infos


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    if pm.has_plugin(name):
        raise PluginError(f"two plugins are named {name!r}; rename one or deny it with LORP_DENY_PLUGINS")
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc


def load_registry(settings: PluginSettings | None = None) -> Registry:
    """Load every plugin and collect its components into a :class:`Registry`.

    Raises:
        PluginError: a plugin failed to load, a hook name is misspelled, a
            registered object has the wrong type, or two plugins register the
            same component name (the message names both plugins).
    """
    pm, infos = build_plugin_manager(settings)
    registry = Registry()
    provided: dict[str, list[str]] = {info.name: [] for info in infos}

    for cls, (kind, hook_name) in _KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                raise PluginError(f"plugin {plugin_name!r} declares {hook_name} as a hook wrapper; lorp's hooks take "
                                  "plain implementations: use @lorp.hookimpl without wrapper=/hookwrapper=")

            def register(component: object, _kind=kind, _cls=cls, _plugin=plugin_name) -> None:
                if not isinstance(component, _cls):
                    raise PluginError(
                        f"plugin {_plugin!r} registered a {type(component).__name__} through the "
                        f"{_kind} hook; expected lorp.{_cls.__name__}"
                    )
                table = registry.components[_kind]
                if component.name in table:
                    raise PluginError(
                        f"{_kind} component {component.name!r} is registered by both "
                        f"{table[component.name].plugin!r} and {_plugin!r}; rename one or deny a "
                        "plugin with LORP_DENY_PLUGINS"
                    )
                table[component.name] = RegisteredComponent(_kind, component, _plugin)  # type: ignore[arg-type]
                provided.setdefault(_plugin, []).append(f"{_kind}:{component.name}")

            try:
                impl.function(register)
            except (PluginError, KeyboardInterrupt):
                raise
            except BaseException as exc:  # noqa: BLE001  (a plugin's sys.exit() must not end lorp silently)
                raise PluginError(f"plugin {plugin_name!r} failed in {hook_name}: {_describe(exc)}") from None

    registry.plugins = [
        PluginInfo(i.name, i.source, i.version, tuple(provided.get(i.name, ())), i.code) for i in infos
    ]
    return registry


@functools.lru_cache(maxsize=8)
def _cached_registry(settings: PluginSettings) -> Registry:
    return load_registry(settings)


def default_registry() -> Registry:
    """The registry for the current ``LORP_*`` environment, loaded once per distinct setting.

    Functions that take an optional ``registry`` argument use this when it is
    ``None``. Pass an explicit registry (from :func:`load_registry`) for full control.
    """
    return _cached_registry(PluginSettings.from_env())
