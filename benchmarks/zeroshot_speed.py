"""Figure 6: zero-shot evaluation with the LM head trimmed to the read positions / lm-eval's plain HFLM.

Times :func:`lorp.evaluate.zeroshot.zero_shot` with ``trim_logits=True`` (the LM head only
at the continuation positions lm-eval reads) and ``trim_logits=False`` (lm-eval's
plain ``HFLM``), interleaved, both with lm-eval's task set-up kept from earlier
calls in the process. Also timed once: a plain call after forgetting that set-up
(:func:`lorp.evaluate.zeroshot.clear_task_cache`), which is what every call cost before
(a fresh ``TaskManager`` and freshly built tasks each time). An untimed trimmed
call first warms the model and the data.

Reported: time ratio trimmed / plain (median over repeats, lower is better), the
trimmed time against the fresh-set-up plain call, the largest difference in a
request's log-likelihood (nats) between the two paths, and whether the per-task
scores and per-item correctness are identical.

    python -m benchmarks.zeroshot_speed --model gemma3-270m
    python -m benchmarks.zeroshot_speed --model smollm2-135m --tasks arc_easy,piqa --limit 10 --repeats 1
"""

from __future__ import annotations

import statistics
import time

import click

from lorp.evaluate.zeroshot import TrimmedHFLM, clear_task_cache, zero_shot
from lorp.model.models import load_model

from ._common import Figure, ratio_stats

DEFAULT_TASKS = ("arc_easy", "arc_challenge", "piqa", "winogrande")


def run(model_name: str, *, tasks: tuple[str, ...] = DEFAULT_TASKS, limit: int = 20, repeats: int = 2,
        batch_size: int = 8) -> list[Figure]:
    """Measure figure 6 on a bundled model; ``limit`` items per task, ``repeats`` timed pairs."""
    loaded = load_model(model_name)
    logliks: dict[bool, list[list[float]]] = {True: [], False: []}
    scores: dict[bool, list[dict]] = {True: [], False: []}
    calls = {"trimmed": 0, "full": 0}  # model calls of the trimmed runs: with logits_to_keep / in full
    original = TrimmedHFLM.loglikelihood

    def recorded(self, requests, disable_tqdm: bool = False):
        out = original(self, requests, disable_tqdm=disable_tqdm)
        logliks[self.trim].append([ll for ll, _ in out])
        if self.trim:
            calls["trimmed"] += self.trimmed_calls
            calls["full"] += self.full_calls
        return out

    def call(trim: bool) -> float:
        t = time.perf_counter()
        r = zero_shot(loaded.model, loaded.tokenizer, tasks, limit=limit, batch_size=batch_size, trim_logits=trim)
        seconds = time.perf_counter() - t
        scores[trim].append({k: (v["score"], v["correct"]) for k, v in r["tasks"].items()})
        return seconds

    TrimmedHFLM.loglikelihood = recorded
    try:
        call(True)  # warm-up: model, data files, set-up kept
        clear_task_cache()
        cold_plain = call(False)  # what a call cost before: plain HFLM and a fresh lm-eval set-up
        t_trim, t_plain = [], []
        for i in range(repeats):
            for trim in ((True, False) if i % 2 == 0 else (False, True)):
                (t_trim if trim else t_plain).append(call(trim))
    finally:
        TrimmedHFLM.loglikelihood = original
    ratio, spread = ratio_stats(t_trim, t_plain)
    reference = logliks[False][0]
    diff = max(abs(a - b) for run_ in logliks[True] + logliks[False] for a, b in zip(run_, reference, strict=True))
    same = all(s == scores[False][0] for s in scores[True] + scores[False])
    requests = len(reference)
    trim_med = statistics.median(t_trim)
    return [Figure(6, f"zero-shot ({len(tasks)} tasks x {limit} items, {requests} requests) trimmed LM head / plain",
                   model_name, ratio, spread, "report; accuracies identical, log-likelihoods within 1e-5",
                   same and diff <= 1e-5,
                   {"trimmed_s": sorted(t_trim), "plain_s": sorted(t_plain), "plain_fresh_setup_s": cold_plain,
                    "trimmed_over_plain_fresh_setup": trim_med / cold_plain, "max_abs_loglik_difference": diff,
                    "accuracies_identical": same, "requests": requests, "trimmed_run_model_calls": calls, "tasks": list(tasks), "limit": limit,
                    "batch_size": batch_size, "scores": scores[True][0]},
                   note=f"trimmed {trim_med:.1f} s, plain {statistics.median(t_plain):.1f} s, plain with a fresh "
                        f"lm-eval set-up (as before) {cold_plain:.1f} s (trimmed / that = {trim_med / cold_plain:.3f}); "
                        f"max |Δ loglik| = {diff:.1e} nats; accuracies and per-item correctness "
                        f"{'identical' if same else 'DIFFERENT'}")]


@click.command()
@click.option("--model", "model_name", default="gemma3-270m", show_default=True, help="bundled model")
@click.option("--tasks", default=",".join(DEFAULT_TASKS), show_default=True, help="comma-separated offline tasks")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="items per task")
@click.option("--repeats", default=2, show_default=True, type=click.IntRange(1), help="timed trimmed/plain pairs")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
def main(model_name: str, tasks: str, limit: int, repeats: int, batch_size: int) -> None:
    """Print figure 6 for one model."""
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    names = tuple(t.strip() for t in tasks.split(",") if t.strip())
    for f in run(model_name, tasks=names, limit=limit, repeats=repeats, batch_size=batch_size):
        print(f.line(), f.note)
        print({k: v for k, v in f.details.items() if k != "scores"})


if __name__ == "__main__":
    main()
