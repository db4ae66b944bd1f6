"""Figures 1 and 2: calibration pass with every builtin metric vs a plain forward; selection vs one pass.

Figure 1: the calibration pass with every builtin similarity metric attached
(``cosine``, ``stream-cosine``, ``angular-distance``) / a plain forward of the same
backbone over the same tokens and batches. Goal <= 1.10. Timed in pairs, one
sequence at a time: the capture of a sequence (``capture_similarities`` on that
one sequence, batch 1 as in the calibration pass) and the plain forward of the
same sequence run back to back, in alternating order from pair to pair, so load
that comes and goes on the machine hits both sides of a pair alike. One timed
run is ``timing_samples`` such pairs; its ratio is its summed capture time / its
summed plain time; the figure is the median over ``repeats`` runs with their
min-max, and the note gives the median and interquartile range of the
per-sequence pair ratios. Each capture call pays the pass's fixed costs (hooks,
accumulators, result checks) for one sequence instead of once per pass, so the
ratio slightly overstates the cost of a real pass.

Figure 2: (one calibration pass + selection for every similarity-based method
at 5 budgets from its matrices) / one calibration pass. Goal <= 1.2. The pass
is ``samples`` sequences; its time is the median over figure 1's runs of the
summed capture times of their first ``samples`` sequences. SLEB,
which needs forward passes of its own, is reported separately: passes and time
(on one calibration sequence and the two smallest budgets, to keep the run short).
"""

from __future__ import annotations

import time

import torch

from lorp.evaluate.perplexity import CalibrationNLL
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.data import calibration_samples, load_corpus
from lorp.model.models import load_model
from lorp.plugins.registry import load_registry

from ._common import Figure, interleaved_pairs, quartiles, ratio_stats

BUILTIN_METRICS = ("cosine", "stream-cosine", "angular-distance")
SIMILARITY_METHODS = ("lorp", "shortgpt", "streamline", "angular", "last", "random")


def budgets_for(num_blocks: int) -> list[int]:
    """Five budgets from about 10 % to 40 % of the blocks."""
    return sorted({max(1, round(f * num_blocks)) for f in (0.1, 0.17, 0.25, 0.33, 0.4)})


def run(model_name: str, *, samples: int = 8, seq_len: int = 256, repeats: int = 5, timing_samples: int = 12,
        sleb_samples: int = 1, sleb_budgets: int = 2):
    """Figures 1, 2 and SLEB's line for ``model_name``.

    Args:
        samples: calibration sequences of one pass (the pass figure 2 divides by, and whose matrices it selects from).
        seq_len: tokens per sequence.
        repeats: timed runs of figure 1 (and selection repeats of figure 2).
        timing_samples: sequence pairs per timed run of figure 1 (``timing_samples * seq_len`` tokens per side).
        sleb_samples, sleb_budgets: SLEB's calibration sequences and how many of the smallest budgets it runs.
    """
    registry = load_registry()
    loaded = load_model(model_name)
    model = loaded.model
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), max(samples, timing_samples),
                              seq_len, 0)
    metrics = {n: registry.similarity(n) for n in BUILTIN_METRICS}
    backbone = getattr(model, "base_model", model)

    @torch.inference_mode()
    def plain(row):
        backbone(input_ids=row[None], attention_mask=torch.ones_like(row[None]), use_cache=False)

    def capture(row):
        capture_similarities(model, row[None], metrics, progress=False, registry=registry)

    result = capture_similarities(model, ids[:samples], metrics, progress=False, registry=registry)  # + warm-up
    plain(ids[0])
    t_capture, t_plain = interleaved_pairs(capture, plain, list(ids[:timing_samples]), repeats)
    ratio, spread = ratio_stats([sum(r) for r in t_capture], [sum(r) for r in t_plain])
    pair_ratios = [c / p for rc, rp in zip(t_capture, t_plain) for c, p in zip(rc, rp)]
    q1, q2, q3 = quartiles(pair_ratios)
    matrices = result.matrices
    n = result.num_blocks
    fig1 = Figure(1, "calibration pass with all builtin metrics / plain forward", model_name, ratio, spread, "<= 1.10",
                  ratio <= 1.10,
                  {"tokens_per_run": timing_samples * seq_len, "runs": repeats, "pairs": len(pair_ratios),
                   "run_plain_s": [sum(r) for r in t_plain], "run_capture_s": [sum(r) for r in t_capture],
                   "pair_ratio_quartiles": [q1, q2, q3], "metrics": list(BUILTIN_METRICS)},
                  note=f"{repeats} runs of {timing_samples} x {seq_len} tokens, each sequence's capture and plain "
                       f"forward timed back to back in alternating order; per-sequence pair ratios "
                       f"({len(pair_ratios)}): median {q2:.3f}, interquartile {q1:.3f}-{q3:.3f}; plain forward "
                       f"{sorted(sum(r) for r in t_plain)[len(t_plain) // 2] / timing_samples:.2f} s per sequence")

    budgets = budgets_for(n)
    selection_s = []
    for _ in range(repeats):
        t = time.perf_counter()
        for method in SIMILARITY_METHODS:
            for b in budgets:
                select_blocks(matrices["cosine"], b, allocation=method, statistics=matrices, registry=registry)
        selection_s.append(time.perf_counter() - t)
    pass_s = sorted(sum(r[:samples]) for r in t_capture)[repeats // 2] * samples / min(samples, timing_samples)
    totals = [(pass_s + s) / pass_s for s in selection_s]
    fig2 = Figure(2, f"one pass + selection ({len(SIMILARITY_METHODS)} methods x budgets {budgets}) / one pass",
                  model_name, sorted(totals)[len(totals) // 2], (min(totals), max(totals)), "<= 1.2",
                  sorted(totals)[len(totals) // 2] <= 1.2,
                  {"selection_s": sorted(selection_s), "pass_s": pass_s, "pass_sequences": samples,
                   "methods": list(SIMILARITY_METHODS)})

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
