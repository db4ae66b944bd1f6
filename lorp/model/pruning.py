"""Stage 5: remove whole blocks from a transformers causal LM and keep it consistent."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn

from ..errors import ConfigError
from .blocks import find_blocks, set_blocks

#: Per-layer config attributes other than list-valued ones found automatically.
_LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layer", "num_layers")


def remove_blocks(model: nn.Module, blocks_to_remove: Iterable[int], registry=None) -> nn.Module:
    """Delete ``blocks_to_remove`` from ``model`` in place and return it.

    Keeps the model usable for ``generate`` (KV cache) and ``save_pretrained``:
    the kept blocks are renumbered (every submodule's ``layer_idx``),
    ``config.num_hidden_layers`` is updated, and every per-layer list in the
    config (a list as long as the old block count, e.g. Gemma 3's
    ``layer_types``) is subset by the kept indices, not cut at the tail.

    Args:
        model: a transformers causal LM (blocks at a path in
            :data:`lorp.model.blocks.BLOCK_PATHS`).
        blocks_to_remove: 0-based block indices.
        registry: plugin registry whose model adapters find the blocks.
    Raises:
        ConfigError: an index is out of range or repeated, or nothing would remain.
    """
    path, blocks = find_blocks(model, registry)
    n = len(blocks)
    remove = list(blocks_to_remove)
    if len(set(remove)) != len(remove):
        raise ConfigError(f"block indices to remove repeat: {remove}")
    bad = [b for b in remove if not isinstance(b, int) or not 0 <= b < n]
    if bad:
        raise ConfigError(f"blocks {bad} do not exist; the model has {n} blocks (0..{n - 1})")
    if len(remove) >= n:
        raise ConfigError(f"cannot remove all {n} blocks")
    kept = [i for i in range(n) if i not in set(remove)]
    kept_blocks = nn.ModuleList([blocks[i] for i in kept])
    set_blocks(model, path, kept_blocks)
    for new_index, block in enumerate(kept_blocks):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    _update_config(model.config, n, kept)
    return model


def _update_config(config, old_n: int, kept: list[int]) -> None:
    configs = [config]
    text_config = getattr(config, "text_config", None)
    if text_config is not None and text_config is not config:
        configs.append(text_config)
    for cfg in configs:
        for key, value in list(vars(cfg).items()):
            if isinstance(value, (list, tuple)) and len(value) == old_n and key not in {"architectures"}:
                setattr(cfg, key, type(value)(value[i] for i in kept))
        for attr in _LAYER_COUNT_ATTRS:
            if getattr(cfg, attr, None) == old_n:
                setattr(cfg, attr, len(kept))


@contextmanager
def blocks_removed(model: nn.Module, blocks_to_remove: Iterable[int], registry=None) -> Iterator[nn.Module]:
    """Temporarily remove blocks: inside the ``with``, ``model`` is the pruned model.

    Nothing is copied: the block list, ``layer_idx`` attributes and config
    entries are swapped and restored on exit (also on error). Used to score
    many candidate removals on one model (SLEB, sweeps).
    """
    path, original = find_blocks(model, registry)
    configs = [model.config] + ([model.config.text_config] if getattr(model.config, "text_config", None) is not None else [])
    saved_configs = [dict(vars(cfg)) for cfg in configs]
    saved_idx = [(m, m.layer_idx) for m in original.modules() if hasattr(m, "layer_idx")]
    try:
        remove_blocks(model, list(blocks_to_remove), registry)
        yield model
    finally:
        set_blocks(model, path, original)
        for module, idx in saved_idx:
            module.layer_idx = idx
        for cfg, saved in zip(configs, saved_configs):
            cfg.__dict__.clear()
            cfg.__dict__.update(saved)
