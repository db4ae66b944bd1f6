"""Speed of dense and pruned models: FLOPs per token and measured greedy decode speed."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from ..model.blocks import find_blocks, input_device


def flops_per_token(model: nn.Module, registry=None) -> int:
    """Matrix-multiply FLOPs to decode one token: ``2 ×`` (block parameters + LM-head parameters).

    The usual ``2N`` estimate (one multiply and one add per weight), counting every
    block's weights and the output projection (lm_head, also when tied to the input
    embedding) and leaving out the embedding lookup, norms and the attention-score
    terms that grow with context (small at the short contexts measured here).
    Removing a block removes exactly its share, so ``dense / pruned`` is the ideal
    speed-up.
    """
    _, blocks = find_blocks(model, registry)
    block_params = sum(p.numel() for blk in blocks for p in blk.parameters())
    head = model.get_output_embeddings()
    return 2 * (block_params + (head.weight.numel() if head is not None else 0))


@torch.inference_mode()
def decode_speed(model: nn.Module, prompt_ids: torch.Tensor, *, new_tokens: int = 32, repeats: int = 3) -> dict[str, Any]:
    """Greedy decode speed with the KV cache, in generated tokens per second.

    Each repeat times ``generate`` of ``new_tokens`` tokens and of 1 token from the
    same prompt; their difference is the time of ``new_tokens - 1`` decode steps
    (prefill excluded). One untimed warm-up run precedes the repeats.

    Args:
        model: causal LM (dense or pruned).
        prompt_ids: int64 ``[1, P]`` prompt.
        new_tokens: tokens generated per run (>= 2).
        repeats: timed repeats; the median is reported.
    Returns:
        ``{"tokens_per_s": median, "tokens_per_s_runs": [...], "new_tokens", "prompt_tokens", "repeats"}``.
    Raises:
        ValueError: ``new_tokens < 2`` or ``repeats < 1``.
    """
    if new_tokens < 2 or repeats < 1:
        raise ValueError(f"need new_tokens >= 2 and repeats >= 1, got {new_tokens}, {repeats}")
    ids = prompt_ids.to(input_device(model))
    pad = getattr(model.generation_config, "pad_token_id", None)
    if pad is None:
        pad = getattr(model.generation_config, "eos_token_id", None)
        pad = pad[0] if isinstance(pad, list) else pad

    def run(n: int) -> float:
        t = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                       do_sample=False, use_cache=True, pad_token_id=pad)
        return time.perf_counter() - t

    run(new_tokens)
    rates = []
    for _ in range(repeats):
        rates.append((new_tokens - 1) / max(run(new_tokens) - run(1), 1e-9))
    return {"tokens_per_s": statistics.median(rates), "tokens_per_s_runs": rates, "new_tokens": new_tokens,
            "prompt_tokens": int(ids.shape[1]), "repeats": repeats}
