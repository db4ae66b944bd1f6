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
  transformers' error quotes that line. The original type is kept under ``lorp_model_type``.

:func:`load_healed` rebuilds the model from that folder: the same logits as the model that was saved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from ..errors import ConfigError
from ..model.blocks import find_blocks, set_blocks
from .residual import MappedBlock, StreamMap

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
        folder: the run folder (``--out``) or its ``model/`` folder.
        dtype: the weights' dtype (the maps stay float32, as lorp applied them).
    Returns:
        the causal LM; without ``heal_maps.safetensors`` (no healer, or one that only changed weights) the plain
        ``from_pretrained`` model. Load the tokenizer from the same folder with ``AutoTokenizer``.
    Raises:
        ConfigError: no saved model in ``folder`` (a run with ``--no-save-model``), or a maps file whose block
            index is not a block of the model.
    """
    folder = Path(folder)
    if (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder} holds no saved model (config.json); give a lorp prune run folder that saved "
                          "its model, or its model/ folder")
    if not (folder / HEAL_MAPS).is_file():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    settings = json.loads((folder / "config.json").read_text())
    settings["model_type"] = settings.pop("lorp_model_type")
    config = AutoConfig.for_model(**settings)
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=dtype).eval()
    path, blocks = find_blocks(model, registry)
    new = list(blocks)
    with safe_open(str(folder / HEAL_MAPS), framework="pt") as f:
        meta = f.metadata()
        for key in f.keys():
            first, last = (int(x) for x in key.split("-"))
            index = int(meta[key])
            if not 0 <= index < len(new):
                raise ConfigError(f"{folder / HEAL_MAPS}: map {key} precedes block {index}, but the model has "
                                  f"{len(new)} blocks; the folder is not one lorp wrote")
            new[index] = MappedBlock(StreamMap(f.get_tensor(key), (first, last)), new[index])
    set_blocks(model, path, nn.ModuleList(new))
    return model


__all__ = ["HEAL_MAPS", "REFUSED_MODEL_TYPE", "carried_stream_maps", "load_healed", "maps_taken_off", "save_healed"]
