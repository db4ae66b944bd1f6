"""What a cell worker hands back: a selection, a failure record, and the key an evaluation is stored under."""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..store.cache import cache_key
from .records import CellFailure, CellSpec, EvalSettings


def cell_failure(spec: CellSpec, stage: str, exc: BaseException) -> CellFailure:
    """A :class:`lorp.run.records.CellFailure` for ``spec``: the stage that raised, the error in one line and its
    traceback."""
    return CellFailure(spec, stage, f"{type(exc).__name__}: {exc}",
                       "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


@dataclass(frozen=True)
class Selected:
    """A cell's selection as a worker returns it.

    Attributes:
        spec: the cell.
        selection: :class:`lorp.method.selection.Selection`.
        seconds: selection wall time.
        nll_passes: ``{"full", "partial"}`` forwards of a model-scoring strategy, else ``None``.
        plugin: provenance of the strategy's plugin.
    """

    spec: CellSpec
    selection: Any
    seconds: float
    nll_passes: dict[str, int] | None
    plugin: dict[str, Any]


def evaluation_key(model: Mapping[str, Any], removed: Iterable[int], settings: EvalSettings,
                   code: Mapping[str, str] | None = None, healing: Mapping[str, Any] | None = None) -> str:
    """Key of an evaluation: the model's identity, the sorted removed blocks, the evaluation settings and
    the code of the registered evaluation corpora (:func:`lorp.run.fingerprint.evaluation_code`); for a
    healed model also ``healing``: the healer, its settings, its plugin's code and the calibration draw it
    was fitted on (:meth:`lorp.run.cell_store.CellStore.healing_key`). Unhealed keys are as before healing
    existed."""
    ident = {k: model.get(k) for k in ("spec", "model_type", "num_parameters", "gguf_sha256", "dtype")}
    return cache_key({"evaluation": 1, "model": ident, "removed": sorted(int(b) for b in removed),
                      "settings": settings.to_json(), "code": dict(code or {}),
                      **({"healing": dict(healing)} if healing else {})})



__all__ = ["Selected", "cell_failure", "evaluation_key"]
