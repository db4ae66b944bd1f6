"""Layer 5, evaluation of dense and pruned models.

``perplexity`` (windows, calibration NLL, single-block removal), ``zeroshot``
(lm-evaluation-harness, offline), ``speed`` (FLOPs and decode speed) and
``uncertainty`` (conventions and shared resampling), ``perplexity_uncertainty`` and
``accuracy_uncertainty`` (paired intervals and tests). Beside :mod:`lorp.method`; neither
imports the other.
"""
