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

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from ..errors import PluginError, UnknownNameError
from ..paths import PLUGINS_DIR
from ..version import __version__
from . import hookspecs
from .code import builtin_code, entry_point_code, local_file_code
from .components import (AllocationStrategy, ClusteringAlgorithm, Component, CorpusSource, Healer, ModelAdapter,
                         SimilarityMetric)
from .guard import describe_error, import_local_plugin, probe_plugin_imports

#: Builtin plugin modules, registered through the same hooks as any plugin.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "lorp.builtins.similarity",
    "lorp.builtins.clustering",
    "lorp.builtins.allocation",
    "lorp.builtins.baselines",
    "lorp.builtins.ablations",
    "lorp.builtins.selectors",
    "lorp.builtins.heal_selector",
    "lorp.builtins.corpora",
    "lorp.builtins.adapters",
    "lorp.builtins.healers",
)


ENTRY_POINT_GROUP = "lorp"


_KINDS: dict[type, tuple[str, str]] = {
    SimilarityMetric: ("similarity", "lorp_register_similarity_metrics"),
    ClusteringAlgorithm: ("clustering", "lorp_register_clustering_algorithms"),
    AllocationStrategy: ("allocation", "lorp_register_allocation_strategies"),
    CorpusSource: ("corpus", "lorp_register_corpora"),
    ModelAdapter: ("adapter", "lorp_register_model_adapters"),
    Healer: ("healer", "lorp_register_healers"),
}


_KIND_LABELS = {"similarity": "similarity metric", "clustering": "clustering algorithm",
                "allocation": "allocation strategy", "corpus": "corpus", "adapter": "model adapter",
                "healer": "healer"}


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

    def healer(self, name: str) -> Healer:
        """The healer called ``name``; :class:`UnknownNameError` if none."""
        return self._get("healer", name)  # type: ignore[return-value]

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
                raise PluginError(f"entry-point plugin {ep.name!r} ({ep.value}) failed to load: {describe_error(exc)}; "
                                  f"uninstall it or skip it with --deny-plugin {ep.name}") from None
            _register(pm, plugin, ep.name)
            dist = ep.dist
            infos.append(PluginInfo(ep.name, f"entry point ({dist.name if dist else '?'})",
                                    dist.version if dist else "unknown", code=entry_point_code(ep)))
        for path in files:
            module = import_local_plugin(path)
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
                raise PluginError(f"plugin {plugin_name!r} failed in {hook_name}: {describe_error(exc)}") from None

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
