"""Layer 2, storage: atomic writes and the content-keyed, checked on-disk cache.

``atomic`` (a result appears whole or not at all) and ``cache`` (keys, sealed
folders, checked JSON and similarity matrices) and ``hidden_states`` (the dense
pass of evaluation windows, computed once and loaded by every later scorer). Knows nothing of models or
plugins; imports only ``lorp.errors`` and ``lorp.paths``.
"""
