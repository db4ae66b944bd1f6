"""Does the healing-aware selector win once every method is healed? ``span-heal-nll`` against healed baselines.

Runs one sweep (the study's calibration and screening windows: 32 × 256 lambada tokens, 2048 screening
tokens per corpus, SLEB on 2 sequences) with ``--healers none,linear`` at the given budgets, then prints for
each budget: every method's removed set and geometric-mean perplexity unhealed and healed by ``linear`` (with the
alpha or identity ``linear`` kept per run of removed blocks), and
``span-heal-nll + linear`` against each baseline + ``linear`` (paired t-interval of the perplexity ratio over the
screening windows, :func:`lorp.evaluate.perplexity_uncertainty.compare_perplexity`), with the selection's and
the healed evaluations' seconds. The selector's settings come from calibration data; the windows are the
study's screening windows, so this is a screening result, not the confirmation check.

    python -m benchmarks.heal_selector [--model smollm2-135m] [--budgets 8] [--out runs/heal-selector]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lorp.evaluate.perplexity import geometric_mean_perplexity
from lorp.evaluate.perplexity_uncertainty import compare_perplexity
from lorp.run.cells import CellsFailedError
from lorp.run.pipeline import PruneConfig
from lorp.run.records import CellResult
from lorp.run.sweep import SweepConfig, execute_sweep
from lorp.study.quality_floor import study_cell
from lorp.study.healing import kept_in_words

SELECTOR = "span-heal-nll"
BASELINES = ("lorp", "shortgpt", "streamline", "angular", "sleb", "last")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--budgets", default="8")
    parser.add_argument("--out", default="runs/heal-selector")
    args = parser.parse_args(argv)
    budgets = tuple(int(b) for b in args.budgets.split(","))
    base = PruneConfig(model=args.model, calibration="lambada", num_samples=32, seq_len=256,
                       eval_corpora=("ptb", "wiki-paragraphs"), eval_seq_len=256, eval_tokens=2048, sleb_samples=2,
                       progress=False)
    config = SweepConfig(base=base, methods=(SELECTOR, *BASELINES), budgets=budgets, healers=("none", "linear"))
    t = time.perf_counter()
    folder = Path(f"{args.out}-{args.model}")
    try:
        landed = execute_sweep(config, folder).cells
    except CellsFailedError as exc:  # print what landed, and say what did not
        print(f"not every cell landed: {exc}")
        landed = [CellResult.from_json(json.loads(f.read_text())) for f in sorted((folder / "cells").glob("*.json"))]
    print(f"sweep: {time.perf_counter() - t:.0f} s wall ({args.model}, budgets {list(budgets)})")
    cells = {(c.spec.method, c.spec.budget, c.spec.healer): c for c in landed}
    for budget in budgets:
        print(f"\nbudget {budget}")
        rows = {}
        for (method, b, healer), c in sorted(cells.items()):
            if b != budget:
                continue
            ev = c.evaluation
            rows[method, healer] = study_cell(method, b, list(ev.removed), ev.perplexity)
            heal = ev.healing or {}
            kept = [m.get("alpha") for m in (heal.get("record") or {}).get("maps", [])]
            print(f"  {method:14s} {healer:7s} {sorted(ev.removed)!s:34s} ppl {geometric_mean_perplexity(ev.perplexity):10.2f}"
                  f"  select {c.timings.get('selection', 0):6.1f} s  fit {heal.get('fit_seconds') or 0:5.1f} s"
                  f"  eval {c.timings.get('evaluation', 0):6.1f} s" + (f"  kept {kept_in_words(kept)}" if heal else ""))
        sel = cells.get((SELECTOR, budget, "none"))
        if sel is not None:
            print("  selector's pick:", sel.selection.removals[0].reason, "| passes", sel.nll_passes)
        mine = rows.get((SELECTOR, "linear"))
        for method in BASELINES:
            other = rows.get((method, "linear"))
            cmp = compare_perplexity(other, mine) if mine and other else None
            if cmp is not None:
                verdict = "wins" if cmp.ratio_high < 1 else "loses" if cmp.ratio_low > 1 else "tie"
                print(f"  {SELECTOR}+linear / {method}+linear: {cmp.ratio:.3f} [{cmp.ratio_low:.3f}, "
                      f"{cmp.ratio_high:.3f}] ({verdict})")


if __name__ == "__main__":
    main()
