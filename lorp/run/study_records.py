"""Records of a whole sweep and of the study built from it: the single-block removal profile,
``sweep.json`` (:class:`SweepRecord`) and ``results.json`` (:class:`StudyResult`).

Same JSON conventions as the cell records of :mod:`lorp.run.records` (a ``schema`` and a
``version``; readers refuse other kinds and newer versions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from .record_schema import STUDY_SCHEMA, SWEEP_SCHEMA, check_record, field_names, json_ready
from .records import Evaluation, RunContext


@dataclass(frozen=True)
class Attribution:
    """The single-block removal profile of a model: calibration NLL with exactly one block removed, for every block.

    ``nll[b] - dense_nll`` (:attr:`delta`) is how much removing block ``b`` alone costs,
    in nats per scored token: a first-order account of which removed block does the
    damage (blocks removed together interact; the sum of single-removal costs is not
    the cost of removing them together). Scored on SLEB's calibration text (the first
    ``sequences`` calibration sequences of ``seq_len`` tokens, their last
    ``scored_tokens`` tokens each; SLEB, Song et al., ICML 2024) by the same
    :class:`lorp.evaluate.perplexity.CalibrationNLL` SLEB uses, so SLEB's first greedy step and
    this profile share their forward passes.

    Attributes:
        dense_nll: mean token NLL (nats) of the dense model on that text.
        nll: ``{block: mean token NLL}`` with only that block removed, for blocks ``0..N-1``.
        corpus: calibration corpus name; source: where it came from.
        sequences: calibration sequences scored; seq_len: tokens per sequence.
        scored_tokens: tokens scored per sequence (the last ones; ``seq_len - 1``: all predicted tokens).
        seed: seed of the calibration sampling.
        block_influence: ShortGPT's Block Influence ``BI_i = 1 - mean_t cos(input_i, output_i)`` per block
            (Men et al. 2024, arXiv 2403.03853, eq. 4; float ``[N]``, dimensionless) from the calibration
            pass's ``stream-cosine`` statistic (all ``num_samples`` sequences), ``None`` when the sweep did
            not capture it (no method needed it).
        passes: forwards this profile ran: ``{"full", "partial"}`` (0 for blocks SLEB had already scored).
        shared: the scorer had already served SLEB on this worker (its memo was warm).
        seconds: wall time of the profile.
    """

    SCHEMA: ClassVar[str] = "lorp.attribution"
    VERSION: ClassVar[int] = 1

    dense_nll: float
    nll: dict[int, float]
    corpus: str
    sequences: int
    seq_len: int
    scored_tokens: int
    source: str = ""
    seed: int = 0
    block_influence: list[float] | None = None
    passes: dict[str, int] = field(default_factory=dict)
    shared: bool = False
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        """Tokens scored in all: ``sequences * scored_tokens``."""
        return self.sequences * self.scored_tokens

    @property
    def delta(self) -> dict[int, float]:
        """``{block: nll - dense_nll}``: ΔNLL of removing only that block, nats per token (may be negative)."""
        return {b: v - self.dense_nll for b, v in self.nll.items()}

    @property
    def perplexity(self) -> dict[int, float]:
        """``{block: exp(nll)}``: calibration perplexity with only that block removed."""
        return {b: float(np.exp(v)) for b, v in self.nll.items()}

    @property
    def dense_perplexity(self) -> float:
        """``exp(dense_nll)``."""
        return float(np.exp(self.dense_nll))

    def describe(self) -> str:
        """Which text: ``"2 × 256 tokens of lambada, last 255 scored per sequence (510 tokens)"``."""
        corpus = self.corpus.replace("\\", "/").rsplit("/", 1)[-1]  # a text file by its name
        return (f"{self.sequences} × {self.seq_len} tokens of {corpus}, last {self.scored_tokens} scored per "
                f"sequence ({self.tokens} tokens)")

    def to_json(self) -> dict[str, Any]:
        """Tagged plain dict (block keys as strings, as JSON has them)."""
        return {"schema": self.SCHEMA, "version": self.VERSION, **json_ready(asdict(self))}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attribution:
        """Inverse of :meth:`to_json`; raises :class:`ConfigError` on another kind of record."""
        check_record(cls, data)
        kw = {k: v for k, v in data.items() if k in field_names(cls)}
        kw["nll"] = {int(b): float(v) for b, v in data["nll"].items()}
        kw["dense_nll"] = float(data["dense_nll"])
        kw["passes"] = {k: int(v) for k, v in (data.get("passes") or {}).items()}
        if kw.get("block_influence") is not None:
            kw["block_influence"] = [float(v) for v in kw["block_influence"]]
        return cls(**kw)

    @classmethod
    def optional(cls, data: dict[str, Any] | None) -> Attribution | None:
        """:meth:`from_json`, ``None`` passing through (records written before the profile existed)."""
        return None if data is None else cls.from_json(data)


@dataclass(frozen=True)
class SweepRecord:
    """``sweep.json``: the settings, the shared context and the dense reference of a sweep (cells are in ``cells/``).

    Attributes:
        identity: hash of the shared settings (cells of other settings are not reused).
        config: shared settings plus methods, budgets, seeds, detail budgets, decode tokens.
        context: model, calibration and S.
        dense: the dense model's evaluation (zero-shot and speed when any cell is detailed).
        dense_flops_per_token: FLOPs per token of the dense model.
        perplexity_reuse: ``{"enabled", "stored_blocks"}`` of the dense-state reuse, and ``"floor"``
            (:func:`lorp.evaluate.compute_floor.floor_record`; absent in records written before it existed).
        versions, git_commit: provenance of the code that computed it.
        attribution: the single-block removal profile (:class:`Attribution`), ``None`` when the sweep
            did not ask for it or was written before it existed.
        seed_calibration: per extra run seed (``str(seed)``; the first seed is ``context``):
            ``{"similarity": float64 [N, N] S of that seed's calibration draw, "calibration": its
            record}``; empty for one seed and in records written before seeds drew calibration.
    """

    SCHEMA: ClassVar[str] = SWEEP_SCHEMA
    VERSION: ClassVar[int] = 1

    identity: str
    config: dict[str, Any]
    context: RunContext
    dense: Evaluation
    dense_flops_per_token: int
    perplexity_reuse: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    attribution: Attribution | None = None
    seed_calibration: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Tagged plain dict."""
        return {"schema": self.SCHEMA, "version": self.VERSION, "identity": self.identity,
                "config": json_ready(self.config), "context": self.context.to_json(), "dense": self.dense.to_json(),
                "dense_flops_per_token": self.dense_flops_per_token, "perplexity_reuse": json_ready(self.perplexity_reuse),
                "versions": json_ready(self.versions), "git_commit": self.git_commit,
                "attribution": None if self.attribution is None else self.attribution.to_json(),
                "seed_calibration": json_ready(self.seed_calibration)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SweepRecord:
        """Inverse of :meth:`to_json` (``attribution`` ``None`` in records written before it existed)."""
        check_record(cls, data)
        return cls(data["identity"], data["config"], RunContext.from_json(data["context"]),
                   Evaluation.from_json(data["dense"]), int(data["dense_flops_per_token"]),
                   data.get("perplexity_reuse") or {}, data.get("versions") or {}, data.get("git_commit"),
                   Attribution.optional(data.get("attribution")),
                   {str(s): {**v, "similarity": np.asarray(v["similarity"], dtype=np.float64)}
                    for s, v in (data.get("seed_calibration") or {}).items()})


@dataclass
class StudyCell:
    """One (method, budget, seed) row of a study: what reports and figures read.

    Attributes:
        method, budget, seed: the cell.
        pruned: removed blocks.
        perplexity: perplexity per corpus; ``mean_perplexity`` their mean.
        parameters: parameters of the pruned model.
        seconds: ``selection``, ``evaluation`` and ``total`` wall time.
        zero_shot: score per task (``None``: not measured); ``zero_shot_items`` items per task;
            ``zero_shot_average`` their mean.
        speed: decode speed (``tokens_per_s``, ``flops_per_token``, …), or ``None``.
        nll_passes: forwards of a model-scoring strategy, or ``None``.
        evaluation_reused: the evaluation was shared with a cell removing the same blocks.
        window_nll: per corpus, summed token NLL (nats) of each evaluation window in window order;
            ``window_tokens``: per corpus, predicted tokens per window. ``None`` in studies written
            before they were kept (reports then give no perplexity intervals).
        zero_shot_correct: per task, 0/1 per item in item order (``None``: not kept).
        added: the row of a method ``lorp study --add`` put beside the study's (:mod:`lorp.study.add`): shown in
            every table and figure, never counted as a baseline (:func:`lorp.study.query.baseline_methods`).
    """

    method: str
    budget: int
    pruned: list[int]
    perplexity: dict[str, float]
    mean_perplexity: float
    parameters: int
    seed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    zero_shot: dict[str, float] | None = None
    zero_shot_items: dict[str, int] | None = None
    zero_shot_average: float | None = None
    speed: dict[str, Any] | None = None
    nll_passes: dict[str, int] | None = None
    evaluation_reused: bool = False
    window_nll: dict[str, list[float]] | None = None
    window_tokens: dict[str, int] | None = None
    zero_shot_correct: dict[str, list[int]] | None = None
    added: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain dict; zero-shot, speed, per-window and per-item keys only where measured, ``added`` only when set."""
        d = json_ready(asdict(self))
        for k in ("zero_shot", "zero_shot_items", "zero_shot_average", "speed", *_PER_SAMPLE):
            if d[k] is None:
                d.pop(k)
        if not d["added"]:
            d.pop("added")
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyCell:
        """From :meth:`to_json`'s dict (keys it does not know are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in field_names(cls)})


#: Per-window NLL and per-item results a study row carries where its evaluation kept them.
_PER_SAMPLE = ("window_nll", "window_tokens", "zero_shot_correct")


@dataclass
class StudyDense:
    """The dense reference of a study: perplexity per corpus and mean, parameters, zero-shot, speed.

    ``window_nll``, ``window_tokens`` and ``zero_shot_correct`` as in :class:`StudyCell`.
    """

    perplexity: dict[str, float]
    mean_perplexity: float
    parameters: int
    zero_shot: dict[str, float] | None = None
    zero_shot_average: float | None = None
    speed: dict[str, Any] | None = None
    flops_per_token: int | None = None
    window_nll: dict[str, list[float]] | None = None
    window_tokens: dict[str, int] | None = None
    zero_shot_correct: dict[str, list[int]] | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain dict; per-window and per-item keys only where kept."""
        d = json_ready(asdict(self))
        for k in _PER_SAMPLE:
            if d[k] is None:
                d.pop(k)
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyDense:
        return cls(**{k: v for k, v in data.items() if k in field_names(cls)})


@dataclass
class StudyResult:
    """A model's study (``results.json`` of ``notebooks/lorp_study.ipynb``): settings, RLS/K, dense, every cell.

    Built by :func:`lorp.study.load.summarize`; the notebook adds ``parameters``,
    ``machine``, ``plugins_used``, ``plugins_loaded`` and ``wall_time_s``. Reports and
    figures (:mod:`lorp.study.tables`, :mod:`lorp.study.compare`, :mod:`lorp.study.figures`) read this type.

    Attributes:
        model: name, spec, model type, …; num_blocks: N.
        config: the sweep's shared settings, methods and budgets.
        rls, k, k_source, labels: LoRP's locality score, cluster count and labels (eqs. 5-7).
        similarity: float64 ``[N, N]`` S; calibration: the calibration record.
        dense: the dense reference; cells: one :class:`StudyCell` per cell of the first run seed (the
            study's main tables, figures and verdict read these).
        seed_cells: the cells of the other run seeds (empty for one seed), read by the sensitivity
            report (:mod:`lorp.study.sensitivity`) and the selector's comparison across seeds.
        evaluations_shared: cells whose evaluation came from another cell with the same removed blocks.
        compute_seconds: calibration, dense and cells time when computed (and ``attribution``, the
            single-block removal profile's, where computed).
        evaluation: per perplexity corpus: ``source``, ``windows``, ``window_tokens`` and
            ``tokens_scored`` (``windows * (window_tokens - 1)``: the first token of a window is not predicted).
        attribution: the single-block removal profile (:class:`Attribution`), ``None`` where the sweep
            has none (not asked for, or written before it existed).
        seeds: per run seed (``str(seed)``, first seed first) when more than one seed ran:
            ``{"similarity", "calibration", "rls", "k", "k_source"}`` of that seed's calibration
            draw (:func:`lorp.study.sensitivity.seed_runs`); empty for one seed and older studies.
        confirmation: the verdict pairs on the held-out confirmation windows, kept apart from the
            screening results in :attr:`cells` (:func:`lorp.study.confirmation.confirm_verdict_pairs`):
            ``{"windows": per corpus, "seq_len", "dense": {"perplexity", "window_nll", "window_tokens"},
            "cells": [{"method", "budget", "role", "pruned", "perplexity", "window_nll", "window_tokens",
            "seconds"}]}``; ``None`` for studies without one (version 1 records, or none asked for).
        random_floor: random removed sets at the detail budget on the screening windows
            (:func:`lorp.study.quality_floor.add_random_floor`): ``{"budget", "draws": [StudyCell JSON with "draw"]}``;
            ``None`` without one (older records, or none asked for).
        sleb_check: SLEB at its scoring token count and at a multiple of it, at the detail budget
            (:func:`lorp.study.sleb_check.add_sleb_check`): ``{"budget", "used", "runs": [{**StudyCell JSON,
            "samples", "tokens", "search_seconds"}]}``; ``None`` without one.
        calibration_corpora: each method's picks with the calibration drawn from each bundled corpus
            (:func:`lorp.study.calibration_corpus.add_calibration_corpora`); ``None`` without them.
        healing: the selection × healing grid (:func:`lorp.study.healing.add_healing`): ``{"budget",
            "healers", "cells": [{**StudyCell JSON, "role", "healer", "fit_seconds", "maps", "evaluation_seconds"}]}``;
            ``None`` without healers.
        computed_at_commit: the commit whose code computed the sweep's numbers (its ``sweep.json``);
            git_commit: the checkout that rendered this record (``-dirty`` when its code differs from the commit's).
        code_hash: :func:`lorp.run.provenance.code_hash` of the checkout that rendered this record (the study
            notebook computes and renders in one run); the summary combines only models with one hash
            (:func:`lorp.study.load.load_studies`). ``None`` in records written before it existed.
        added: what ``lorp study --add`` put beside a committed study (:func:`lorp.study.add.add_methods`):
            ``{"methods": [label], "components": {label: {"kind", "name", "code", "source"}}, "twins": {label:
            [method]}, "reused": {"from", "computed_at_commit", "code_hash"} or None, "recomputed": [line],
            "computed": {label: {"screened", "detailed", "confirmed", "reused_evaluations", "seconds"}}}``; the
            added rows are in :attr:`cells` and :attr:`seed_cells` with ``added`` set. ``None`` for a plain study.
    """

    SCHEMA: ClassVar[str] = STUDY_SCHEMA
    #: 2: screening windows spread over the text, geometric mean, ``confirmation`` kept apart.
    #: 3: ``random_floor``, ``sleb_check`` and ``calibration_corpora`` (absent from older records: ``None``).
    #: 4: ``healing`` (absent from older records: ``None``).
    #: 5: ``code_hash`` (:func:`lorp.run.provenance.code_hash`; absent from older records: ``None``).
    #: 6: ``added`` (``lorp study --add``; absent from older records: ``None``).
    VERSION: ClassVar[int] = 6

    model: dict[str, Any]
    num_blocks: int
    config: dict[str, Any]
    rls: float | None
    k: int | None
    dense: StudyDense
    cells: list[StudyCell]
    k_source: str | None = None
    labels: list[int] | None = None
    similarity: Any = field(default=None, repr=False)
    calibration: dict[str, Any] = field(default_factory=dict)
    perplexity_reuse: dict[str, Any] | None = None
    evaluations_shared: int = 0
    compute_seconds: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    plugins: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    computed_at_commit: str | None = None
    git_commit: str | None = None
    code_hash: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    plugins_used: dict[str, Any] = field(default_factory=dict)
    plugins_loaded: list[Any] = field(default_factory=list)
    wall_time_s: float | None = None
    attribution: Attribution | None = None
    seeds: dict[str, Any] = field(default_factory=dict)
    seed_cells: list[StudyCell] = field(default_factory=list)
    confirmation: dict[str, Any] | None = None
    random_floor: dict[str, Any] | None = None
    sleb_check: dict[str, Any] | None = None
    calibration_corpora: dict[str, Any] | None = None
    healing: dict[str, Any] | None = None
    added: dict[str, Any] | None = None

    @property
    def all_cells(self) -> list[StudyCell]:
        """Every seed's cells: :attr:`cells` (first seed) then :attr:`seed_cells`."""
        return [*self.cells, *self.seed_cells]

    def to_json(self) -> dict[str, Any]:
        """Tagged plain dict (the layout of ``results.json``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["dense"] = self.dense.to_json()
        d["cells"] = [c.to_json() for c in self.cells]
        d["seed_cells"] = [c.to_json() for c in self.seed_cells]
        d["attribution"] = None if self.attribution is None else self.attribution.to_json()
        return {"schema": self.SCHEMA, "version": self.VERSION, **json_ready(d)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyResult:
        """From ``results.json`` (also untagged ones written before records were tagged)."""
        if "schema" in data:
            check_record(cls, data)
        kw = {k: v for k, v in data.items() if k in field_names(cls)}
        kw["dense"] = StudyDense.from_json(data["dense"])
        kw["cells"] = [StudyCell.from_json(c) for c in data["cells"]]
        kw["seed_cells"] = [StudyCell.from_json(c) for c in data.get("seed_cells") or []]
        if kw.get("similarity") is not None:
            kw["similarity"] = np.asarray(kw["similarity"], dtype=np.float64)
        kw["attribution"] = Attribution.optional(data.get("attribution"))
        return cls(**kw)


def as_study(results: StudyResult | dict[str, Any]) -> StudyResult:
    """``results`` as a :class:`StudyResult` (a loaded ``results.json`` dict is converted)."""
    return results if isinstance(results, StudyResult) else StudyResult.from_json(results)


__all__ = ["Attribution", "StudyCell", "StudyDense", "StudyResult", "SweepRecord", "as_study"]
