"""Where a causal LM keeps its transformer blocks (through the model-adapter plugins)."""

from __future__ import annotations

from torch import nn

from .errors import ConfigError


def find_blocks(model: nn.Module, registry=None) -> tuple[str, nn.ModuleList]:
    """Return ``(dotted_path, blocks)`` of the model's decoder blocks.

    Asks each registered :class:`lorp.ModelAdapter` in turn (builtins first:
    ``model.layers``, ``transformer.h``, ``gpt_neox.layers``, ``model.decoder.layers``).

    Raises:
        ConfigError: no adapter recognises the model.
    """
    from .plugins import default_registry

    adapters = (registry or default_registry()).adapters()
    for adapter in adapters:
        found = adapter.find_blocks(model)
        if found is not None:
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
