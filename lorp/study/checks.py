"""Every check of one model's study parameters, before any notebook runs (``lorp study`` runs it for each model)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..model.data import load_corpus
from ..plugins.registry import default_registry
from ..run.healing import check_healers
from ..run.pipeline import block_metric
from ..store.atomic import check_output_location
from ..store.cache import check_cache_writable
from .ablation import ablation_config, names
from .parameters import evidence_settings, study_config


def check_study_parameters(params: Mapping[str, Any]) -> None:
    """Check one model's study parameters before any notebook runs: types, values, names, and the model.

    Raises:
        ConfigError, UnknownNameError: a wrong type or value, an unknown method,
            metric, clustering, corpus or zero-shot task, or a budget the model cannot
            take (its block count is read from the bundled table or config.json).
    """
    params_for_config = {k: v for k, v in params.items() if k not in ("preset", "out_dir", "work_dir")}
    config = study_config(params_for_config)
    check_cache_writable()
    if params.get("work_dir"):
        check_output_location(Path(params["work_dir"]))
    base = config.base
    registry = default_registry()
    strategies = [registry.allocation(m) for m in config.methods]
    for key in ("seed_methods", "detail_methods"):  # filters on the compared methods, but no unknown names
        for m in names(params.get(key, "")):
            registry.allocation(m)
    ablations, selectors = names(params.get("ablations", "")), names(params.get("selectors", ""))
    if ablations or selectors:
        ablation_config(params_for_config, ablations, selectors)
        strategies += [registry.allocation(m) for m in (*ablations, *selectors)]
    if any(s.uses_clusters for s in strategies):
        registry.clustering(base.clustering)
    block_metric(registry, base.similarity)
    check_healers(registry, params.get("healers", ""), "the study parameter healers")
    evidence = evidence_settings(params_for_config)
    for name in (base.calibration, *base.eval_corpora, *evidence["calibration_corpora"]):
        if name not in registry.components["corpus"]:
            load_corpus(name, registry)  # a text file: read and split now, so a bad path fails here
    base.check_against_model(config.budgets)


__all__ = ["check_study_parameters"]
