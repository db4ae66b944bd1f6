"""A healed pruned model on disk: standard weights, plus the residual-stream maps beside them (issue 46).

A healer that only changes weights (``linear``) leaves a standard architecture, saved and loaded by
``save_pretrained`` / ``from_pretrained`` as it is. A healer with residual-stream maps (``residual``,
:mod:`lorp.heal.residual`) leaves :class:`lorp.heal.residual.MappedBlock` wrappers that no standard weight can
hold. :func:`save_healed` then writes:

- the pruned model's own weights, the wrappers taken off (``save_pretrained``, unchanged names);
- ``heal_maps.safetensors``: one float32 ``[d, d]`` tensor per map, keyed ``"first-last"`` (the removed run, dense
  indices), its metadata giving the pruned model's block the map precedes;
- ``config.json`` with ``model_type`` replaced by a line that says why a plain
  ``AutoModelForCausalLM.from_pretrained`` must not load it (it would silently drop the maps) and what loads it:
  transformers' error quotes that line. The original type is kept under ``lorp_model_type``. (A concrete class,
  e.g. ``LlamaForCausalLM.from_pretrained``, reads no ``model_type``: it loads the weights with a warning and
  without the maps.)

:func:`load_healed` rebuilds the model from that folder: the same logits as the model that was saved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from ..errors import ConfigError
from ..model.blocks import find_blocks, set_blocks
from .residual import MappedBlock, StreamMap, stream_width, valid_map

#: The file beside the weights that holds the residual-stream maps.
HEAL_MAPS = "heal_maps.safetensors"
#: ``config.json``'s ``model_type`` of a saved model with residual-stream maps: the reason, for transformers' error.
REFUSED_MODEL_TYPE = ("lorp-residual-healed: its residual-stream maps (heal_maps.safetensors) fold into no weight, "
                      "so a plain from_pretrained would drop them; load it with lorp.load_healed(folder)")


def carried_stream_maps(model: nn.Module, registry=None) -> dict[int, StreamMap]:
    """``{block index in ``model``: its StreamMap}`` of every :class:`lorp.heal.residual.MappedBlock` in ``model``."""
    return {i: b.stream_map for i, b in enumerate(find_blocks(model, registry)[1]) if isinstance(b, MappedBlock)}


@contextmanager
def maps_taken_off(model: nn.Module, registry=None) -> Iterator[nn.Module]:
    """Inside the ``with``, ``model``'s blocks are the wrapped blocks themselves (a standard architecture, whose
    ``state_dict`` has the standard names); the wrappers are back afterwards (also on error)."""
    path, blocks = find_blocks(model, registry)
    try:
        set_blocks(model, path, nn.ModuleList([b.block if isinstance(b, MappedBlock) else b for b in blocks]))
        yield model
    finally:
        set_blocks(model, path, blocks)


def save_healed(model: nn.Module, folder: str | Path, registry=None) -> list[str]:
    """Save a pruned (and healed) ``model`` into ``folder`` with ``save_pretrained``; with residual-stream maps, as
    the module docstring says. Returns the map keys written (``["first-last", ...]``, empty: a standard model)."""
    folder = Path(folder)
    maps = carried_stream_maps(model, registry)
    if not maps:
        model.save_pretrained(folder)
        return []
    with maps_taken_off(model, registry):
        model.save_pretrained(folder)
    keys = {i: f"{m.run[0]}-{m.run[1]}" for i, m in maps.items()}
    save_file({keys[i]: m.t.detach().cpu().contiguous() for i, m in maps.items()}, str(folder / HEAL_MAPS),
              metadata={"format": "lorp.heal_maps", "version": "1", **{keys[i]: str(i) for i in maps}})
    config = json.loads((folder / "config.json").read_text())
    config["lorp_model_type"], config["model_type"] = config["model_type"], REFUSED_MODEL_TYPE
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return list(keys.values())


def load_healed(folder: str | Path, *, dtype: torch.dtype = torch.float32, registry=None) -> nn.Module:
    """The healed pruned model a ``lorp prune --heal NAME`` run saved, rebuilt: standard weights, and each
    residual-stream map (``heal_maps.safetensors``) wrapped around the block it precedes. Eval mode.

    Args:
        folder: the run folder (``--out``) or its ``model/`` folder (or a folder :func:`save_healed` wrote).
        dtype: the weights' dtype (the maps stay float32, as lorp applied them).
    Returns:
        the causal LM; without ``heal_maps.safetensors`` (no healer, or one that only changed weights) the plain
        ``from_pretrained`` model. Load the tokenizer from the same folder with ``AutoTokenizer``.
    Raises:
        ConfigError: ``folder`` does not exist or holds no saved model (a run with ``--no-save-model``);
            ``config.json`` marked as residual-healed without its maps file; weights saved by a plain
            ``save_pretrained`` of a model carrying maps (save it with :func:`save_healed`); or a maps file
            that cannot be read or that lorp did not write (:func:`read_heal_maps`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} does not exist; give a lorp prune run folder (its --out) or its model/ folder")
    if (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder} holds no saved model (config.json); give a lorp prune run folder that saved "
                          "its model, or its model/ folder")
    settings = json.loads((folder / "config.json").read_text())
    has_maps = (folder / HEAL_MAPS).is_file()
    if "lorp_model_type" in settings and not has_maps:
        raise ConfigError(f"{folder / 'config.json'} is marked as a residual-healed model, but {HEAL_MAPS} is missing "
                          "beside it, so its maps cannot be rebuilt; prune and heal again (lorp prune --heal residual)")
    mapped = [name for name in _weight_names(folder) if ".stream_map." in name]
    if mapped:
        raise ConfigError(f"{folder} was written by a plain save_pretrained of a model carrying residual-stream maps "
                          f"(weights such as {mapped[0]!r}), which no loader rebuilds; save such a model with "
                          "lorp.save_healed(model, folder)")
    if not has_maps:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    settings["model_type"] = settings.pop("lorp_model_type", settings.get("model_type"))
    config = AutoConfig.for_model(**settings)
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=dtype).eval()
    path, blocks = find_blocks(model, registry)
    maps = read_heal_maps(folder / HEAL_MAPS, len(blocks), stream_width(model))
    set_blocks(model, path, nn.ModuleList([MappedBlock(maps[i], b) if i in maps else b for i, b in enumerate(blocks)]))
    return model


