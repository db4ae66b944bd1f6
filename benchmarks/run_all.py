"""Run every benchmark on the given models and write ``reports/performance.md``.

    python -m benchmarks.run_all                      # smollm2-135m and gemma3-270m
    python -m benchmarks.run_all --models smollm2-135m --repeats 3 --out /tmp/perf.md

Run it on a quiet machine: other processes on the same cores distort every figure.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from lorp.paths import REPORTS_DIR
from lorp.run.provenance import git_commit, machine, package_versions
from lorp.store.atomic import write_json, write_text

from . import capture_overhead, decode, memory, perplexity_reuse
from ._common import Figure

WHY_MISSED = {
    4: "greedy decoding of a small model on CPU is bound by per-token overhead that does not shrink with depth "
       "(Python and generate() bookkeeping, sampling over the full vocabulary, KV-cache updates), so removing "
       "blocks buys less than the FLOPs ratio promises; the gap closes as models grow",
}


def render(figures: list[Figure], command: str, seconds: float) -> str:
    m = machine()
    lines = ["# Performance", "",
             "Each figure is a ratio of two things measured side by side in the same run, repeated; the median is "
             "shown with the smallest and largest ratio over the repeats.", "",
             f"- Machine: {m.get('platform', '')}; {os.cpu_count()} CPU cores; {m.get('processor', '')}; "
             f"torch threads {m.get('torch_threads', '?')}; GPU: {m.get('cuda', 'none')}",
             f"- Software: lorp {package_versions()['lorp']} at commit {git_commit()}, torch "
             f"{package_versions()['torch']}, transformers {package_versions()['transformers']}",
             f"- Command: `{command}` ({seconds / 60:.1f} min, {datetime.now(timezone.utc):%Y-%m-%d})", "",
             "| # | figure | model | median | min–max | goal | status |", "|---:|---|---|---:|---|---|---|"]
    for f in figures:
        status = {True: "met", False: "**missed**", None: "reported"}[f.met]
        lines.append(f"| {f.number} | {f.name} | {f.model} | {f.ratio:.3f} | {f.spread[0]:.3f}–{f.spread[1]:.3f} | "
                     f"{f.goal} | {status} |")
    lines += ["", "How to read: figure 1 times the capture of each calibration sequence and a plain forward of the "
              "same sequence back to back, in alternating order, so that load coming and going on the machine hits "
              "both alike; each run's ratio is its summed capture time / summed plain time, the median over runs is "
              "shown with their min–max and the note gives the spread of the single pairs. A ratio near 1 means the "
              "similarity metrics cost nothing next to the forward pass (they add one normalisation and one N x N "
              "product per batch). Figure 2 is what choosing blocks for every similarity-based method at five "
              "budgets adds to that pass. Figure 3 is how much the live tensor memory grows above the loaded model "
              "during the capture, counted exactly by torch's CPU allocator (profiler memory events), with 64 "
              "sequences / with 8: near 1 means memory does not grow with the calibration set (streaming capture, "
              "one batch alive at a time); a capture keeping every batch would approach 8. Its note gives both "
              "growths in MiB and the resident-memory (RSS) growth, a noisier secondary number. Figure 4 compares "
              "the measured decode speed-up with what the removed FLOPs promise; figure 5 below 1 is the time saved "
              "by restarting each pruned variant from the dense hidden states, with identical numbers. On this shared "
              "2-core machine single runs vary by 10-20 %: where a spread straddles a goal, only the median is "
              "meaningful.",
              "", "## Notes", ""]
    for f in figures:
        if f.note:
            lines.append(f"- [{f.number}] {f.model}: {f.note}.")
    for number, why in WHY_MISSED.items():
        if any(f.number == number and f.met is False for f in figures):
            lines.append(f"- Figure {number} misses its goal: {why}.")
    lines += ["", "Beyond one device: `lorp.model.models.load_model(..., device_map=...)` dispatches a model with accelerate "
              "(multi-GPU, CPU or disk offload); `tests/test_offload.py` splits SmolLM2-135M across CPU and disk and "
              "checks that S (two metrics), dense and pruned perplexity match the undispatched model to 1e-5.", ""]
    return "\n".join(lines)


#: Headings of sections measured by other scripts (``benchmarks/study_time.py``, ``benchmarks/ray_executor.py``);
#: run_all keeps everything from the first of them on when rewriting the report.
KEPT_SECTIONS = ("## Where the default study's time goes", "## Ray executor")


@click.command()
@click.option("--models", default="smollm2-135m,gemma3-270m", show_default=True, help="comma-separated bundled models")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(1))
@click.option("--out", default=str(REPORTS_DIR / "performance.md"), show_default=True, help="Markdown report")
@click.option("--only", default="1,2,3,4,5", show_default=True, help="comma-separated figure numbers to run")
def main(models: str, repeats: int, out: str, only: str) -> None:
    """Run the benchmarks, print each figure, write the Markdown report (and a JSON next to it)."""
    wanted = {int(x) for x in only.split(",") if x.strip()}
    start = time.perf_counter()
    figures: list[Figure] = []
    for model in [m.strip() for m in models.split(",") if m.strip()]:
        steps = [({1, 2}, lambda: capture_overhead.run(model, repeats=repeats)),
                 ({3}, lambda: memory.run(model, repeats=1)),
                 ({4}, lambda: decode.run(model, repeats=repeats)),
                 ({5}, lambda: perplexity_reuse.run(model, repeats=max(1, repeats - 1)))]
        for numbers, step in steps:
            if numbers & wanted:
                for f in step():
                    if f.number in wanted:
                        print(f.line(), f.note, flush=True)
                        figures.append(f)
    command = "python -m benchmarks.run_all " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    kept = ""
    if Path(out).is_file():  # sections measured by other scripts (benchmarks/ray_executor.py) stay
        old = Path(out).read_text()
        starts = [old.index(h) for h in KEPT_SECTIONS if h in old]
        kept = old[min(starts):] if starts else ""
    write_text(out, render(figures, command.strip(), time.perf_counter() - start) + ("\n" + kept if kept else ""))
    write_json(out.rsplit(".", 1)[0] + ".json", [vars(f) for f in figures])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
