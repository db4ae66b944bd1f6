"""One calibration pass, many methods × budgets (× seeds): the comparison table behind the study.

A sweep is plan cells (:func:`plan_cells`) -> executor (:mod:`lorp.run.executors`,
serial by default, or Ray) -> collect (:func:`lorp.run.cells.orchestrate`). Layout of a
sweep folder::

    sweep.json                    lorp.sweep record: settings, model, calibration, S, dense evaluation,
                                  the single-block removal profile (with ``attribution``)
    cells/<method>-b<B>-s<S>.json one lorp.cell record per (method, budget, seed)
    evaluations/<key>.json        one lorp.evaluation per distinct (model, removed blocks, settings)
    table.csv, table.json         tidy table: one row per (method, budget, corpus)
    failures.json                 cells that raised, with spec and traceback (only when some did)

Every file is written atomically. A rerun with the same settings skips the
cells already written (and, when none is left, does not even load the model);
the calibration pass itself is cached on disk (:func:`lorp.run.pipeline.calibrate`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..method.allocation import check_seed
from ..model.models import resolve_model
from ..plugins.registry import Registry, load_registry
from ..store.atomic import check_output_location
from ..store.cache import cache_key, check_cache_writable, notice, read_checked_json, write_checked_json
from . import progress
from .cell_store import CellStore, RunStats, write_failures
from .cells import CellsFailedError, Task, orchestrate
from .executors import RayExecutor, SerialExecutor
from .healing import check_heal
from .sweep_table import sweep_table, write_table
from .fingerprint import cell_code, evaluation_code, healing_inputs, input_fingerprint
from .pipeline import PruneConfig, block_metric
from .provenance import git_commit, package_versions
from .records import CellResult, CellSpec, EvalSettings, Evaluation, RunContext
from .study_records import Attribution, SweepRecord

DEFAULT_METHODS = ("lorp", "shortgpt", "streamline", "angular", "sleb", "last", "random")
DEFAULT_BUDGETS = (3, 5, 7, 9)


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the shared settings of one run (``base``) × methods × budgets.

    ``base.budget`` and ``base.allocation`` are ignored; every other field of
    :class:`lorp.run.pipeline.PruneConfig` applies to all cells.

    Attributes:
        methods: allocation strategies compared.
        budgets: blocks to remove.
        detail_budgets: budgets (a subset of ``budgets``) whose cells also get
            zero-shot accuracy (``base.zero_shot_tasks``) and decode speed.
        detail_methods: the methods measured at detail budgets (``None``: all).
        decode_tokens: tokens generated per decode-speed run (0: no speed).
        reuse_states: restart each pruned variant's perplexity from the dense
            model's hidden states (:class:`lorp.evaluate.perplexity.SweepPerplexity`).
        attribution: also compute the single-block removal profile (calibration NLL with only block
            ``b`` removed, for every block; :class:`lorp.run.study_records.Attribution`) into ``sweep.json``. It
            is scored on SLEB's calibration text and shares SLEB's passes; without SLEB it costs about
            one partial forward pass per block. Not part of the sweep's identity: turning it on for a
            finished sweep computes only the profile.
        seeds: run seeds, one cell per (method, budget, seed); empty: ``base.seed``. Each seed is a
            full run seed: it draws the calibration sequences (S, the statistics and SLEB's
            scoring sequences, which are the first calibration sequences) and seeds the
            clustering and the random baselines. Evaluation stays fixed: the same perplexity
            windows, and zero-shot items drawn with the first seed for every seed, so cells of
            different seeds removing the same blocks share one evaluation. The first seed's
            calibration is the sweep's context (``sweep.json``'s S); the others' S and
            calibration records are kept in :attr:`lorp.run.study_records.SweepRecord.seed_calibration`.
        seed_methods: the methods that run at every seed (``None``: all); the others run at the
            first seed only. A way to leave an expensive search (SLEB) out of the extra seeds.
        method_budgets: ``((method, budgets), ...)``: methods that run at only some of :attr:`budgets`
            (a subset each); the others run at every budget. The ablation notebook runs the LoRP
            ablations at the detail budget alone this way. Not part of the sweep's identity.
        healers: healers every cell runs with (:mod:`lorp.heal`, default settings): one cell per
            (method, budget, seed, healer), the healers sharing one selection. Each healed evaluation is
            cached by (removed set, healer, its settings and code, calibration draw) and shared between
            methods that remove the same blocks. ``("none",)``: unhealed only. Not part of the identity:
            a healed cell is stored under its own name (``<cell>-h<healer>``) and key, and
            :func:`lorp.study.load.load_sweep` reads one healer's cells at a time. ``base.heal`` (``lorp prune
            --heal``'s) must stay ``"none"`` in a sweep.
    """

    base: PruneConfig = PruneConfig()
    methods: tuple[str, ...] = DEFAULT_METHODS
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    detail_budgets: tuple[int, ...] = ()
    detail_methods: tuple[str, ...] | None = None
    decode_tokens: int = 0
    reuse_states: bool = True
    seeds: tuple[int, ...] = ()
    attribution: bool = False
    seed_methods: tuple[str, ...] | None = None
    method_budgets: tuple[tuple[str, tuple[int, ...]], ...] = ()
    healers: tuple[str, ...] = ("none",)

    @property
    def cell_seeds(self) -> tuple[int, ...]:
        """Run seeds of the cells (default: ``base.seed`` alone): calibration draw and selection."""
        return tuple(self.seeds) or (self.base.seed,)

    @property
    def run_base(self) -> PruneConfig:
        """``base`` with ``seed`` set to the first run seed: the settings the workers' shared context uses."""
        return replace(self.base, seed=self.cell_seeds[0])

    def seeds_of(self, method: str) -> tuple[int, ...]:
        """The run seeds ``method`` runs at: every seed if it is among :attr:`seed_methods`, else the first."""
        seeds = self.cell_seeds
        return seeds if self.seed_methods is None or method in self.seed_methods else seeds[:1]

    def budgets_of(self, method: str) -> tuple[int, ...]:
        """The budgets ``method`` runs at: its entry in :attr:`method_budgets`, else every budget."""
        return dict(self.method_budgets).get(method, self.budgets)

    def detailed(self, method: str, budget: int) -> bool:
        """Whether the cell (method, budget) gets zero-shot accuracy and decode speed."""
        return budget in self.detail_budgets and (self.detail_methods is None or method in self.detail_methods)

    def plain_settings(self) -> EvalSettings:
        """How every cell is evaluated: perplexity on the screening windows of the evaluation corpora."""
        base = self.base
        return EvalSettings(corpora=tuple(base.eval_corpora), seq_len=base.eval_seq_len, tokens=base.eval_tokens,
                            batch_size=base.batch_size)

    def detail_settings(self) -> EvalSettings:
        """How a detailed cell is evaluated: :meth:`plain_settings` plus zero-shot accuracy (items drawn with the
        first run seed) and decode speed."""
        base = self.base
        return replace(self.plain_settings(), zero_shot_tasks=tuple(base.zero_shot_tasks),
                       zero_shot_limit=base.zero_shot_limit, zero_shot_seed=self.cell_seeds[0],
                       decode_tokens=self.decode_tokens)

    def identity(self) -> str:
        """Hash of the settings every cell shares (cells from other settings are not reused).

        Local inputs (a model folder, text-file corpora) enter by their content,
        not their path (:func:`lorp.run.fingerprint.input_fingerprint`), so a rewritten file
        gives a new identity and its cells are recomputed.
        """
        shared = shared_settings(self.base)
        local = input_fingerprint(self.base.model, [self.base.calibration, *self.base.eval_corpora])
        if local:
            shared["model"] = local.get("model", shared["model"])
            shared["calibration"] = local.get(shared["calibration"], shared["calibration"])
            shared["eval_corpora"] = [local.get(c, c) for c in shared["eval_corpora"]]
        return cache_key({"sweep": shared, "records": CellResult.VERSION})


