"""What each builtin healer repairs, and what its fit costs, on one real model at one budget.

    python -m benchmarks.healing [--model smollm2-135m] [--budget 4] [--methods lorp,shortgpt]
                                 [--healers none,linear,sequential]

The default calibration of ``lorp prune`` (32 × 256 tokens of lambada, seed 0) picks each method's removed
set (:func:`lorp.method.selection.select_blocks`) and fits each healer (:func:`lorp.heal.fit.fit_healer`).
Perplexity is on the default screening windows (4096 tokens of ptb and wiki-paragraphs, windows of 256).
Prints, per (method, healer): perplexity per corpus, the share of the log-perplexity gap to dense that
the healer closes, ``(log ppl_unhealed − log ppl_healed) / (log ppl_unhealed − log ppl_dense)``, the fit
seconds in all and per map, and each map's run, the alpha kept (or ``identity``: no map beat none on the held-out
calibration rows), the held-out NLL of each candidate, and the solve seconds.
"""

from __future__ import annotations

import argparse
import copy
import math

import torch

import lorp
from lorp.evaluate.perplexity import perplexity
from lorp.heal.fit import apply_healing, fit_healer
from lorp.heal.holdout import holdout_split
from lorp.heal.linear import branch_output, collect_stats, ridge_to_identity
from lorp.method.capture import capture_similarities
from lorp.method.selection import select_blocks
from lorp.model.blocks import find_blocks
from lorp.model.data import calibration_samples, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.model.pruning import remove_blocks
from lorp.plugins.registry import load_registry

from .capture_overhead import BUILTIN_METRICS


def gap_closed(dense: float, unhealed: float, healed: float) -> float:
    """Share of the log-perplexity gap to dense that healing closes (1: back to dense, 0: no change, < 0: worse).

    >>> round(gap_closed(10.0, 100.0, 10.0 ** 1.5), 3)
    0.5
    """
    gap = math.log(unhealed) - math.log(dense)
    return (math.log(unhealed) - math.log(healed)) / gap if gap else float("nan")


def explicit_model(dense, ids, removed, maps, registry):
    """A copy of ``dense`` with each kept ``linear`` map applied explicitly to its block's MLP branch (a forward hook,
    ``m ↦ m T``) and the blocks removed: what the fold approximates where it cannot be exact (Gemma 3)."""
    maps = [m for m in maps if m["alpha"] != "identity"]
    runs = [tuple(m["run"]) for m in maps]
    fit_rows = holdout_split(ids.shape[0])[0]  # the maps are fitted on the rows that are not held out
    stats = collect_stats(dense, ids[fit_rows], torch.ones_like(ids[fit_rows]), runs, registry=registry)
    model = copy.deepcopy(dense)
    blocks = find_blocks(model, registry)[1]
    for m, run in zip(maps, runs):
        t = torch.from_numpy(ridge_to_identity(stats[run], m["alpha"])).float()
        branch_output(blocks[m["block"]]).register_forward_hook(lambda _m, _i, out, t=t: out @ t)
    remove_blocks(model, list(removed), registry)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--methods", default="lorp,shortgpt")
    parser.add_argument("--healers", default="none,linear,sequential")
    args = parser.parse_args(argv)
    registry = load_registry()
    loaded = load_model(args.model)
    dense = loaded.model
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), 32, 256, seed=0)
    matrices = capture_similarities(dense, ids, {n: registry.similarity(n) for n in BUILTIN_METRICS},
                                    progress=False, registry=registry).matrices
    windows = {c: evaluation_windows(loaded.tokenizer, load_corpus(c, registry), 256, 4096)
               for c in ("ptb", "wiki-paragraphs")}
    base = {c: perplexity(dense, w, progress=False).perplexity for c, w in windows.items()}
    print(f"{args.model}, budget {args.budget}, calibration 32 x 256 lambada (seed 0); dense perplexity "
          + ", ".join(f"{c} {v:.2f}" for c, v in base.items()))
    for method in args.methods.split(","):
        removed = tuple(select_blocks(matrices["cosine"], args.budget, allocation=method, statistics=matrices,
                                      registry=registry).pruned)
        unhealed = None
        for name in args.healers.split(","):
            fit = fit_healer(registry.healer(name), lorp.HealRequest(
                model=dense, removed=removed, calibration=ids, attention_mask=torch.ones_like(ids), registry=registry))
            model = copy.deepcopy(dense)
            apply_healing(model, fit)
            remove_blocks(model, list(removed), registry)
            ppl = {c: perplexity(model, w, progress=False).perplexity for c, w in windows.items()}
            unhealed = unhealed or ppl
            maps = fit.record.get("maps", [])
            closed = ", ".join(f"{c} {gap_closed(base[c], unhealed[c], v):.3f}" for c, v in ppl.items())
            per_map = f"{fit.seconds / len(maps):.1f} s per map" if maps else "no maps"
            print(f"  {method} {list(removed)} {name:<10} " + ", ".join(f"{c} {v:.2f}" for c, v in ppl.items())
                  + f" | gap closed: {closed} | fit {fit.seconds:.1f} s ({per_map})")
            for m in maps:
                fold = m["fold"]
                folded = "" if fold["kind"] == "exact" else (
                    f"; folded behind the norm with c = {fold['scale']:.4f}: calibration MSE explicit "
                    f"{fold['mse_explicit']:.4g}, folded {fold['mse_folded']:.4g}, identity {fold['mse_identity']:.4g}")
                held = "" if m["holdout_nll_identity"] is None else (
                    f", held-out NLL {m['holdout_nll_identity']:.4f} unhealed so far -> {m['holdout_nll_chosen']:.4f} "
                    "(" + ", ".join(f"{a}: {v:.4f}" for a, v in m["holdout_nll"].items()) + ")")
                print(f"      map run {m['run']} -> block {m['block']}: alpha {m['alpha']} (best {m['best_alpha']}), "
                      f"solve {m['solve_seconds']:.2f} s{held}{folded}")
            if name == "linear" and any(m["fold"]["kind"] != "exact" and m["alpha"] != "identity" for m in maps):
                explicit = explicit_model(dense, ids, removed, maps, registry)
                ppl_explicit = {c: perplexity(explicit, w, progress=False).perplexity for c, w in windows.items()}
                print("      the same maps applied explicitly (not foldable): "
                      + ", ".join(f"{c} {v:.2f}" for c, v in ppl_explicit.items()))
            if fit.record.get("unhealed_runs"):
                print(f"      unhealed runs (from block 0): {fit.record['unhealed_runs']}")


if __name__ == "__main__":
    main()
