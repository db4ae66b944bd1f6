"""What every record shares: the schema names, how a loaded object says its kind, and the JSON checks.

See :mod:`lorp.run.records` (a cell's records) and :mod:`lorp.run.study_records` (a sweep's and a study's).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Schema names of the records (``results.json`` and the cell store say which they hold).
CELL_SCHEMA = "lorp.cell"
EVALUATION_SCHEMA = "lorp.evaluation"
SWEEP_SCHEMA = "lorp.sweep"
STUDY_SCHEMA = "lorp.study"
PRUNE_SCHEMA = "lorp.prune"


def schema_of(data: Any) -> str | None:
    """The record kind of a loaded JSON object (``"lorp.study"``, ``"lorp.prune"``, …), ``None`` if untagged.

    Results written before records were tagged are recognised by shape: a study's
    ``results.json`` has ``cells``, a pruning run's has ``pruned``.
    """
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("schema"), str):
        return data["schema"]
    if "cells" in data:
        return STUDY_SCHEMA
    if "pruned" in data and "perplexity" in data:
        return PRUNE_SCHEMA
    return None


def json_ready(obj: Any) -> Any:
    """JSON-ready copy: numpy arrays and scalars to lists and numbers, tuples to lists."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if isinstance(o, (np.ndarray, np.generic))
                                 else sorted(o) if isinstance(o, (set, frozenset)) else str(o)))


def check_record(cls: type, data: Any) -> dict[str, Any]:
    """``data`` if it is a record of ``cls`` (its ``SCHEMA``, a ``VERSION`` this lorp reads), else one
    :class:`lorp.errors.ConfigError` saying what it is instead."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a {cls.SCHEMA} record (a JSON object), got {type(data).__name__}")
    schema, version = data.get("schema"), data.get("version")
    if schema != cls.SCHEMA:
        raise ConfigError(f"expected a {cls.SCHEMA} record, got {schema or 'an untagged object'}")
    if not isinstance(version, int) or version > cls.VERSION:
        raise ConfigError(f"{cls.SCHEMA} record version {version!r} is newer than this lorp reads "
                          f"({cls.VERSION}); upgrade lorp")
    return data


def field_names(cls: type) -> set[str]:
    """The dataclass field names of a record class (what ``from_json`` keeps of a loaded object)."""
    return {f.name for f in fields(cls)}


__all__ = ["CELL_SCHEMA", "EVALUATION_SCHEMA", "PRUNE_SCHEMA", "STUDY_SCHEMA", "SWEEP_SCHEMA", "check_record",
           "field_names", "json_ready", "schema_of"]
