"""What each part of the second evidence issue adds to a model's study, at the default study's settings.

    python -m benchmarks.evidence_cost [MODEL] [DETAIL_BUDGET]     (default smollm2-135m 8)

Measured on a fresh sweep folder of the model at the default preset's settings (32 × 256 calibration
tokens of lambada, 8 screening windows of 256 tokens per corpus, SLEB on 1 sequence, its last 128
tokens scored):

* zero-shot: the dense model on the default tasks at 100 and at 20 items per task (one row; the study
  scores dense and every detail method);
* the random floor: 5 random removed sets at the detail budget on the screening windows
  (:func:`lorp.run.screening.random_floor`, one model load and one dense pass included);
* SLEB at 8× its scoring sequences at the detail budget (:func:`lorp.run.screening.sleb_at`: the search
  and its picks' perplexity);
* the calibration-corpus axis: the picks from each of lambada, ptb and wiki-paragraphs
  (:func:`lorp.study.picks.statistics_picks`, one calibration pass per corpus; lambada's is the study's
  own pass, computed here first).

Each figure is wall seconds on this machine, each part run once (no repeats: these are minutes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from lorp.evaluate.zeroshot import zero_shot
from lorp.model.models import load_model, num_blocks_of
from lorp.run.pipeline import PruneConfig
from lorp.run.screening import random_floor, sleb_at
from lorp.run.sweep import SweepConfig
from lorp.study.calibration_corpus import CALIBRATION_CORPORA
from lorp.study.parameters import notebook_defaults, notebook_parameters, split_list
from lorp.study.picks import statistics_picks


def main(model_name: str = "smollm2-135m", detail: int = 8) -> None:
    defaults = notebook_defaults(notebook_parameters())
    tasks = split_list(defaults["zero_shot_tasks"], "zero_shot_tasks")
    base = PruneConfig(model=model_name, num_samples=32, seq_len=256, eval_tokens=2048, progress=False,
                       save_model=False, sleb_samples=1, sleb_tokens=128)
    config = SweepConfig(base=base, methods=("lorp", "shortgpt", "streamline", "angular", "sleb", "last"),
                         budgets=(detail,))
    loaded = load_model(model_name)
    times = {}
    for limit in (100, 20):
        t = time.perf_counter()
        zero_shot(loaded.model, loaded.tokenizer, tasks, limit=limit, seed=0)
        times[f"zero-shot, dense, {len(tasks)} tasks × {limit} items"] = time.perf_counter() - t
    del loaded
    with tempfile.TemporaryDirectory() as folder:
        for corpus in CALIBRATION_CORPORA:  # lambada first: the study's own pass, which the study has anyway
            t = time.perf_counter()
            statistics_picks(replace(base, calibration=corpus), config.methods, config.budgets)
            times[f"calibration-corpus axis: {corpus}"] = time.perf_counter() - t
        t = time.perf_counter()
        random_floor(config, Path(folder), detail, 5, num_blocks=num_blocks_of(model_name))
        times[f"random floor: 5 draws at budget {detail}"] = time.perf_counter() - t
        for samples in (1, 8):
            t = time.perf_counter()
            got = sleb_at(config, Path(folder), detail, samples)
            times[f"SLEB at budget {detail} on {samples} × 128 tokens (search {got['seconds']:.0f} s)"] = \
                time.perf_counter() - t
    print(f"{model_name}, detail budget {detail}, tasks {', '.join(tasks)}:")
    for name, seconds in times.items():
        print(f"  {name}: {seconds:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m", int(sys.argv[2]) if len(sys.argv) > 2 else 8)
