"""Layer 5, healing: training-free repair of a pruned model, beside :mod:`lorp.method` and :mod:`lorp.evaluate`.

``fit`` runs a registered :class:`lorp.Healer` on the dense model and checks what it returns
(names, shapes, kept blocks only, finite values) before anything is written; ``apply`` writes the
checked weights. The healers themselves are plugins (:mod:`lorp.builtins.healers`).
"""
