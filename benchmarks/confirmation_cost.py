"""What the held-out confirmation windows cost, per budget, at the default study's settings.

    python -m benchmarks.confirmation_cost [MODEL]      (default smollm2-135m)

The verdict pairs of the study notebook (LoRP and the best baseline per budget, plus dense once) are
scored on 32 confirmation windows of 256 tokens per corpus (ptb, wiki-paragraphs), with the dense
states reused as the study does (:meth:`lorp.run.worker.CellWorker.confirm`). The removed sets come
from a small calibration pass (8 × 256 tokens of lambada): LoRP and the baseline of lowest screening
perplexity among ShortGPT and LLM-Streamline. Prints seconds for the dense pass and for each set, and
the same sets on the 8 screening windows for scale.
"""

from __future__ import annotations

import sys
import time

from lorp.evaluate.perplexity import SweepPerplexity, geometric_mean_perplexity
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.data import calibration_samples, confirmation_windows, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.plugins.registry import load_registry

from .capture_overhead import BUILTIN_METRICS

BUDGETS = {"smollm2-135m": (4, 8, 11), "gemma3-270m": (3, 5, 7), "qwen2.5-0.5b": (3, 6, 9)}


def main(model_name: str = "smollm2-135m", screening_tokens: int = 2048, count: int = 32, seq_len: int = 256) -> None:
    registry = load_registry()
    loaded = load_model(model_name)
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), 8, 256, 0)
    matrices = capture_similarities(loaded.model, ids, {n: registry.similarity(n) for n in BUILTIN_METRICS},
                                    progress=False, registry=registry).matrices
    corpora = {c: load_corpus(c, registry) for c in ("ptb", "wiki-paragraphs")}
    screening = {c: evaluation_windows(loaded.tokenizer, v, seq_len, screening_tokens) for c, v in corpora.items()}
    held_out = {c: confirmation_windows(loaded.tokenizer, v, seq_len, count, screening_tokens)
                for c, v in corpora.items()}
    budgets = BUDGETS.get(model_name, (3, 6))
    sets = {b: {m: tuple(select_blocks(matrices["cosine"], b, allocation=m, statistics=matrices,
                                       registry=registry).pruned) for m in ("lorp", "shortgpt", "streamline")}
            for b in budgets}
    firsts = {s[0] for per in sets.values() for s in per.values()}
    t = time.perf_counter()
    screen = SweepPerplexity(loaded.model, screening, firsts, registry=registry)
    screen_dense = time.perf_counter() - t
    t = time.perf_counter()
    confirm = SweepPerplexity(loaded.model, held_out, firsts, registry=registry)
    confirm_dense = time.perf_counter() - t
    print(f"{model_name}: {count} confirmation windows x {seq_len} tokens per corpus (screening: "
          f"{screening_tokens // seq_len}); dense pass {confirm_dense:.1f} s (screening {screen_dense:.1f} s)")
    total = confirm_dense
    for b in budgets:
        ppl = {m: geometric_mean_perplexity(screen(s)) for m, s in sets[b].items()}
        best = min(("shortgpt", "streamline"), key=ppl.get)
        row = []
        for m in ("lorp", best):
            t = time.perf_counter()
            screen(sets[b][m])
            s_screen = time.perf_counter() - t
            t = time.perf_counter()
            confirm(sets[b][m])
            s_conf = time.perf_counter() - t
            total += s_conf
            row.append(f"{m} {s_conf:.1f} s (screening {s_screen:.1f} s)")
        print(f"  budget {b}: " + "; ".join(row))
    print(f"confirmation in all: {total:.1f} s ({total / 60:.1f} min) for dense and {2 * len(budgets)} sets")


if __name__ == "__main__":
    main(*sys.argv[1:2])
