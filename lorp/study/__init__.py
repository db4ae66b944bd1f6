"""Layer 8, the study: notebook parameters, presets, the per-model results and every report rendered from them.

``parameters`` (the notebooks' parameters to a sweep), ``variants`` (presets),
``load`` (sweep folders to study results), ``formatting`` (how numbers are written),
``compare`` (LoRP against its best baseline: winners, verdict), ``tables`` (the report
tables), ``explain`` (the plain-language reading and why), ``figures``, ``ablation``,
``attribution``, ``sensitivity``, ``costs`` and ``runner`` (runs the notebooks with papermill).
"""
