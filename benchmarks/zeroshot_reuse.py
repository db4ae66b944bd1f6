"""Zero-shot accuracy of pruned variants restarted from the dense pass's hidden states, against the plain pruned pass.

    python -m benchmarks.zeroshot_reuse [MODEL ...]       (default smollm2-135m gemma3-270m)

At the default study's zero-shot settings (ARC-Easy, HellaSwag and COPA, 100 items each drawn with seed 0) and
its detail methods (LoRP, ShortGPT, LLM-Streamline at the model's detail budget, from the study's calibration
draw: 32 × 256 lambada tokens, seed 0): the dense zero-shot pass once plainly and once keeping the states entering
each variant's first removed block (:class:`lorp.evaluate.zeroshot_prefix.DensePrefixStates`), then each variant
plainly (blocks removed) and restarted. Prints the seconds of each, the kept states' size, and whether every
item's correctness and every task's ``acc`` and ``acc_norm`` are identical (they must be).
"""

from __future__ import annotations

import sys
import time

from lorp.evaluate.zeroshot import zero_shot
from lorp.evaluate.zeroshot_prefix import DensePrefixStates
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.blocks import find_blocks
from lorp.model.data import calibration_samples, load_corpus
from lorp.model.models import load_model
from lorp.model.pruning import blocks_removed
from lorp.plugins.registry import load_registry

from .capture_overhead import BUILTIN_METRICS

DETAIL_BUDGET = {"smollm2-135m": 8, "gemma3-270m": 4, "qwen2.5-0.5b": 6}
TASKS, LIMIT = ("arc_easy", "hellaswag", "copa"), 100


def _same(a: dict, b: dict) -> bool:
    return all(a["tasks"][t][k] == b["tasks"][t][k] for t in TASKS for k in ("correct", "acc", "acc_norm"))


def main(models: list[str]) -> None:
    registry = load_registry()
    for name in models:
        loaded = load_model(name)
        model, tokenizer = loaded.model, loaded.tokenizer
        n = len(find_blocks(model, registry)[1])
        ids = calibration_samples(tokenizer, load_corpus("lambada", registry), 32, 256, 0)
        stats = capture_similarities(model, ids, {m: registry.similarity(m) for m in BUILTIN_METRICS},
                                     progress=False, registry=registry).matrices
        budget = DETAIL_BUDGET.get(name, max(1, n // 4))
        sets = {m: select_blocks(stats["cosine"], budget, allocation=m, statistics=stats, registry=registry).pruned
                for m in ("lorp", "shortgpt", "streamline")}
        zero_shot(model, tokenizer, ["copa"], limit=2)  # lm-eval's task set-up, outside the timings
        t = time.perf_counter()
        plain_dense = zero_shot(model, tokenizer, TASKS, limit=LIMIT)
        plain_s = time.perf_counter() - t
        prefix = DensePrefixStates(model, [min(s) for s in sets.values()], registry=registry)
        t = time.perf_counter()
        dense = zero_shot(model, tokenizer, TASKS, limit=LIMIT, forward=prefix.record)
        record_s = time.perf_counter() - t
        print(f"{name} ({n} blocks), detail budget {budget}: dense {plain_s:.1f} s plain, {record_s:.1f} s keeping "
              f"the states entering blocks {prefix.blocks} ({prefix.kept_bytes / 2**20:.0f} MiB); "
              f"identical: {_same(dense, plain_dense)}")
        total_plain = total_fast = 0.0
        for method, removed in sets.items():
            t = time.perf_counter()
            with blocks_removed(model, removed, registry):
                plain = zero_shot(model, tokenizer, TASKS, limit=LIMIT)
            a = time.perf_counter() - t
            t = time.perf_counter()
            fast = zero_shot(model, tokenizer, TASKS, limit=LIMIT, forward=prefix.replay(removed))
            b = time.perf_counter() - t
            total_plain, total_fast = total_plain + a, total_fast + b
            print(f"  {method} {sorted(removed)}: plain {a:.1f} s, restarted at block {prefix.start_for(removed)} "
                  f"{b:.1f} s ({b / a:.2f}x); identical: {_same(fast, plain)}")
        print(f"  the three variants: {total_plain:.1f} s -> {total_fast:.1f} s ({total_fast / total_plain:.2f}x); "
              f"restarted calls {prefix.restarted}, plain calls {prefix.plain}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["smollm2-135m", "gemma3-270m"])
