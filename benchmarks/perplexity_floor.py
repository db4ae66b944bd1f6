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
on a 1024 × 1024 × 1024 product (the best of 5); both from :mod:`lorp.evaluate.compute_floor`, which the
study's ``time.md`` uses for its "× floor" column. Ratio = measured / floor; the goal is within 1.3×.
"""

from __future__ import annotations

import sys
import time

from lorp.evaluate.compute_floor import block_flops, head_flops, matmul_rate, variant_flops
from lorp.evaluate.perplexity import SweepPerplexity
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.data import calibration_samples, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.plugins.registry import load_registry

from .capture_overhead import BUILTIN_METRICS

BUDGETS = {"smollm2-135m": (4, 8, 11), "gemma3-270m": (2, 4, 6), "qwen2.5-0.5b": (3, 6, 9)}


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
        per_block = block_flops(model, 256, registry)
        head = head_flops(model)
        t = time.perf_counter()
        scorer = SweepPerplexity(model, windows, {s[0] for s in sets}, registry=registry)
        for s in sets:
            scorer(s)
        seconds = time.perf_counter() - t
        flops = variant_flops(per_block, head, tokens)  # dense
        for s in sets:
            flops += variant_flops(per_block, head, tokens, s, scorer.reuse and s[0] in scorer.stored_blocks)
        floor = flops / rate
        print(f"{name}: dense + {len(sets)} removed sets on {tokens:,} tokens: {seconds:.1f} s measured, floor "
              f"{floor:.1f} s ({flops / 1e12:.2f} TFLOP): {seconds / floor:.2f}x the floor (goal 1.3x)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["smollm2-135m", "gemma3-270m"])
