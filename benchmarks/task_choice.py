"""Which zero-shot tasks can show damage: each dense bundled model's accuracy on every offline task, against chance.

A task on which a dense model scores at chance cannot show that pruning hurt it. For
each bundled model and each offline task (:data:`lorp.evaluate.zeroshot.TASKS`) this
scores the dense model on ``limit`` items drawn with ``seed`` (the study's own draw,
:func:`lorp.evaluate.zeroshot.chosen_items`) and prints its accuracy under the task's
metric with a 95 % Wilson interval, the task's chance accuracy
(:func:`lorp.evaluate.chance.chance_accuracy`) and the margin: accuracy minus chance,
and the lower Wilson end minus chance. ``docs/zero_shot.md`` records a run of it and
the task choice it led to.

    python -m benchmarks.task_choice                      # three bundled models, 100 items per task
    python -m benchmarks.task_choice --models smollm2-135m --tasks arc_easy,piqa --limit 20
"""

from __future__ import annotations

import time

import click

from lorp.evaluate.accuracy_uncertainty import wilson_interval
from lorp.evaluate.chance import chance_accuracy
from lorp.evaluate.zeroshot import TASKS, zero_shot
from lorp.model.models import load_model


def run(models: list[str], tasks: list[str], limit: int, seed: int = 0) -> list[dict]:
    """One row per (model, task): ``model, task, items, accuracy, low, high, chance, metric, seconds``."""
    rows = []
    for name in models:
        loaded = load_model(name)
        for task in tasks:
            t = time.perf_counter()
            r = zero_shot(loaded.model, loaded.tokenizer, [task], limit=limit, seed=seed)["tasks"][task]
            k, n = sum(r["correct"]), len(r["correct"])
            low, high = wilson_interval(k, n)
            rows.append({"model": name, "task": task, "items": n, "accuracy": k / n, "low": low, "high": high,
                         "chance": chance_accuracy(task, r["item_indices"]), "metric": r["metric"],
                         "seconds": time.perf_counter() - t})
            row = rows[-1]
            print(f"{name:14s} {task:14s} {100 * row['accuracy']:5.1f} % [{100 * low:5.1f}, {100 * high:5.1f}] "
                  f"chance {100 * row['chance']:4.1f} % ({row['metric']}, {n} items, {row['seconds']:.0f} s)", flush=True)
        del loaded
    return rows


def markdown(rows: list[dict]) -> str:
    """The table ``docs/zero_shot.md`` quotes: accuracy [Wilson] and its margin over chance per model and task."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    by = {(r["model"], r["task"]): r for r in rows}
    lines = ["| task | chance | " + " | ".join(models) + " | lowest margin (Wilson low − chance) |",
             "|---|---:|" + "---:|" * (len(models) + 1)]
    for t in tasks:
        got = [by[(m, t)] for m in models if (m, t) in by]
        cells = [f"{100 * r['accuracy']:.0f} [{100 * r['low']:.0f}, {100 * r['high']:.0f}]" if r else "–"
                 for r in (by.get((m, t)) for m in models)]
        margin = min(r["low"] - r["chance"] for r in got)
        lines.append(f"| {t} | {100 * got[0]['chance']:.0f} | " + " | ".join(cells) + f" | {100 * margin:+.0f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--models", default="smollm2-135m,gemma3-270m,qwen2.5-0.5b", show_default=True)
@click.option("--tasks", default=",".join(TASKS), show_default=True)
@click.option("--limit", default=100, show_default=True, help="items per task, drawn with --seed")
@click.option("--seed", default=0, show_default=True)
def main(models: str, tasks: str, limit: int, seed: int) -> None:
    rows = run([m for m in models.split(",") if m], [t for t in tasks.split(",") if t], limit, seed)
    print()
    print(markdown(rows))
    print(f"total {sum(r['seconds'] for r in rows):.0f} s")


if __name__ == "__main__":
    main()
