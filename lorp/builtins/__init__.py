"""Layer 6, lorp's builtin plugins: registered exactly as a third-party plugin is.

Each module here is a plugin like any third-party one: it implements hooks from
:mod:`lorp.plugins.hookspecs` and is registered by :func:`lorp.plugins.registry.load_registry`
from :data:`lorp.plugins.registry.BUILTIN_PLUGINS`.

A builtin may import the stage it registers (``lorp.method``, ``lorp.model``,
``lorp.evaluate``), so this package sits above them; the registry loads it by
module name, never by import. A new builtin clustering algorithm goes in
``clustering.py`` here; a clustering plugin of your own goes in ``plugins/`` at the
repository root or in a package with a ``lorp`` entry point (``docs/plugins.md``).
"""
