"""Figure 4: greedy decode speed (KV cache) of the pruned model / the dense one, against the FLOPs ideal.

The pruned model removes LoRP's choice of about 25 % of the blocks. The
measured speed-up (pruned tokens/s / dense tokens/s) is divided by the ideal
speed-up given by FLOPs per token (dense / pruned, LM head included,
:func:`lorp.evaluate.speed.flops_per_token`). Goal >= 0.9.
"""

from __future__ import annotations

from lorp.evaluate.speed import decode_speed, flops_per_token
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.data import calibration_samples, load_corpus
from lorp.model.models import load_model
from lorp.model.pruning import blocks_removed
from lorp.plugins.registry import load_registry

from ._common import Figure


def run(model_name: str, *, new_tokens: int = 64, repeats: int = 5, prompt_tokens: int = 32):
    registry = load_registry()
    loaded = load_model(model_name)
    model = loaded.model
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), 8, 128, 0)
    s = capture_similarities(model, ids, {"cosine": registry.similarity("cosine")}, progress=False,
                             registry=registry).matrices["cosine"]
    n = s.shape[0]
    pruned = select_blocks(s, round(0.25 * n), registry=registry).pruned
    prompt = ids[:1, :prompt_tokens]
    dense_flops = flops_per_token(model, registry)
    with blocks_removed(model, pruned, registry):
        pruned_flops = flops_per_token(model, registry)
    ideal = dense_flops / pruned_flops
    dense_rates, pruned_rates = [], []
    for i in range(repeats):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            if which == 0:
                dense_rates.append(decode_speed(model, prompt, new_tokens=new_tokens, repeats=1)["tokens_per_s"])
            else:
                with blocks_removed(model, pruned, registry):
                    pruned_rates.append(decode_speed(model, prompt, new_tokens=new_tokens, repeats=1)["tokens_per_s"])
    ratios = sorted(p / d / ideal for p, d in zip(pruned_rates, dense_rates))
    med = ratios[len(ratios) // 2]
    speedup = med * ideal
    return [Figure(4, f"decode speed-up (budget {len(pruned)} of {n} blocks) / FLOPs ideal", model_name, med,
                   (ratios[0], ratios[-1]), ">= 0.9", med >= 0.9,
                   {"pruned": pruned, "ideal_speedup": ideal, "dense_tokens_per_s": sorted(dense_rates),
                    "pruned_tokens_per_s": sorted(pruned_rates), "new_tokens": new_tokens},
                   note=f"measured x{speedup:.2f} vs ideal x{ideal:.2f}; dense "
                        f"{sorted(dense_rates)[len(dense_rates) // 2]:.1f} tokens/s")]


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or ["smollm2-135m"]:
        for f in run(name):
            print(f.line(), f.note)
