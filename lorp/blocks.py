"""Where a causal LM keeps its transformer blocks."""

from __future__ import annotations

from torch import nn

from .errors import ConfigError

#: Attribute paths of the decoder-block list, tried in order.
BLOCK_PATHS: tuple[str, ...] = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return ``(path, blocks)`` of the model's decoder blocks.

    Raises:
        ConfigError: no ``nn.ModuleList`` at any of :data:`BLOCK_PATHS`.
    """
    for path in BLOCK_PATHS:
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path, obj
    raise ConfigError(
        f"cannot find the transformer blocks of {type(model).__name__}: lorp looks for a ModuleList at "
        f"{', '.join(BLOCK_PATHS)}; this layout is not supported"
    )


def set_blocks(model: nn.Module, path: str, blocks: nn.ModuleList) -> None:
    """Replace the block list at ``path`` with ``blocks``."""
    *parents, leaf = path.split(".")
    obj = model
    for attr in parents:
        obj = getattr(obj, attr)
    setattr(obj, leaf, blocks)