#: The folders a sweep folder holds beside its cells: removed sets scored outside the cells, cached per set
#: (:mod:`lorp.run.screening`, :mod:`lorp.run.confirmation`, :mod:`lorp.run.healed_sets`). ``lorp study --add``
#: may write them before the sweep itself ever ran there, so a folder holding only these is a lorp sweep's.
SIDE_STORES = frozenset({"screening", "confirmation", "detail", "sleb", "healing"})


def shared_settings(base: PruneConfig) -> dict[str, Any]:
    """The settings every cell shares, JSON-ready (per-cell fields left out)."""
    shared = json.loads(json.dumps(asdict(base), default=list))
    for per_cell in ("budget", "allocation", "save_model", "progress", "use_cache", "heal", "heal_settings"):
        shared.pop(per_cell)
    return shared


def plan_cells(config: SweepConfig) -> list[CellSpec]:
    """Every cell of the sweep, in table order: methods × budgets × seeds, detail settings where asked for."""
    plain, detail = config.plain_settings(), config.detail_settings()
    return [CellSpec(m, b, s, detail if config.detailed(m, b) and detail.detailed else plain, h)
            for m in config.methods for b in config.budgets_of(m) for s in config.seeds_of(m) for h in config.healers]


def _dense_settings(config: SweepConfig) -> EvalSettings | None:
    """Settings of the dense evaluation: the detail settings when the sweep has detail budgets."""
    if not config.detail_budgets:
        return None
    details = [s.evaluation for s in plan_cells(config) if s.evaluation.detailed]
    return details[0] if details else None


