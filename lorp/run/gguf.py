"""A pruned run as a GGUF file: ``lorp prune --gguf PATH`` and ``lorp export-gguf RUN_FOLDER PATH`` (issue 45).

A run of a bundled model starts from that model's GGUF (:func:`lorp.model.models.bundled_gguf`), so its GGUF
keeps the kept blocks' quantised tensors bit for bit (:func:`lorp.model.gguf_export.export_pruned_gguf`). What
a healer changed (its weights, named by the dense model's parameters) is the only new data: mapped to the
source's GGUF names and layout and written in the healed type (F16 by default).

A run folder records the healed parameters' names (``results.json``: ``healing.weights``) and holds their values
in its saved model (``model/*.safetensors``, the blocks renumbered), so ``export-gguf`` needs neither the
calibration pass nor the healer again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors import safe_open

from ..errors import ConfigError
from ..model.gguf_export import DEFAULT_HEALED_TYPE, HEALED_TYPES, export_pruned_gguf, gguf_tensor_name, to_gguf_layout
from ..model.models import BUNDLED_MODELS, bundled_gguf, resolve_model
from .provenance import git_commit
from .record_schema import PRUNE_SCHEMA

#: A Hugging Face block parameter: ``<prefix>.layers.<index>.<rest>``.
LAYER_PARAMETER = re.compile(r"^(.*\blayers\.)(\d+)(\..+)$")


def pruned_parameter_name(name: str, kept: list[int]) -> str:
    """Dense parameter ``name`` as the pruned model calls it: block ``kept[j]`` is block ``j`` there
    (``model.layers.26.mlp.down_proj.weight`` with 4 earlier blocks removed -> ``model.layers.22.…``); a name
    outside the blocks is unchanged.

    Raises:
        ValueError: ``name`` is a parameter of a block not in ``kept``.
    """
    m = LAYER_PARAMETER.match(name)
    return f"{m.group(1)}{list(kept).index(int(m.group(2)))}{m.group(3)}" if m else name


def check_gguf_export(model_spec: str, target: str | Path, healed_type: str = DEFAULT_HEALED_TYPE) -> Path:
    """Before any work: the model is a bundled one (the source of the GGUF), ``target`` can be a file, and
    ``healed_type`` is known. Returns ``target`` as a path.

    Raises:
        ConfigError: a local or hub model (converting a checkpoint to GGUF is llama.cpp's job), a ``target`` that
            is a folder or inside a file, or a ``healed_type`` not in :data:`lorp.model.gguf_export.HEALED_TYPES`.
    """
    source = resolve_model(model_spec)
    if source.kind != "bundled":
        raise ConfigError(f"GGUF export starts from a bundled model's GGUF ({', '.join(BUNDLED_MODELS)}); {model_spec!r} "
                          f"is a {source.kind} model. Convert it with llama.cpp's convert_hf_to_gguf.py first, or "
                          "prune a bundled model")
    target = Path(target)
    if target.is_dir():
        raise ConfigError(f"GGUF path {target} is a folder; give a file path, e.g. {target / 'pruned.gguf'}")
    if any(p.exists() and not p.is_dir() for p in target.parents):
        raise ConfigError(f"GGUF path {target}: a parent of it is a file; give a path in a folder")
    if healed_type not in HEALED_TYPES:
        raise ConfigError(f"--gguf-type must be one of {', '.join(HEALED_TYPES)}, not {healed_type!r}")
    return target


def healed_gguf_tensors(source: Path, weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``{GGUF name in the source's numbering: float32 values in its layout}`` of a healer's ``weights``
    (``{dense model parameter name: tensor}``, as :class:`lorp.heal.fit.HealFit` holds them).

    Raises:
        ConfigError: a parameter without a GGUF name, or one whose GGUF layout lorp does not write
            (:func:`lorp.model.gguf_export.to_gguf_layout`).
    """
    reader = gguf.GGUFReader(source)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    blocks = int(reader.get_field(f"{arch}.block_count").contents())
    out = {}
    for name, value in weights.items():
        gguf_name = gguf_tensor_name(arch, name, blocks)
        values = value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        out[gguf_name] = to_gguf_layout(arch, gguf_name, values)
    return out


def export_run_gguf(results: Mapping[str, Any], healed: Mapping[str, Any], target: str | Path,
                    healed_type: str = DEFAULT_HEALED_TYPE) -> Path:
    """Write the GGUF of a ``lorp prune`` run: ``results`` (its ``results.json``) and ``healed`` (the healer's
    weights by dense parameter name; empty when unhealed). Returns ``target``.

    The file's ``general.lorp.*`` entries name the removed blocks, the source's sha256, the method, budget,
    healer, healed tensors and their type, and lorp's commit.

    Raises:
        ConfigError: the run's healer kept residual-stream maps (``healing.stream_maps``: they fold into no
            weight), or as :func:`check_gguf_export`, :func:`healed_gguf_tensors` and
            :func:`lorp.model.gguf_export.export_pruned_gguf`.
        ResourceUnavailableError: the bundled GGUF cannot be assembled.
    """
    healing = results.get("healing") or {}
    if healing.get("stream_maps"):
        raise ConfigError(f"healer {healing.get('healer')!r} repaired this run with residual-stream maps (removed "
                          f"runs {healing['stream_maps']}), which fold into no weight, so a GGUF file cannot hold "
                          "them; load the run with lorp.load_healed, or prune again with a foldable healer (linear)")
    spec = results["model"]["spec"]
    target = check_gguf_export(spec, target, healed_type)
    source = bundled_gguf(spec)
    note = {"method": results["config"]["allocation"], "budget": str(results["budget"]),
            "healer": healing.get("healer", "none"), "lorp_commit": str(results.get("git_commit") or git_commit())}
    return export_pruned_gguf(source, target, results["pruned"], note=note,
                              replaced=healed_gguf_tensors(source, healed), healed_type=healed_type)


def saved_healed_weights(folder: Path, results: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The healed parameters of run ``folder``, by dense parameter name, read from its saved model (whose blocks
    are renumbered: saved block ``j`` is dense block ``results["kept"][j]``).

    Raises:
        ConfigError: a healed run recorded before lorp listed its healed parameters, a run saved without its
            model, or a listed parameter missing from the saved model.
    """
    healing = results.get("healing")
    if not healing or healing.get("healer", "none") == "none":
        return {}
    if "weights" not in healing:
        raise ConfigError(f"run {folder} was healed by a lorp that did not record which weights its healer changed; "
                          "run lorp prune again (with --gguf PATH to write the GGUF at once)")
    if not healing["weights"]:
        return {}
    model_dir = folder / str(results.get("model_dir") or "model")
    files = sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    if not files:
        raise ConfigError(f"run {folder} holds no saved model ({model_dir}), so its healed weights are gone; run "
                          "lorp prune again without --no-save-model, or with --gguf PATH")
    wanted = {pruned_parameter_name(name, results["kept"]): name for name in healing["weights"]}
    out = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for key in set(f.keys()) & set(wanted):
                out[wanted[key]] = f.get_tensor(key)
    missing = sorted(set(wanted.values()) - set(out))
    if missing:
        raise ConfigError(f"run {folder}: healed parameters {missing[:3]} are not in its saved model {model_dir}")
    return out


def export_run_folder(folder: str | Path, target: str | Path, healed_type: str = DEFAULT_HEALED_TYPE) -> Path:
    """``lorp export-gguf RUN_FOLDER PATH``: the GGUF of the run ``lorp prune`` wrote in ``folder``.

    Raises:
        ConfigError: ``folder`` holds no ``lorp prune`` results.json, or as :func:`export_run_gguf` and
            :func:`saved_healed_weights`.
    """
    folder = Path(folder)
    path = folder / "results.json"
    if not path.is_file():
        raise ConfigError(f"{folder} holds no results.json; give a folder that lorp prune wrote (its --out)")
    try:
        results = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(results, dict) or results.get("schema") != PRUNE_SCHEMA:
        raise ConfigError(f"{path} is not a lorp prune result (schema {PRUNE_SCHEMA!r}); export-gguf takes a run "
                          "folder of lorp prune")
    return export_run_gguf(results, saved_healed_weights(folder, results), target, healed_type)


__all__ = ["LAYER_PARAMETER", "check_gguf_export", "export_run_folder", "export_run_gguf", "healed_gguf_tensors",
           "pruned_parameter_name", "saved_healed_weights"]
