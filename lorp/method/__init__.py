"""Layer 5, the LoRP method (arXiv 2605.27786), one stage per file.

``capture`` (similarity S of block inputs, eqs. 3-4), ``locality`` (RLS and K,
eqs. 5-6), ``clustering`` (eq. 7), ``allocation`` (the two-stage budget
allocation, eqs. 8-11) and ``selection`` (the stages chained). Beside
:mod:`lorp.evaluate`; neither imports the other.
"""
