"""The compute floor of a perplexity evaluation: its multiply-adds over this machine's float32 matmul rate
(a floor on time; the floor on quality every method should beat is :mod:`lorp.study.quality_floor`).

A perplexity stage can run no faster than the matrix products it needs. Per token of a
window of ``T`` tokens, a block that runs costs two FLOPs per weight (one multiply, one
add) plus ``2 × 2 × (T / 2) × heads × head_dim`` for the attention scores and their
weighted sum at the mean causal context ``T / 2``; the LM head costs ``2 × vocab × hidden``
at every position. A pruned variant that restarts from the dense states entering its first
removed block ``f`` (:class:`lorp.evaluate.perplexity.SweepPerplexity`) runs only the kept
blocks from ``f`` on. Dividing those FLOPs by the machine's measured matmul rate gives the
floor; ``measured / floor`` is how far the stage is from it (``docs/performance.md``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..model.blocks import find_blocks


def matmul_rate(size: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 matmul rate in FLOP/s: the best of ``repeats`` ``size × size × size`` products.

    Uses torch's current thread count. About 0.2 s on 2 CPU cores.
    """
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best


def block_flops(model: nn.Module, window_tokens: int, registry=None) -> list[float]:
    """FLOPs per token of each block at windows of ``window_tokens`` tokens: weights and causal attention.

    Returns:
        ``[N]`` floats: ``2 × (weights of the block's matrices) + 4 × (T / 2) × heads × head_dim``.
    """
    _, blocks = find_blocks(model, registry)
    config = getattr(model.config, "text_config", None) or model.config
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head")
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd")
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    attention = 2 * 2 * (window_tokens / 2) * heads * head_dim
    return [2 * sum(p.numel() for p in blk.parameters() if p.dim() > 1) + attention for blk in blocks]


def head_flops(model: nn.Module) -> float:
    """FLOPs per token of the LM head (``2 × vocab × hidden``; tied heads included)."""
    return 2.0 * model.get_output_embeddings().weight.numel()


def floor_record(model: nn.Module, window_tokens: int, registry=None, rate: float | None = None) -> dict:
    """What :func:`variant_flops` needs, kept in a study's records: ``{"block_flops", "head_flops",
    "window_tokens", "matmul_flops_per_s"}`` (``rate`` measured by :func:`matmul_rate` when not given)."""
    return {"block_flops": block_flops(model, window_tokens, registry), "head_flops": head_flops(model),
            "window_tokens": int(window_tokens), "matmul_flops_per_s": float(rate or matmul_rate())}


def variant_flops(per_block: Sequence[float], head: float, tokens: int, removed: Iterable[int] = (),
                  restart: bool = True) -> float:
    """FLOPs to score ``tokens`` tokens with ``removed`` deleted.

    Args:
        per_block: FLOPs per token of each block (:func:`block_flops`).
        head: FLOPs per token of the LM head.
        tokens: tokens run (windows × window length).
        removed: deleted blocks; empty for the dense model.
        restart: the variant starts from the dense states entering its first removed block.
    Returns:
        ``tokens × (FLOPs of the kept blocks that run + head)``.
    """
    removed = set(removed)
    start = min(removed) if removed and restart else 0
    return tokens * (sum(f for b, f in enumerate(per_block) if b >= start and b not in removed) + head)


__all__ = ["block_flops", "floor_record", "head_flops", "matmul_rate", "variant_flops"]
