"""Whether a committed study's numbers may be reused by this checkout: every part of their key, checked.

``lorp study --add`` (:mod:`lorp.study.add`) puts a plugin's rows beside a committed study and reuses
every number that study holds, but only where each part of the number's key matches this checkout:

* **the model's content**: a bundled model's pinned GGUF sha256 (a local folder or a hub id cannot be
  checked against the record, so its study is recomputed);
* **the windows and items**: the evaluation corpora's sources (package and version) and the settings that
  place the windows and draw the items;
* **the calibration draw**: the calibration corpus's source, sequences, length and run seeds;
* **the code of each component**: lorp's version and each plugin's code stamp (:mod:`lorp.plugins.code`),
  those of the compared allocation strategies, the similarity metric and the clustering algorithm, the
  ones the cells were keyed by: a change elsewhere in lorp's tree does not void the numbers.

:func:`reuse_mismatches` returns one line per part that differs, saying what and why (e.g.
``"lorp 0.1.1 ≠ 0.1.0: every baseline recomputed"``); an empty list means every committed number is reused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import LorpError
from ..model.data import load_corpus
from ..model.models import BUNDLED_MODELS
from ..plugins.registry import Registry
from ..run.study_records import StudyResult
from ..run.sweep import SweepConfig, shared_settings
from ..version import __version__

#: What a mismatch costs: the model's whole study is computed again at this checkout.
RECOMPUTED = "every baseline recomputed"


def _component(results: StudyResult, kind: str, name: str) -> Mapping[str, Any]:
    """The committed provenance of component ``name`` (``plugins`` for allocation strategies, ``plugins_used``
    for the similarity metric and the clustering algorithm); empty when not recorded."""
    if kind == "allocation":
        return results.plugins.get(name) or results.plugins_used.get(f"allocation:{name}") or {}
    used = results.plugins_used.get(kind) or {}
    return used if used.get("name") == name else {}


def _corpus_source(name: str, registry: Registry) -> str | None:
    try:
        return load_corpus(name, registry).source
    except LorpError:
        return None


def reuse_mismatches(results: StudyResult, config: SweepConfig, registry: Registry) -> list[str]:
    """The parts of the committed study's key that differ in this checkout, one line each (empty: all match).

    Args:
        results: the committed ``results.json``.
        config: the sweep the committed parameters give at this checkout (:func:`lorp.study.parameters.study_config`).
        registry: this checkout's plugins.
    Returns:
        lines such as ``"lorp 0.1.1 ≠ 0.1.0: every baseline recomputed"``, in the order model, windows and
        items, calibration draw, code.
    """
    out = []
    spec = config.base.model
    committed_sha = (results.model or {}).get("gguf_sha256")
    if spec not in BUNDLED_MODELS:
        out.append(f"model {spec!r} is not a bundled model, so its content cannot be checked against the committed "
                   f"record: {RECOMPUTED}")
    elif committed_sha != BUNDLED_MODELS[spec].sha256:
        out.append(f"model {spec} GGUF sha256 {BUNDLED_MODELS[spec].sha256[:12]} ≠ {str(committed_sha)[:12]}: "
                   f"{RECOMPUTED}")
    shared = shared_settings(config.base)
    now_settings = {**shared, "budgets": list(config.budgets), "seeds": list(config.cell_seeds),
                    "detail_budgets": list(config.detail_budgets)}
    for k, v in now_settings.items():
        if k in results.config and results.config[k] != v:
            out.append(f"study setting {k} {v!r} ≠ {results.config[k]!r}: {RECOMPUTED}")
    for corpus, record in sorted((results.evaluation or {}).items()):
        now = _corpus_source(corpus, registry)
        if now != record.get("source"):
            out.append(f"evaluation corpus {corpus} {now} ≠ {record.get('source')}: {RECOMPUTED}")
    calib = results.calibration.get("source") if results.calibration else None
    if calib is not None and (now := _corpus_source(config.base.calibration, registry)) != calib:
        out.append(f"calibration corpus {config.base.calibration} {now} ≠ {calib}: {RECOMPUTED}")
    committed_lorp = (results.versions or {}).get("lorp")
    if committed_lorp != __version__:
        out.append(f"lorp {__version__} ≠ {committed_lorp}: {RECOMPUTED}")
    parts = [("allocation", m) for m in results.config.get("methods", [])]
    parts += [("similarity", config.base.similarity), ("clustering", config.base.clustering)]
    for kind, name in parts:
        stored = _component(results, kind, name).get("code")
        try:
            now = registry.provenance(kind, name).get("code")
        except LorpError:
            now = None
        if stored != now:
            out.append(f"{kind} {name} code {now or 'not registered here'} ≠ {stored or 'none recorded'}: {RECOMPUTED}")
    if results.confirmation is None or not any(c.window_nll for c in results.cells):
        out.append(f"the committed study holds no per-window NLL or confirmation windows (an older protocol): "
                   f"{RECOMPUTED}")
    return out


__all__ = ["RECOMPUTED", "reuse_mismatches"]