def read_heal_maps(path: Path, num_blocks: int, d: int) -> dict[int, StreamMap]:
    """``{block index of the pruned model: StreamMap}`` from a maps file :func:`save_healed` wrote, checked.

    Raises:
        ConfigError: naming ``path``: it cannot be read; it is not lorp's format (``format``/``version``
            metadata); an entry whose key is not ``"first-last"`` or whose block index is missing or not a block of
            the model (``num_blocks``); two maps on one block; a map that is not a finite float ``[d, d]``; or no
            map at all.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"{path} cannot be read ({err}); the maps are lost: prune and heal again") from None
    if meta.get("format") != "lorp.heal_maps" or meta.get("version") != "1":
        raise ConfigError(f"{path} is not a maps file this lorp wrote (format {meta.get('format')!r}, version "
                          f"{meta.get('version')!r}; expected 'lorp.heal_maps', '1')")
    maps: dict[int, StreamMap] = {}
    for key, t in tensors.items():
        run, index = re.fullmatch(r"(\d+)-(\d+)", key), meta.get(key, "")
        if run is None or not index.isdigit() or not int(index) < num_blocks:
            raise ConfigError(f"{path}: entry {key!r} (block {index or 'missing'}) is not a map of a run of removed "
                              f"blocks before one of the model's {num_blocks} blocks; the file was changed")
        if int(index) in maps:
            raise ConfigError(f"{path}: two maps precede block {index}; the file was changed")
        if not valid_map(t, d):
            raise ConfigError(f"{path}: map {key!r} must be a finite float [{d}, {d}] tensor, got {tuple(t.shape)} "
                              f"{t.dtype}; the file was changed")
        maps[int(index)] = StreamMap(t, (int(run.group(1)), int(run.group(2))))
    if not maps:
        raise ConfigError(f"{path} holds no map; the file was changed")
    return maps


def _weight_names(folder: Path) -> list[str]:
    """Names of the weights saved in ``folder``'s safetensors files (the maps file aside), read from their headers."""
    names: list[str] = []
    for file in sorted(folder.glob("*.safetensors")):
        if file.name != HEAL_MAPS:
            with safe_open(str(file), framework="pt") as f:
                names += list(f.keys())
    return names


__all__ = ["HEAL_MAPS", "REFUSED_MODEL_TYPE", "carried_stream_maps", "load_healed", "maps_taken_off", "read_heal_maps",
           "save_healed"]
