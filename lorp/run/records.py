"""Typed records of a cell: its spec, settings, evaluation and result, and the run context they share.

Every record is a dataclass that round-trips to JSON: ``record.to_json()`` gives a
plain dict that starts with ``"schema"`` (the record kind, e.g. ``"lorp.cell"``) and
``"version"``; ``Kind.from_json(data)`` rebuilds it and refuses another kind or a
newer version with one :class:`lorp.errors.ConfigError` line. :func:`lorp.run.record_schema.schema_of`
says which kind a loaded ``results.json`` holds. The records of a whole sweep and study
(``sweep.json``, ``results.json``) are in :mod:`lorp.run.study_records`.

Units: perplexity is ``exp(mean token NLL)`` (dimensionless), NLL in nats, times
in seconds, speeds in generated tokens per second, FLOPs per generated token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..evaluate.perplexity import Perplexity, geometric_mean_perplexity
from ..method.selection import Selection
from ..plugins.components import Removal
from .record_schema import CELL_SCHEMA, EVALUATION_SCHEMA, check_record, field_names, json_ready

@dataclass(frozen=True)
class EvalSettings:
    """How a pruned model is evaluated: everything besides the model and the removed blocks that changes the numbers.

    Attributes:
        corpora: perplexity corpora (their evaluation parts).
        seq_len: tokens per perplexity window.
        tokens: token limit per corpus (``None``: all).
        batch_size: windows per forward call.
        zero_shot_tasks: lm-eval tasks (empty: no zero-shot accuracy).
        zero_shot_limit: items per task (``None``: all).
        zero_shot_seed: seed of the item draw.
        decode_tokens: tokens per greedy decode-speed run (0: no speed).
        windows: placement of the perplexity windows: ``"spread"`` (seeded, one per equal stratum of the
            whole evaluation text, :func:`lorp.model.data.evaluation_windows`) or ``"first"`` (the first
            consecutive windows, what records written before spread windows hold).
    """

    corpora: tuple[str, ...]
    seq_len: int
    tokens: int | None
    batch_size: int = 1
    zero_shot_tasks: tuple[str, ...] = ()
    zero_shot_limit: int | None = None
    zero_shot_seed: int = 0
    decode_tokens: int = 0
    windows: str = "spread"

    @property
    def detailed(self) -> bool:
        """Whether zero-shot accuracy or decode speed is measured."""
        return bool(self.zero_shot_tasks) or bool(self.decode_tokens)

    def to_json(self) -> dict[str, Any]:
        """Plain dict (tuples as lists)."""
        return json_ready(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalSettings:
        """Inverse of :meth:`to_json`."""
        return cls(**{"windows": "first", **data, "corpora": tuple(data["corpora"]),
                      "zero_shot_tasks": tuple(data["zero_shot_tasks"])})


@dataclass(frozen=True)
class CellSpec:
    """One unit of work: remove ``budget`` blocks chosen by ``method`` (seeded by ``seed``) and evaluate.

    Attributes:
        method: allocation strategy (plugin name).
        budget: blocks to remove (>= 1).
        seed: seed of the selection (clustering, random baselines).
        evaluation: how the pruned model is evaluated.
        healer: the healer fitted (on the calibration draw of ``seed``) before the blocks are deleted
            (:mod:`lorp.heal`; ``"none"``: unhealed, the default). Cells of one (method, budget, seed)
            share one selection whatever their healer.
    """

    SCHEMA: ClassVar[str] = "lorp.cell_spec"
    VERSION: ClassVar[int] = 1

    method: str
    budget: int
    seed: int
    evaluation: EvalSettings
    healer: str = "none"

    @property
    def name(self) -> str:
        """File-safe name, ``<method>-b<budget>-s<seed>``, plus ``-h<healer>`` for a healed cell."""
        return f"{self.method}-b{self.budget}-s{self.seed}" + (f"-h{self.healer}" if self.healed else "")

    @property
    def healed(self) -> bool:
        """Whether a healer other than ``none`` runs."""
        return self.healer != "none"

    def to_json(self) -> dict[str, Any]:
        """Tagged plain dict (``healer`` only for a healed cell, so unhealed specs read as before healing existed)."""
        return {"schema": self.SCHEMA, "version": self.VERSION, "method": self.method, "budget": self.budget,
                "seed": self.seed, "evaluation": self.evaluation.to_json(),
                **({"healer": self.healer} if self.healed else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellSpec:
        """Inverse of :meth:`to_json`; raises :class:`ConfigError` on another kind of record."""
        check_record(cls, data)
        return cls(data["method"], int(data["budget"]), int(data["seed"]), EvalSettings.from_json(data["evaluation"]),
                   str(data.get("healer", "none")))


@dataclass(frozen=True)
class TaskScore:
    """Zero-shot accuracy of one task.

    Attributes:
        score: the reported metric (``acc_norm`` where the task has it, else ``acc``), in [0, 1].
        metric: which metric ``score`` is.
        items: items evaluated.
        split: dataset split.
        acc, acc_norm: both metrics (``acc_norm`` ``None`` where the task lacks it).
        item_indices: the drawn items (``None``: every item).
        correct: 1 (right) or 0 (wrong) per evaluated item under ``metric``, in item order
            (``item_indices`` order), so that its mean is ``score``; ``None`` in records written
            before it was kept.
    """

    score: float
    metric: str
    items: int
    split: str
    acc: float | None = None
    acc_norm: float | None = None
    item_indices: list[int] | None = None
    correct: list[int] | None = None


@dataclass(frozen=True)
class ZeroShot:
    """Zero-shot accuracy over tasks (:func:`lorp.evaluate.zeroshot.zero_shot`).

    Attributes:
        tasks: per task score and item count.
        average: mean of the task scores.
        limit, seed: the item draw.
        not_available: tasks without an offline copy and why.
    """

    tasks: dict[str, TaskScore]
    average: float
    limit: int | None = None
    seed: int = 0
    not_available: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ZeroShot | None:
        """From :func:`lorp.evaluate.zeroshot.zero_shot`'s dict (or this record's JSON); ``None`` passes through."""
        if data is None:
            return None
        known = field_names(TaskScore)
        tasks = {t: TaskScore(**{k: v for k, v in s.items() if k in known}) for t, s in data["tasks"].items()}
        return cls(tasks, float(data["average"]), data.get("limit"), data.get("seed", 0),
                   dict(data.get("not_available") or {}))


@dataclass(frozen=True)
class Speed:
    """Greedy decode speed (:func:`lorp.evaluate.speed.decode_speed`) and the FLOPs ideal.

    Attributes:
        tokens_per_s: median generated tokens per second (prefill excluded).
        tokens_per_s_runs: every timed repeat.
        new_tokens, prompt_tokens, repeats: the measurement.
        flops_per_token: FLOPs per generated token of the measured model.
    """

    tokens_per_s: float
    tokens_per_s_runs: list[float]
    new_tokens: int
    prompt_tokens: int
    repeats: int
    flops_per_token: int

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Speed | None:
        """From a plain dict; ``None`` passes through."""
        return None if data is None else cls(**{k: data[k] for k in field_names(cls)})


def _perplexities(data: dict[str, Any]) -> dict[str, Perplexity]:
    return {c: v if isinstance(v, Perplexity) else Perplexity(**v) for c, v in data.items()}


@dataclass(frozen=True)
class Evaluation:
    """What evaluating one pruned (or the dense) model gives; cached by (model, removed set, settings).

    Attributes:
        removed: sorted removed blocks (empty: dense).
        perplexity: per corpus: perplexity, mean NLL, tokens scored, windows, seconds.
        parameters: parameters of the model with ``removed`` deleted.
        zero_shot: accuracy per task with item counts, or ``None``.
        speed: decode speed, or ``None``.
        seconds: wall time of this evaluation.
        stage_seconds: that wall time by stage: ``perplexity``, ``zero_shot``, ``speed`` (seconds;
            empty in records written before it existed), and ``heal_fit`` for a healed model.
        healing: for a healed model, ``{"healer", "settings", "record", "fit_seconds", "calibration_seed"}``
            (the record as :attr:`lorp.heal.fit.HealFit.record`); ``None`` unhealed.
    """

    SCHEMA: ClassVar[str] = EVALUATION_SCHEMA
    VERSION: ClassVar[int] = 1

    removed: tuple[int, ...]
    perplexity: dict[str, Perplexity]
    parameters: int
    zero_shot: ZeroShot | None = None
    speed: Speed | None = None
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    healing: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Tagged plain dict."""
        return {"schema": self.SCHEMA, "version": self.VERSION, **json_ready(asdict(self))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        """Inverse of :meth:`to_json`; raises :class:`ConfigError` on another kind of record."""
        check_record(cls, data)
        return cls(tuple(data["removed"]), _perplexities(data["perplexity"]), int(data["parameters"]),
                   ZeroShot.from_dict(data.get("zero_shot")), Speed.from_dict(data.get("speed")),
                   float(data.get("seconds", 0.0)), {k: float(v) for k, v in (data.get("stage_seconds") or {}).items()},
                   data.get("healing"))


def _selection_from_json(d: dict[str, Any]) -> Selection:
    return Selection(num_blocks=d["num_blocks"], budget=d["budget"], rls=d["rls"], k=d["k"], k_source=d["k_source"],
                     labels=d["labels"], removals=[Removal(**r) for r in d["removals"]], protected=d["protected"],
                     components=dict(d.get("components") or {}))


@dataclass(frozen=True)
class CellResult:
    """A finished cell: the selection, its evaluation, timings and provenance.

    Attributes:
        spec: the cell.
        identity: hash of the settings every cell of its sweep shares.
        selection: RLS, K, labels and the removals (block, stage, cluster, score, reason).
        evaluation: perplexity per corpus, parameters, zero-shot and speed where measured.
        timings: seconds: ``selection``, ``evaluation`` (0 when reused), ``total``, and where computed
            ``evaluation_perplexity``, ``evaluation_zero_shot``, ``evaluation_speed``.
        evaluation_key: key of the evaluation in the removed-set cache.
        evaluation_reused: the evaluation was computed for another cell removing the same blocks.
        nll_passes: forward passes of a model-scoring strategy (SLEB): ``{"full", "partial"}``.
        plugin: provenance of the allocation strategy's plugin.
        code: the code string of every component the cell depends on, ``{"<kind>:<name>": code}``
            (:func:`lorp.run.fingerprint.cell_code`); a cached cell whose code differs is recomputed.
    """

    SCHEMA: ClassVar[str] = CELL_SCHEMA
    #: 2: perplexity on spread screening windows (:attr:`EvalSettings.windows`); version-1 cells read as ``"first"``.
    VERSION: ClassVar[int] = 2

    spec: CellSpec
    identity: str
    selection: Selection
    evaluation: Evaluation
    timings: dict[str, float]
    evaluation_key: str = ""
    evaluation_reused: bool = False
    nll_passes: dict[str, int] | None = None
    plugin: dict[str, Any] = field(default_factory=dict)
    code: dict[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def budget(self) -> int:
        return self.spec.budget

    @property
    def pruned(self) -> list[int]:
        """Sorted removed blocks."""
        return self.selection.pruned

    @property
    def removals(self) -> list[Removal]:
        return self.selection.removals

    @property
    def perplexity(self) -> dict[str, Perplexity]:
        return self.evaluation.perplexity

    def mean_perplexity(self) -> float:
        """Geometric mean over corpora (:func:`lorp.evaluate.perplexity.geometric_mean_perplexity`)."""
        return geometric_mean_perplexity(self.perplexity)

    def to_json(self) -> dict[str, Any]:
        """Tagged plain dict (``method``, ``budget`` and ``pruned`` repeated at the top for readers of the file)."""
        return {"schema": self.SCHEMA, "version": self.VERSION, "method": self.method, "budget": self.budget,
                "seed": self.spec.seed, "pruned": self.pruned, "identity": self.identity, "spec": self.spec.to_json(),
                "selection": json_ready(self.selection.to_dict()), "evaluation": self.evaluation.to_json(),
                "timings": dict(self.timings), "evaluation_key": self.evaluation_key,
                "evaluation_reused": self.evaluation_reused, "nll_passes": self.nll_passes,
                "plugin": json_ready(self.plugin), "code": dict(self.code)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        """Inverse of :meth:`to_json`; raises :class:`ConfigError` on another kind of record."""
        check_record(cls, data)
        return cls(CellSpec.from_json(data["spec"]), data["identity"], _selection_from_json(data["selection"]),
                   Evaluation.from_json(data["evaluation"]), dict(data["timings"]), data.get("evaluation_key", ""),
                   bool(data.get("evaluation_reused")), data.get("nll_passes"), dict(data.get("plugin") or {}),
                   dict(data.get("code") or {}))


@dataclass(frozen=True)
class CellFailure:
    """A cell that raised: its spec, the exception and the traceback (the sweep's other cells still land).

    Attributes:
        spec: the cell.
        stage: ``"selection"`` or ``"evaluation"``.
        error: ``"<ExceptionType>: <message>"``.
        traceback: the formatted traceback, as raised on the worker.
    """

    spec: CellSpec
    stage: str
    error: str
    traceback: str

    def __str__(self) -> str:
        return f"cell {self.spec.name} failed in {self.stage}: {self.error}"


@dataclass(frozen=True)
class RunContext:
    """What every cell of a run shares: the model, the corpora and their windows, the calibration result.

    Attributes:
        model: ``{"spec", "name", "source", …model info}`` of the loaded model.
        num_blocks: decoder blocks of the dense model.
        parameters: parameters of the dense model.
        block_parameters: parameters per block.
        calibration: corpus, source, samples, tokens, forward passes, seconds, cache keys.
        similarity_metric: the metric behind ``similarity``.
        similarity: float64 ``[N, N]`` S of the block inputs.
        eval_sources: where each evaluation corpus came from.
        eval_windows: ``{corpus: [windows, tokens per window]}``.
    """

    SCHEMA: ClassVar[str] = "lorp.run_context"
    VERSION: ClassVar[int] = 1

    model: dict[str, Any]
    num_blocks: int
    parameters: int
    block_parameters: list[int]
    calibration: dict[str, Any]
    similarity_metric: str
    similarity: np.ndarray = field(repr=False)
    eval_sources: dict[str, str] = field(default_factory=dict)
    eval_windows: dict[str, list[int]] = field(default_factory=dict)

    def parameters_without(self, removed: Any) -> int:
        """Parameters left after deleting the blocks ``removed``."""
        return self.parameters - sum(self.block_parameters[b] for b in removed)

    def to_json(self) -> dict[str, Any]:
        """Tagged plain dict (S as a list of lists)."""
        return {"schema": self.SCHEMA, "version": self.VERSION,
                **json_ready({f.name: getattr(self, f.name) for f in fields(self)})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunContext:
        """Inverse of :meth:`to_json`."""
        check_record(cls, data)
        kw = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        kw["similarity"] = np.asarray(kw["similarity"], dtype=np.float64)
        return cls(**kw)


__all__ = ["CellFailure", "CellResult", "CellSpec", "EvalSettings", "Evaluation", "RunContext", "Speed", "TaskScore",
           "ZeroShot"]