def drop_stale_seed_cells(folder: Path, previous: SweepRecord | None, store: CellStore) -> list[Path]:
    """Delete the cells an older lorp computed for extra seeds with the base seed's calibration; return their paths.

    Before seeds chose the calibration draw (records without ``config["calibration_per_seed"]``),
    every cell was selected on ``config["seed"]``'s calibration; a cell of another seed is
    therefore stale and is recomputed. Cells of ``config["seed"]`` itself stay valid.
    """
    if previous is None or previous.config.get("calibration_per_seed"):
        return []
    dropped = []
    for f, cell in store.stored():
        if cell.spec.seed != previous.config.get("seed"):
            f.unlink(missing_ok=True)
            dropped.append(f)
    if dropped:
        notice(f"{len(dropped)} cell(s) of extra seeds in {folder} were selected on seed "
               f"{previous.config.get('seed')}'s calibration by an older lorp; recomputing them with their own")
    return dropped


def load_sweep_folder(folder: str | Path) -> tuple[SweepRecord, list[CellResult]]:
    """``(sweep.json, finished cells of its settings)`` of a sweep folder, cells in plan order.

    Raises:
        ConfigError: no ``sweep.json`` there, or one another lorp version wrote.
    """
    folder = Path(folder)
    path = folder / "sweep.json"
    if not path.is_file():
        raise ConfigError(f"{folder} holds no sweep (no sweep.json); run `lorp sweep --out {folder}` first")
    raw = read_checked_json(path, "sweep record")
    if raw is None:
        raise ConfigError(f"the sweep record {path} is damaged; rerun the sweep to recompute it")
    record = SweepRecord.from_json(raw)
    return record, [cell for _, cell in CellStore(folder, record.identity).stored()]


@dataclass
class SweepRun:
    """What :func:`execute_sweep` returns.

    Attributes:
        rows: the tidy table (one row per method, budget and corpus; dense first).
        record: ``sweep.json``.
        cells: the finished cells, in plan order.
        stats: what this run computed (``None`` when every cell was already finished).
    """

    rows: list[dict[str, Any]]
    record: SweepRecord
    cells: list[CellResult]
    stats: RunStats | None


