"""Figure 6: zero-shot evaluation with shared contexts and the trimmed LM head / lm-eval's plain HFLM.

Times :func:`lorp.evaluate.zeroshot.zero_shot` three ways, in rotating order: ``shared`` (the
default: each item's context run once for its answer choices from the KV cache, and the LM
head only at the continuation positions lm-eval reads), ``trimmed`` (the trimmed head alone,
``share_context=False``) and ``plain`` (``trim_logits=False``: lm-eval's plain ``HFLM``), all
with lm-eval's task set-up kept from earlier calls in the process. Also timed once: a plain call after forgetting that set-up
(:func:`lorp.evaluate.zeroshot.clear_task_cache`), which is what every call cost before
(a fresh ``TaskManager`` and freshly built tasks each time). An untimed trimmed
call first warms the model and the data.

Reported: time ratios shared / plain and shared / trimmed (median over repeats, lower is
better), the largest difference in a request's log-likelihood (nats) from the plain path,
and whether the per-task scores and per-item correctness are identical.

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


VARIANTS = {"shared": (True, True), "trimmed": (True, False), "plain": (False, False)}  # (trim_logits, share_context)


def run(model_name: str, *, tasks: tuple[str, ...] = DEFAULT_TASKS, limit: int = 20, repeats: int = 2,
        batch_size: int = 8) -> list[Figure]:
    """Measure figure 6 on a bundled model; ``limit`` items per task, ``repeats`` timed rounds of the three paths."""
    loaded = load_model(model_name)
    logliks: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    scores: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    calls = {"trimmed": 0, "full": 0, "shared_contexts": 0}  # model calls of the trimmed-only runs; contexts shared
    original = TrimmedHFLM.loglikelihood
    current = {"variant": "shared"}

    def recorded(self, requests, disable_tqdm: bool = False):
        out = original(self, requests, disable_tqdm=disable_tqdm)
        logliks[current["variant"]].append([ll for ll, _ in out])
        if current["variant"] == "trimmed":
            calls["trimmed"] += self.trimmed_calls
            calls["full"] += self.full_calls
        calls["shared_contexts"] += self.shared_contexts if current["variant"] == "shared" else 0
        return out

    def call(variant: str) -> float:
        trim, share = VARIANTS[variant]
        current["variant"] = variant
        t = time.perf_counter()
        r = zero_shot(loaded.model, loaded.tokenizer, tasks, limit=limit, batch_size=batch_size, trim_logits=trim,
                      share_context=share)
        seconds = time.perf_counter() - t
        scores[variant].append({k: (v["score"], v["correct"]) for k, v in r["tasks"].items()})
        return seconds

    TrimmedHFLM.loglikelihood = recorded
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    try:
        call("shared")  # warm-up: model, data files, set-up kept
        clear_task_cache()
        cold_plain = call("plain")  # what a call cost before: plain HFLM and a fresh lm-eval set-up
        order = list(VARIANTS)
        for i in range(repeats):
            for v in (order if i % 2 == 0 else order[::-1]):
                times[v].append(call(v))
    finally:
        TrimmedHFLM.loglikelihood = original
    reference = logliks["plain"][0]
    diff = {v: max(abs(a - b) for run_ in logliks[v] for a, b in zip(run_, reference, strict=True)) for v in VARIANTS}
    same = {v: all(s == scores["plain"][0] for s in scores[v]) for v in VARIANTS}
    requests = len(reference)
    med = {v: statistics.median(times[v]) for v in VARIANTS}
    head = f"zero-shot ({len(tasks)} tasks x {limit} items, {requests} requests)"
    details = {"seconds": {v: sorted(times[v]) for v in VARIANTS}, "plain_fresh_setup_s": cold_plain,
               "max_abs_loglik_difference": diff, "accuracies_identical": same, "requests": requests,
               "model_calls": calls, "tasks": list(tasks), "limit": limit, "batch_size": batch_size,
               "scores": scores["shared"][0]}
    ratio, spread = ratio_stats(times["shared"], times["plain"])
    trimmed_ratio, trimmed_spread = ratio_stats(times["shared"], times["trimmed"])
    ok = same["shared"] and same["trimmed"] and max(diff.values()) <= 1e-5
    note = (f"shared {med['shared']:.1f} s, trimmed only {med['trimmed']:.1f} s, plain {med['plain']:.1f} s, plain "
            f"with a fresh lm-eval set-up (as before) {cold_plain:.1f} s; max |Δ loglik| vs plain: shared "
            f"{diff['shared']:.1e}, trimmed {diff['trimmed']:.1e} nats; accuracies and per-item correctness "
            f"{'identical' if same['shared'] and same['trimmed'] else 'DIFFERENT'}; "
            f"{calls['shared_contexts']} contexts run once for their choices")
    return [Figure(6, f"{head} shared contexts + trimmed LM head / plain", model_name, ratio, spread,
                   "report; accuracies identical, log-likelihoods within 1e-5", ok, details, note=note),
            Figure(6, f"{head} shared contexts + trimmed LM head / trimmed LM head alone", model_name, trimmed_ratio,
                   trimmed_spread, "report; accuracies identical, log-likelihoods within 1e-5", ok, details,
                   note=note)]


@click.command()
@click.option("--model", "model_name", default="gemma3-270m", show_default=True, help="bundled model")
@click.option("--tasks", default=",".join(DEFAULT_TASKS), show_default=True, help="comma-separated offline tasks")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="items per task")
@click.option("--repeats", default=2, show_default=True, type=click.IntRange(1), help="timed rounds of the three paths")
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
