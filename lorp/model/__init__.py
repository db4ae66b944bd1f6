"""Layer 4, models and text: load a causal LM, find and remove its blocks, read corpora.

``models`` (bundled real models, local folders, hub ids), ``assets`` (files inside
registry packages), ``data`` (corpora, calibration samples, evaluation windows),
``blocks`` (where a model keeps its decoder blocks) and ``pruning`` (remove blocks).
"""
