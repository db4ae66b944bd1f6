"""The perplexity stage against its floor: measured time over (multiply-adds of the tokens evaluated / matmul rate).

    python -m benchmarks.perplexity_floor [MODEL ...]      (default smollm2-135m gemma3-270m)

At the default study's screening settings (8 windows of 256 tokens per corpus, ptb and wiki-paragraphs)
:class:`lorp.evaluate.perplexity.SweepPerplexity` scores dense and the removed sets LoRP, ShortGPT and
LLM-Streamline choose at the model's default budgets (from 8 × 256 calibration tokens), each variant
restarting from the dense states entering its first removed block, as the study does.

The floor counts the multiply-adds actually needed, two FLOPs each: per token, every block that runs
(``2 × its weights``, plus ``2 × T × width`` for the attention scores and their weighted sum at causal
context ``T/2`` on average), and the LM head (``2 × vocab × hidden``) at every position; a variant runs only
the kept blocks from its first removed one. It is divided by this machine's float32 matmul rate, measured
on a 1024 × 1024 × 1024 product (the best of 5). Ratio = measured / floor; the goal is within 1.3×.
"""

from __future__ import annotations

import sys
import time

import torch

from lorp.evaluate.perplexity import SweepPerplexity
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.blocks import find_blocks
from lorp.model.data import calibration_samples, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.plugins.registry import load_registry

from .capture_overhead import BUILTIN_METRICS

BUDGETS = {"smollm2-135m": (4, 8, 11), "gemma3-270m": (2, 4, 6), "qwen2.5-0.5b": (3, 6, 9)}


def matmul_rate(size: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 matmul rate (FLOP/s): the best of ``repeats`` ``size³`` products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best


def block_flops(model, registry, tokens: int) -> list[float]:
    """FLOPs per token of each block at windows of ``tokens``: weights and causal attention scores."""
    _, blocks = find_blocks(model, registry)
    cfg = model.config
    heads, head_dim = cfg.num_attention_heads, getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attention = 2 * 2 * (tokens / 2) * heads * head_dim  # QK^T and the weighted sum of V, causal: T/2 on average
    return [2 * sum(p.numel() for p in blk.parameters() if p.dim() > 1) + attention for blk in blocks]


def main(models: list[str]) -> None:
    registry = load_registry()
    rate = matmul_rate()
    print(f"float32 matmul rate: {rate / 1e9:.1f} GFLOP/s (1024 x 1024 x 1024, best of 5)")
    for name in models:
        loaded = load_model(name)
        model = loaded.model
        ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), 8, 256, 0)
        stats = capture_similarities(model, ids, {n: registry.similarity(n) for n in BUILTIN_METRICS},
                                     progress=False, registry=registry).matrices
        sets = sorted({tuple(select_blocks(stats["cosine"], b, allocation=m, statistics=stats, registry=registry).pruned)
                       for b in BUDGETS.get(name, (3, 6)) for m in ("lorp", "shortgpt", "streamline")})
        windows = {c: evaluation_windows(loaded.tokenizer, load_corpus(c, registry), 256, 2048)
                   for c in ("ptb", "wiki-paragraphs")}
        tokens = sum(w.numel() for w in windows.values())
        per_block = block_flops(model, registry, 256)
        head = 2 * model.get_output_embeddings().weight.numel()
        t = time.perf_counter()
        scorer = SweepPerplexity(model, windows, {s[0] for s in sets}, registry=registry)
        for s in sets:
            scorer(s)
        seconds = time.perf_counter() - t
        flops = tokens * (sum(per_block) + head)  # dense
        for s in sets:
            start = s[0] if scorer.reuse and s[0] in scorer.stored_blocks else 0
            flops += tokens * (sum(f for b, f in enumerate(per_block) if b >= start and b not in s) + head)
        floor = flops / rate
        print(f"{name}: dense + {len(sets)} removed sets on {tokens:,} tokens: {seconds:.1f} s measured, floor "
              f"{floor:.1f} s ({flops / 1e12:.2f} TFLOP): {seconds / floor:.2f}x the floor (goal 1.3x)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["smollm2-135m", "gemma3-270m"])
