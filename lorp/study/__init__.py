"""Layer 8, the study: notebook parameters, presets, reports, figures and their analyses.

``parameters`` (the notebooks' parameters to a sweep), ``variants`` (presets),
``report`` (tables, winners, verdict), ``figures``, ``ablation``, ``attribution``,
``sensitivity``, ``costs`` and ``runner`` (runs the notebooks with papermill).
"""