def run_sweep(config: SweepConfig, out_dir: str | Path, registry: Registry | None = None,
              executor: SerialExecutor | RayExecutor | None = None) -> list[dict[str, Any]]:
    """Evaluate every (method, budget, seed) cell from one calibration pass per seed; return the tidy table rows.

    See :func:`execute_sweep`.
    """
    return execute_sweep(config, out_dir, registry, executor).rows


def execute_sweep(config: SweepConfig, out_dir: str | Path, registry: Registry | None = None,
                  executor: SerialExecutor | RayExecutor | None = None) -> SweepRun:
    """Plan the cells, run the missing ones on ``executor`` (default: serial), collect the table.

    Cells already in the folder's store are skipped (when none is missing the model
    is not loaded). Methods or seeds that remove the same blocks are evaluated once.

    Raises:
        ConfigError, UnknownNameError: unknown method, bad budgets, or a folder
            holding a sweep with other settings — all before any heavy work.
        CellsFailedError: some cells raised; every other cell landed and the table
            holds them; ``failures.json`` has each failed cell's spec and traceback.
    """
    out, registry, identity, raw = _checked_sweep(config, out_dir, registry)
    meta_path = out / "sweep.json"
    previous = SweepRecord.from_json(raw) if raw is not None else None
    store = CellStore(out, identity, *_cell_codes(config, registry))
    if drop_stale_seed_cells(out, previous, store):
        previous = None  # its sweep.json lacks the per-seed calibration; rewritten below
    plan = plan_cells(config)
    pending = [spec for spec in plan if store.load(spec) is None]
    extra_seeds = list(config.cell_seeds[1:])
    seeds_missing = previous is not None and any(str(s) not in previous.seed_calibration for s in extra_seeds)
    dense_settings = _dense_settings(config)
    old = previous.dense if previous is not None else None
    dense_complete = dense_settings is None or (
        old is not None and (not dense_settings.zero_shot_tasks or old.zero_shot is not None)
        and (not dense_settings.decode_tokens or old.speed is not None))
    need_dense = bool(pending) or previous is None or not dense_complete
    need_attribution = config.attribution and (previous is None or previous.attribution is None)
    stats = None
    if not pending:
        progress.report(stage="cached", message=f"all {len(plan)} cells already computed in {out}; reusing them")
    if need_dense or need_attribution or seeds_missing:
        writer = _RecordWriter(config, registry, identity, meta_path, previous, dense_settings, dense_complete)
        with (executor or SerialExecutor()).workers(config.run_base, config.methods, reuse_states=config.reuse_states,
                                                    registry=registry) as workers:
            stats = orchestrate(workers, pending, store, reuse_states=config.reuse_states,
                                dense_settings=None if dense_complete else dense_settings, need_dense=need_dense,
                                on_dense=writer.on_dense, progress=config.base.progress, attribution=need_attribution,
                                on_attribution=writer.on_attribution)
            missing = [s for s in extra_seeds if str(s) not in writer.seeds]
            if missing and writer.record is not None:  # each extra seed's S and calibration record (cached pass)
                writer.seeds.update({str(s): v for s, v in workers.first(Task("seed_calibration", (missing,))).items()})
                writer.write(replace(writer.record, seed_calibration=writer.seeds))
        write_failures(out, stats.failures)
    record = SweepRecord.from_json(read_checked_json(meta_path, "sweep record"))
    cells = [c for c in (store.load(spec) for spec in plan) if c is not None]
    rows = sweep_table(cells, record.dense, seeds=len(config.cell_seeds) > 1, healers=config.healers != ("none",))
    write_table(out, rows)
    if stats is not None and stats.failures:
        raise CellsFailedError(stats.failures)
    return SweepRun(rows, record, cells, stats)


