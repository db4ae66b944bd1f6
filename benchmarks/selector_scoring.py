"""Our selector's candidate scoring: SLEB's greedy prefix reuse against the dense prefix, same candidates.

    python -m benchmarks.selector_scoring [MODEL]       (default smollm2-135m)

At the default study's settings (32 × 256 calibration tokens of lambada, seed 0; ``span-bi-nll`` scores on
4 sequences, the last 128 tokens of each) the candidate sets of ``span-bi-nll`` at each budget are scored
by :class:`lorp.evaluate.perplexity.CalibrationNLL` with ``prefix="greedy"`` (what the selector used before:
a full pass to re-base, then a partial one, per unrelated set) and ``prefix="dense"`` (one partial pass from
the dense states entering each set's first removed block). Prints seconds for each, the largest NLL
difference between them (nats per token) and whether they pick the same set.
"""

from __future__ import annotations

import sys
import time

from lorp.builtins.selectors import SCORING_SAMPLES, candidates
from lorp.evaluate.perplexity import CalibrationNLL
from lorp.method.capture import capture_similarities
from lorp.model.data import calibration_samples, load_corpus
from lorp.model.models import load_model
from lorp.plugins.components import AllocationRequest
from lorp.plugins.registry import load_registry

BUDGETS = {"smollm2-135m": (4, 8, 11), "gemma3-270m": (2, 4, 6), "qwen2.5-0.5b": (3, 6, 9)}


def main(model_name: str = "smollm2-135m") -> None:
    registry = load_registry()
    loaded = load_model(model_name)
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), 32, 256, 0)
    stats = capture_similarities(loaded.model, ids, {"stream-cosine": registry.similarity("stream-cosine")},
                                 progress=False, registry=registry).matrices
    n = stats["stream-cosine"].shape[0] - 1
    family = {b: candidates(AllocationRequest(similarity=stats["stream-cosine"][:n, :n], labels=None, budget=b,
                                              protected=frozenset({0, n - 1}), statistics=stats))
              for b in BUDGETS.get(model_name, (3, 6))}
    out = {}
    for prefix in ("greedy", "dense"):
        t = time.perf_counter()
        nll = CalibrationNLL(loaded.model, ids[:SCORING_SAMPLES], registry=registry, scored_tokens=128, prefix=prefix)
        scores = {b: [nll(frozenset(s)) for _, s in cands] for b, cands in family.items()}
        out[prefix] = (time.perf_counter() - t, scores, nll.forward_passes, nll.partial_passes)
    (t0, s0, f0, p0), (t1, s1, f1, p1) = out["greedy"], out["dense"]
    diff = max(abs(a - b) for bud in s0 for a, b in zip(s0[bud], s1[bud]))
    same = all(min(range(len(s0[b])), key=s0[b].__getitem__) == min(range(len(s1[b])), key=s1[b].__getitem__)
               for b in s0)
    sets = sum(len(c) for c in family.values())
    print(f"{model_name}: {sets} candidate sets over budgets {list(family)}")
    print(f"  greedy prefix: {t0:.1f} s ({f0} full, {p0} partial passes)")
    print(f"  dense prefix:  {t1:.1f} s ({f1} full, {p1} partial passes); {t0 / t1:.2f}x faster")
    print(f"  largest NLL difference {diff:.2e} nats/token; same pick at every budget: {same}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
