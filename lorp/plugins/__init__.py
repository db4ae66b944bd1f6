"""Layer 3, the plugin machinery: what a plugin registers, the hooks, and the registry.

``components`` (the component types: similarity metrics, clustering algorithms,
allocation strategies, corpora, model adapters), ``hookspecs`` (the pluggy
contract), ``registry`` (loads builtins, entry points and local plugin files),
``guard`` (runs plugin code so that it cannot end a run silently) and ``code`` (each
plugin's code string, which keys what it computed).
The builtin plugins themselves live in :mod:`lorp.builtins`, above the stages they
register. Imports only ``lorp.store`` and the base modules, never ``run`` or ``study``.
"""
