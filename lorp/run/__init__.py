"""Layer 7, running the method: cells, sweeps, executors and what they record.

``records`` (cell records), ``study_records`` (sweep and study records), ``fingerprint`` (local inputs keyed by content),
``pipeline`` (PruneConfig and the calibration pass), ``worker`` (one model's cells: select,
evaluate), ``cell_store`` (finished cells on disk), ``cells`` (orchestration of the unit of work),
``prune`` (``lorp prune``), ``executors`` (serial or Ray), ``sweep`` (methods ×
budgets × seeds), ``progress`` and ``provenance``. Imports every layer below,
nothing of :mod:`lorp.study`.
"""
