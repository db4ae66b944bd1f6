"""Where a causal LM keeps its transformer blocks (through the model-adapter plugins)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, PluginError
from ..plugins.guard import plugin_code
from ..plugins.registry import default_registry


def find_blocks(model: nn.Module, registry=None) -> tuple[str, nn.ModuleList]:
    """Return ``(dotted_path, blocks)`` of the model's decoder blocks.

    Asks each registered :class:`lorp.ModelAdapter` in turn (builtins first:
    ``model.layers``, ``transformer.h``, ``gpt_neox.layers``, ``model.decoder.layers``).

    Raises:
        ConfigError: no adapter recognises the model.
        PluginError: an adapter broke its contract (wrong return value, ``sys.exit()``).
    """
    adapters = (registry or default_registry()).adapters()

    for adapter in adapters:
        with plugin_code(f"model adapter {adapter.name!r}"):
            found = adapter.find_blocks(model)
        if found is not None:
            if not (isinstance(found, tuple) and len(found) == 2 and isinstance(found[0], str)
                    and isinstance(found[1], nn.ModuleList) and len(found[1]) > 0):
                raise PluginError(f"model adapter {adapter.name!r} must return (dotted path, non-empty "
                                  f"nn.ModuleList) or None, got {type(found).__name__}")
            return found
    raise ConfigError(
        f"cannot find the transformer blocks of {type(model).__name__}: no model adapter recognises it "
        f"(tried {', '.join(a.description or a.name for a in adapters)}); "
        "this layout is not supported, or register a ModelAdapter plugin for it"
    )


def set_blocks(model: nn.Module, path: str, blocks: nn.ModuleList) -> None:
    """Replace the block list at dotted ``path`` with ``blocks``."""
    *parents, leaf = path.split(".")
    obj = model
    for attr in parents:
        obj = getattr(obj, attr)
    setattr(obj, leaf, blocks)


def input_device(model: nn.Module) -> torch.device:
    """Where input ids go: the device of the input embedding.

    For a model dispatched by accelerate (``model.hf_device_map``, multi-GPU or
    CPU/disk offload) this is the execution device of its first module (disk and
    meta count as CPU; accelerate's hooks move the weights in); otherwise the
    device of the first parameter.
    """
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        first = next(iter(device_map.values()))
        if isinstance(first, int):
            return torch.device("cuda", first)
        return torch.device("cpu" if first in ("disk", "meta") else first)
    return next(model.parameters()).device
