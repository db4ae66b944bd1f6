"""How a run's inputs enter cache keys: local files by content, plugins by their code, the rest by name.

Above :mod:`lorp.store.cache` (which hashes bytes and knows nothing of models or
plugins), because telling a local input from a bundled model, a hub id or a
registered corpus needs the model resolver and the plugin registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..model.models import resolve_model
from ..plugins.registry import Registry, default_registry
from ..store.cache import content_digest


def content_id(spec: str, kind: str, registry=None) -> str:
    """How an input enters cache keys: by name, or for a local input by its content alone.

    Args:
        spec: a ``--model`` or corpus argument.
        kind: ``"model"`` or ``"corpus"``.
    Returns:
        ``"sha256:<hex>"`` of a local model folder's or text file's content (so a
        copy elsewhere has the same id, and a rewrite a new one); otherwise
        ``spec`` (bundled models are pinned by their GGUF sha256, registered corpora
        by their package versions, hub ids by id).
    """
    if kind == "model":
        source = resolve_model(spec)
        return f"sha256:{content_digest(source.location)}" if source.kind == "local" else spec
    registry = registry or default_registry()
    if spec not in registry.components["corpus"] and Path(spec).expanduser().is_file():
        return f"sha256:{content_digest(Path(spec).expanduser())}"
    return spec


def model_fields(spec: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """How a loaded model enters cache keys (calibration passes, cached dense hidden states):
    ``{"model": content_id(spec), "model_info": {model_type, num_parameters, gguf_sha256, dtype}}``,
    the last from the loader's ``info`` (:attr:`lorp.model.models.LoadedModel.info`)."""
    return {"model": content_id(spec, "model"),
            "model_info": {k: info.get(k) for k in ("model_type", "num_parameters", "gguf_sha256", "dtype")}}


def input_fingerprint(model: str, corpora: Iterable[str], registry=None) -> dict[str, str]:
    """Content ids of the *local* inputs of a run, by argument: ``{"model": "sha256:…", "<path>": "sha256:…"}``.

    Empty when nothing is local. Recorded in sweep folders, so a refusal can name
    the input whose content changed.
    """
    out = {}
    if (mid := content_id(model, "model")) != model:
        out["model"] = mid
    for name in dict.fromkeys(corpora):
        if (cid := content_id(name, "corpus", registry)) != name:
            out[name] = cid
    return out


def component_code(registry: Registry, kind: str, name: str) -> str:
    """The code string of the plugin that registered component ``name`` of ``kind`` (:mod:`lorp.plugins.code`)."""
    return registry.provenance(kind, name)["code"]


def cell_code(registry: Registry, method: str, *, similarity: str, clustering: str, calibration: str,
              eval_corpora: Iterable[str] = ()) -> dict[str, str]:
    """The code a cell of allocation strategy ``method`` depends on: ``{"<kind>:<name>": code string}``.

    The strategy itself; the similarity metric of S and every statistic the strategy reads
    (``needs``); the clustering algorithm when the strategy clusters; the calibration corpus
    and the evaluation corpora that are registered corpora (a text file enters the sweep's
    identity by its content).
    A cached cell whose code differs from this is recomputed (:class:`lorp.run.cell_store.CellStore`).

    Raises:
        UnknownNameError: a component is not registered.
    """
    strategy = registry.allocation(method)
    out = {f"allocation:{method}": component_code(registry, "allocation", method)}
    for metric in dict.fromkeys((similarity, *strategy.needs)):
        out[f"similarity:{metric}"] = component_code(registry, "similarity", metric)
    if strategy.uses_clusters:
        out[f"clustering:{clustering}"] = component_code(registry, "clustering", clustering)
    for corpus in dict.fromkeys((calibration, *eval_corpora)):
        if corpus in registry.components["corpus"]:
            out[f"corpus:{corpus}"] = component_code(registry, "corpus", corpus)
    return out


def evaluation_code(registry: Registry, eval_corpora: Iterable[str]) -> dict[str, str]:
    """The code an evaluation depends on: ``{"corpus:<name>": code string}`` of each registered evaluation corpus.

    Part of an evaluation's key (:func:`lorp.run.worker.evaluation_key`), so a corpus plugin that now gives
    other text is evaluated anew; who chose the removed blocks is not part of it.
    """
    return {f"corpus:{c}": component_code(registry, "corpus", c) for c in dict.fromkeys(eval_corpora)
            if c in registry.components["corpus"]}


def healing_inputs(registry: Registry, base: Any, healers: Iterable[str]) -> dict[str, Any]:
    """What every healed evaluation's key holds beside the healer's name and settings
    (:meth:`lorp.run.cell_store.CellStore.healing_key`): ``{"codes": {healer: code string}, "calibration":
    {"corpus", "samples", "seq_len"}}`` (the seed is the cell's). ``none`` has no entry.

    Raises:
        UnknownNameError: a healer is not registered.
    """
    healed = [h for h in dict.fromkeys(healers) if h != "none"]
    return {"codes": {h: component_code(registry, "healer", h) for h in healed},
            "calibration": {"corpus": base.calibration, "samples": base.num_samples, "seq_len": base.seq_len}}
