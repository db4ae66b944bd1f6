"""A sweep's tidy table: one row per (method, budget, seed, healer, corpus), dense first, as ``table.csv`` and
``table.json``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..store.atomic import write_json, write_text
from .records import CellResult, Evaluation


def sweep_table(cells: list[CellResult], dense: Evaluation, seeds: bool = False, healers: bool = False
           ) -> list[dict[str, Any]]:
    """Tidy rows: dense first, then one per (cell, corpus); a ``seed`` column when the sweep has several seeds,
    a ``healer`` column when it heals."""
    extra = (lambda s: {"seed": s}) if seeds else (lambda s: {})
    heal = (lambda h: {"healer": h}) if healers else (lambda h: {})
    rows = [{"method": "dense", "budget": 0, **extra(None), **heal("none"), "corpus": c, "perplexity": v.perplexity,
             "tokens": v.tokens, "parameters": dense.parameters, "pruned": ""} for c, v in dense.perplexity.items()]
    for cell in cells:
        for corpus, v in cell.perplexity.items():
            rows.append({"method": cell.method, "budget": cell.budget, **extra(cell.spec.seed),
                         **heal(cell.spec.healer), "corpus": corpus,
                         "perplexity": v.perplexity, "tokens": v.tokens, "parameters": cell.evaluation.parameters,
                         "pruned": " ".join(map(str, cell.pruned))})
    return rows


def write_table(folder: Path, rows: list[dict[str, Any]]) -> None:
    """``table.csv`` and ``table.json`` (atomic)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / "table.csv", buf.getvalue())
    write_json(folder / "table.json", rows)


__all__ = ["sweep_table", "write_table"]
