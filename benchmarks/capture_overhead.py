"""Figures 1 and 2: calibration pass with every builtin metric vs a plain forward; selection vs one pass.

Figure 1: the calibration pass with every builtin similarity metric attached
(``cosine``, ``stream-cosine``, ``angular-distance``) / a plain forward of the same
backbone over the same tokens and batches. Goal <= 1.10.

Figure 2: (one calibration pass + selection for every similarity-based method
at 5 budgets from its matrices) / one calibration pass. Goal <= 1.2. SLEB,
which needs forward passes of its own, is reported separately: passes and time
(on one calibration sequence and the two smallest budgets, to keep the run short).
"""

from __future__ import annotations

import time

import torch

from lorp.capture import capture_similarities
from lorp.data import calibration_samples, load_corpus
from lorp.evaluation import CalibrationNLL
from lorp.models import load_model
from lorp.plugins import load_registry
from lorp.selection import select_blocks

from ._common import Figure, interleaved, ratio_stats

BUILTIN_METRICS = ("cosine", "stream-cosine", "angular-distance")
SIMILARITY_METHODS = ("lorp", "shortgpt", "streamline", "angular", "last", "random")


def budgets_for(num_blocks: int) -> list[int]:
    """Five budgets from about 10 % to 40 % of the blocks."""
    return sorted({max(1, round(f * num_blocks)) for f in (0.1, 0.17, 0.25, 0.33, 0.4)})


def run(model_name: str, *, samples: int = 8, seq_len: int = 256, repeats: int = 5, sleb_samples: int = 1,
        sleb_budgets: int = 2):
    registry = load_registry()
    loaded = load_model(model_name)
    model = loaded.model
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), samples, seq_len, 0)
    metrics = {n: registry.similarity(n) for n in BUILTIN_METRICS}
    backbone = getattr(model, "base_model", model)

    @torch.inference_mode()
    def plain():
        for row in ids:
            backbone(input_ids=row[None], attention_mask=torch.ones_like(row[None]), use_cache=False)

    result = {}

    def capture():
        result["r"] = capture_similarities(model, ids, metrics, progress=False, registry=registry)

    t_capture, t_plain = interleaved(capture, plain, repeats)
    ratio, spread = ratio_stats(t_capture, t_plain)
    matrices = result["r"].matrices
    n = result["r"].num_blocks
    fig1 = Figure(1, "calibration pass with all builtin metrics / plain forward", model_name, ratio, spread, "<= 1.10",
                  ratio <= 1.10, {"tokens": samples * seq_len, "plain_s": sorted(t_plain), "capture_s": sorted(t_capture),
                                  "metrics": list(BUILTIN_METRICS)})

    budgets = budgets_for(n)
    selection_s = []
    for _ in range(repeats):
        t = time.perf_counter()
        for method in SIMILARITY_METHODS:
            for b in budgets:
                select_blocks(matrices["cosine"], b, allocation=method, statistics=matrices, registry=registry)
        selection_s.append(time.perf_counter() - t)
    pass_s = sorted(t_capture)[len(t_capture) // 2]
    totals = [(pass_s + s) / pass_s for s in selection_s]
    fig2 = Figure(2, f"one pass + selection ({len(SIMILARITY_METHODS)} methods x budgets {budgets}) / one pass",
                  model_name, sorted(totals)[len(totals) // 2], (min(totals), max(totals)), "<= 1.2",
                  sorted(totals)[len(totals) // 2] <= 1.2,
                  {"selection_s": sorted(selection_s), "pass_s": pass_s, "methods": list(SIMILARITY_METHODS)})

    t = time.perf_counter()
    nll = CalibrationNLL(model, ids[:sleb_samples], registry=registry)
    for b in budgets[:sleb_budgets]:
        select_blocks(matrices["cosine"], b, allocation="sleb", statistics=matrices, nll=nll, registry=registry)
    sleb_s = time.perf_counter() - t
    sleb_pass_equiv = pass_s * sleb_samples / samples
    fig2b = Figure(2, f"SLEB selection at budgets {budgets[:sleb_budgets]} / one pass over its {sleb_samples} sequence(s)",
                   model_name,
                   sleb_s / sleb_pass_equiv, (sleb_s / sleb_pass_equiv,) * 2, "reported separately", None,
                   {"seconds": sleb_s, "full_forward_passes": nll.forward_passes,
                    "partial_forward_passes": nll.partial_passes, "prefix_reuse": nll.reuse},
                   note=f"{nll.forward_passes} full + {nll.partial_passes} partial forwards over "
                        f"{sleb_samples} x {seq_len} tokens, {sleb_s:.1f} s")
    return [fig1, fig2, fig2b]


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or ["smollm2-135m"]:
        for f in run(name):
            print(f.line(), f.note)
