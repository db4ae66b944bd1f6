"""Forward passes of a model with some blocks deleted: keep the hidden states entering given blocks, or run
from such states to the logits. What evaluation (:mod:`lorp.evaluate`) and healing (:mod:`lorp.heal`) both
build on; the prefix reuse they allow is exact for models whose positions are applied inside the blocks
(rotary: Llama, Gemma 3, Qwen2), which callers check.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .blocks import find_blocks
from .pruning import blocks_removed


def lm_kwargs(logits_to_keep: int | None) -> dict:
    """``logits_to_keep`` for the model's forward (LM head only on the last positions) when asked for."""
    return {} if not logits_to_keep else {"logits_to_keep": int(logits_to_keep)}


@torch.inference_mode()
def block_inputs(model: nn.Module, ids: torch.Tensor, keep: Iterable[int], *, removed: Iterable[int] = (),
                 registry=None, logits_to_keep: int | None = None) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """One forward of ``model`` (with ``removed`` blocks deleted) keeping the hidden states entering blocks ``keep``.

    Args:
        ids: int64 token ids ``[B, T]``.
        keep: original block indices whose input hidden states ``[B, T, H]`` are kept
            (indices of removed blocks are ignored).
        logits_to_keep: compute logits for the last positions only (``None``: all; the model's
            forward must accept transformers' ``logits_to_keep``).
    Returns:
        ``(states, logits)``: ``{block: hidden states}`` and the logits ``[B, T, V]`` (``[B, logits_to_keep, V]``).
    """
    removed = set(removed)
    keep = set(keep)
    states: dict[int, torch.Tensor] = {}
    kept = [b for b in range(len(find_blocks(model, registry)[1])) if b not in removed]
    with blocks_removed(model, sorted(removed), registry):
        _, blocks = find_blocks(model, registry)
        hooks = [blk.register_forward_pre_hook(
            lambda _m, args, kwargs, b=b: states.__setitem__(b, kwargs.get("hidden_states", args[0] if args else None)),
            with_kwargs=True) for b, blk in zip(kept, blocks) if b in keep]
        try:
            logits = model(input_ids=ids, use_cache=False, **lm_kwargs(logits_to_keep)).logits
        finally:
            for h in hooks:
                h.remove()
    return states, logits


@torch.inference_mode()
def logits_from(model: nn.Module, states: torch.Tensor, start: int, removed: Iterable[int], registry=None,
                logits_to_keep: int | None = None) -> torch.Tensor:
    """Logits ``[B, T, V]`` of the model with ``removed`` deleted, run from the hidden states entering block ``start``.

    ``states`` ``[B, T, H]`` must be what block ``start`` receives in that pruned
    model (true when every removed block is at or after ``start``, or the states
    were captured with the same earlier blocks removed). Blocks before ``start`` are
    skipped and the states enter as ``inputs_embeds``; valid for models whose
    positions are applied inside the blocks (rotary), which callers check.
    ``logits_to_keep`` as in :func:`block_inputs`.
    """
    skip = sorted(set(removed) | set(range(start)) | ({start} if start in set(removed) else set()))
    with blocks_removed(model, skip, registry):
        return model(inputs_embeds=states, use_cache=False, **lm_kwargs(logits_to_keep)).logits


__all__ = ["block_inputs", "lm_kwargs", "logits_from"]