def _cell_codes(config: SweepConfig, registry: Registry
                ) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str], dict[str, Any]]:
    """Per method, the code strings its cells depend on; each component's plugin source (for notices); the
    code strings evaluations depend on; what healed evaluations are keyed by (:class:`CellStore`'s ``healing``)."""
    base = config.base
    codes = {m: cell_code(registry, m, similarity=base.similarity, clustering=base.clustering,
                          calibration=base.calibration, eval_corpora=base.eval_corpora) for m in config.methods}
    sources = {}
    for key in {k for c in codes.values() for k in c}:
        kind, name = key.split(":", 1)
        source = registry.provenance(kind, name)["source"]
        sources[key] = source.removeprefix("local file ").replace(str(Path.cwd()) + "/", "")
    healed = [h for h in config.healers if h != "none"]
    for h in healed:
        sources[f"healer:{h}"] = registry.provenance("healer", h)["source"].removeprefix("local file ")
    return codes, sources, evaluation_code(registry, base.eval_corpora), healing_inputs(registry, base, healed)


def _checked_sweep(config: SweepConfig, out_dir: str | Path, registry: Registry | None
                   ) -> tuple[Path, Registry, str, dict[str, Any] | None]:
    """Every check of :func:`execute_sweep` before heavy work, in order; the folder, registry, the sweep's
    identity and the folder's ``sweep.json`` (``None`` when absent, or written by another lorp version).

    Raises:
        ConfigError, UnknownNameError: as :func:`execute_sweep`.
    """
    base = config.base
    base.validate()
    out = Path(out_dir)
    registry = registry or load_registry()
    strategies = {m: registry.allocation(m) for m in config.methods}
    if not config.methods or not config.budgets:
        raise ConfigError("give at least one method and one budget")
    if not config.healers or len(set(config.healers)) != len(config.healers):
        raise ConfigError(f"give each healer once ('none' for unhealed cells), got {list(config.healers)}")
    for healer in config.healers:
        check_heal(registry, healer, {})
    if base.heal != "none" or base.heal_settings:
        raise ConfigError(f"a sweep heals its cells through healers (lorp sweep --healers none,{base.heal}), not "
                          f"through the base settings' heal={base.heal!r}: leave heal and heal_settings unset")
    if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in config.budgets):
        raise ConfigError(f"budgets must be whole numbers >= 1, got {list(config.budgets)}")
    for seed in config.cell_seeds:
        check_seed(seed, "each seed")
    if any(s.uses_clusters for s in strategies.values()):
        registry.clustering(base.clustering)
    scorers = [f"method {m}" for m, s in strategies.items() if s.needs_model]
    if scorers or config.attribution:
        base.check_sleb_samples(", ".join(scorers + (["the single-block removal profile"] if config.attribution
                                                     else [])))
    block_metric(registry, base.similarity)
    resolve_model(base.model)
    check_cache_writable()
    base.check_against_model(config.budgets)
    check_output_location(out)
    identity = config.identity()
    raw = _existing_record(config, out, registry, identity)
    for m, subset in config.method_budgets:
        if m not in config.methods or not subset or not set(subset) <= set(config.budgets):
            raise ConfigError(f"method_budgets: {m!r} must be one of the methods {list(config.methods)} with some of "
                              f"the budgets {list(config.budgets)}, got {list(subset)}")
    if not set(config.detail_budgets) <= set(config.budgets):
        raise ConfigError(f"detail budgets {list(config.detail_budgets)} must be among the budgets {list(config.budgets)}")
    if isinstance(config.decode_tokens, bool) or config.decode_tokens < 0 or config.decode_tokens == 1:
        raise ConfigError(f"decode_tokens must be 0 (no speed) or >= 2, got {config.decode_tokens!r}")

    if config.seed_methods is not None and not set(config.seed_methods) <= set(config.methods):
        raise ConfigError(f"seed methods {sorted(set(config.seed_methods) - set(config.methods))} are not among "
                          f"the methods {list(config.methods)}")
    if config.detail_methods is not None and not set(config.detail_methods) <= set(config.methods):
        raise ConfigError(f"detail methods {sorted(set(config.detail_methods) - set(config.methods))} are not among "
                          f"the methods {list(config.methods)}")
    return out, registry, identity, raw


