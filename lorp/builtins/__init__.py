"""lorp's builtin plugins.

Each module here is a plugin like any third-party one: it implements hooks from
:mod:`lorp.hookspecs` and is registered by :func:`lorp.plugins.load_registry`
from :data:`lorp.plugins.BUILTIN_PLUGINS`.
"""
