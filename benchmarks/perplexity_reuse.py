"""Figure 5: perplexity of a sweep's pruned variants reusing the dense model's hidden states / without reuse.

The variants are the distinct selections of every similarity-based method at 5
budgets. With reuse (:class:`lorp.evaluate.perplexity.SweepPerplexity`) each variant
restarts from the dense hidden states entering its first removed block; without,
each runs the whole pruned model (:func:`lorp.evaluate.perplexity.perplexities`). Both
include the dense evaluation. Reported: time ratio (lower is better) and the
largest difference in mean token NLL, which must stay within 1e-5.
"""

from __future__ import annotations

from lorp.evaluate.perplexity import SweepPerplexity, perplexities
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.data import calibration_samples, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.model.pruning import blocks_removed
from lorp.plugins.registry import load_registry

from ._common import Figure, interleaved, ratio_stats
from .capture_overhead import BUILTIN_METRICS, SIMILARITY_METHODS, budgets_for


def run(model_name: str, *, eval_tokens: int = 512, seq_len: int = 256, repeats: int = 2):
    registry = load_registry()
    loaded = load_model(model_name)
    model = loaded.model
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), 8, 256, 0)
    matrices = capture_similarities(model, ids, {n: registry.similarity(n) for n in BUILTIN_METRICS}, progress=False,
                                    registry=registry).matrices
    n = matrices["cosine"].shape[0]
    variants = sorted({tuple(select_blocks(matrices["cosine"], b, allocation=m, statistics=matrices,
                                           registry=registry).pruned)
                       for m in SIMILARITY_METHODS for b in budgets_for(n)})
    windows = {c: evaluation_windows(loaded.tokenizer, load_corpus(c, registry), seq_len, eval_tokens)
               for c in ("ptb", "wiki-paragraphs")}
    out = {}

    def with_reuse():
        scorer = SweepPerplexity(model, windows, {v[0] for v in variants}, registry=registry)
        out["reuse"] = [scorer(v) for v in variants]
        out["enabled"] = scorer.reuse

    def without():
        perplexities(model, windows, progress=False)
        res = []
        for v in variants:
            with blocks_removed(model, v, registry):
                res.append(perplexities(model, windows, progress=False))
        out["plain"] = res

    t_reuse, t_plain = interleaved(with_reuse, without, repeats, warmup=False)
    ratio, spread = ratio_stats(t_reuse, t_plain)
    diff = max(abs(a[c]["nll"] - b[c]["nll"]) for a, b in zip(out["reuse"], out["plain"]) for c in windows)
    return [Figure(5, f"perplexity of {len(variants)} sweep variants with reuse / without", model_name, ratio, spread,
                   "report; NLL identical within 1e-5", diff <= 1e-5 and out["enabled"],
                   {"variants": len(variants), "max_abs_nll_difference": diff, "reuse_enabled": out["enabled"],
                    "reuse_s": sorted(t_reuse), "plain_s": sorted(t_plain), "eval_tokens_per_corpus": eval_tokens},
                   note=f"max |ΔNLL| = {diff:.1e} nats")]


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or ["smollm2-135m"]:
        for f in run(name):
            print(f.line(), f.note)