def _existing_record(config: SweepConfig, out: Path, registry: Registry, identity: str) -> dict[str, Any] | None:
    """The folder's ``sweep.json`` when it is this sweep's; ``None`` when there is none (or another version's).

    Raises:
        ConfigError: the folder holds a sweep with other settings (naming them), or is not a sweep.
    """
    base, meta_path = config.base, out / "sweep.json"
    raw = read_checked_json(meta_path, "sweep record", ("identity", "config", "context", "dense"))
    if raw is not None:
        try:
            SweepRecord.from_json(raw)
        except (ConfigError, KeyError, TypeError, ValueError):
            notice(f"sweep record {meta_path} was written by another lorp version; recomputing it")
            raw = None
    if raw is not None and raw.get("identity") != identity:
        now = shared_settings(base)
        changed = sorted(k for k in now if raw.get("config", {}).get(k) != now[k])
        local = input_fingerprint(base.model, [base.calibration, *base.eval_corpora], registry)
        changed += [f"content of {base.model if k == 'model' else k}" for k in local
                    if (raw.get("content") or {}).get(k) != local[k]]
        raise ConfigError(f"{out} holds a sweep with other settings (differing: {', '.join(changed) or 'lorp version'}); "
                          "use another --out or delete it")
    if out.exists() and raw is None and not meta_path.exists() and any(p.name not in SIDE_STORES
                                                                      for p in out.iterdir()):
        raise ConfigError(f"output folder {out} exists and is not a lorp sweep; choose another --out")
    return raw


class _RecordWriter:
    """Writes ``sweep.json`` as the dense evaluation, the profile and the extra seeds' calibration land.

    They may land in any order: a finished profile or extra seeds' calibration is kept when the
    dense evaluation is recomputed, and :attr:`record` is the latest record written.
    """

    def __init__(self, config: SweepConfig, registry: Registry, identity: str, meta_path: Path,
                 previous: SweepRecord | None, dense_settings: EvalSettings | None, dense_complete: bool):
        self.config, self.registry, self.identity, self.meta_path = config, registry, identity, meta_path
        self.dense_settings, self.dense_complete = dense_settings, dense_complete
        self.old = previous.dense if previous is not None else None
        self.record = previous
        self.attribution = previous.attribution if previous else None
        self.seeds = dict(previous.seed_calibration) if previous else {}

    def write(self, record: SweepRecord) -> None:
        base = self.config.base
        self.record = record
        write_checked_json(self.meta_path, {**record.to_json(), "content": input_fingerprint(
            base.model, [base.calibration, *base.eval_corpora], self.registry)})

    def on_dense(self, ctx: RunContext, result: tuple[Evaluation, dict[str, Any], int]) -> None:
        config, base = self.config, self.config.base
        dense, reuse, flops = result
        if self.dense_settings is not None and self.dense_complete:
            dense = replace(dense, zero_shot=self.old.zero_shot, speed=self.old.speed)
        self.write(SweepRecord(
            identity=self.identity,
            config={**shared_settings(base), "methods": list(config.methods), "budgets": list(config.budgets),
                    "seeds": list(config.cell_seeds), "detail_budgets": list(config.detail_budgets),
                    "detail_methods": None if config.detail_methods is None else list(config.detail_methods),
                    "decode_tokens": config.decode_tokens, "calibration_per_seed": True},
            context=ctx, dense=dense, dense_flops_per_token=flops, perplexity_reuse=reuse,
            versions=package_versions(), git_commit=git_commit(), attribution=self.attribution,
            seed_calibration=self.seeds))

    def on_attribution(self, _ctx: RunContext, attribution: Attribution) -> None:
        self.attribution = attribution
        if self.record is not None:  # else the dense evaluation, still to land, writes it
            self.write(replace(self.record, attribution=attribution))
