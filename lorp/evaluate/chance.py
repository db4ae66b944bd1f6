"""Chance accuracy of the offline zero-shot tasks: what a model that knows nothing scores.

A task on which a dense model scores at chance cannot show that pruning hurt it;
``benchmarks/task_choice.py`` compares each dense model with :func:`chance_accuracy` to choose the
study's default tasks (docs/evaluation.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np

from ..errors import ConfigError
from ..paths import cache_dir
from .zeroshot import TASKS, prepare_task

#: Tasks whose answer is a two-way label: chance is the majority label's share (always answering it scores that).
MAJORITY_LABEL_TASKS = ("boolq", "rte")


def _choices(name: str, row: dict) -> int:
    if name in ("arc_easy", "arc_challenge", "openbookqa"):
        return len(row["choices"]["text"])
    if name == "hellaswag":
        return len(row["endings"])
    return 2  # winogrande, piqa, copa: two options; boolq, rte: two labels


def chance_accuracy(name: str, items: Iterable[int] | None = None) -> float:
    """Accuracy of a model that knows nothing, on the task's evaluated items (fraction in [0, 1]).

    Multiple-choice tasks (ARC, OpenBookQA, HellaSwag, WinoGrande, PIQA, COPA): the mean
    over items of ``1 / number of choices`` (uniform guessing). Label tasks
    (:data:`MAJORITY_LABEL_TASKS`: BoolQ, RTE): the share of the majority label among the
    items, which a model answering one label always reaches (BoolQ's validation split is
    62 % "yes"). A dense model must score above this, beyond its interval, before the task
    can show that pruning hurt it.

    Args:
        name: an offline task (:data:`TASKS`).
        items: indices of the evaluated items (:func:`chosen_items`; ``None``: every item).
    Raises:
        UnknownNameError: not an offline task.
    """
    prepare_task(name)
    task = TASKS[name]
    with (cache_dir() / "zeroshot" / "data" / f"{name}.{task.split}.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    chosen = rows if items is None else [rows[i] for i in items]
    if not chosen:
        raise ConfigError(f"zero-shot task {name}: no items to compute chance on")
    if name in MAJORITY_LABEL_TASKS:
        labels = [int(r["label"]) for r in chosen]
        return max(labels.count(v) for v in set(labels)) / len(labels)
    return float(np.mean([1 / _choices(name, r) for r in chosen]))


__all__ = ["MAJORITY_LABEL_TASKS", "chance_accuracy"]
