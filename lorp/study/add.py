"""A plugin's rows beside a committed study: only what is new is computed (``lorp study --add NAME``).

A plugin author wants to see their method against LoRP and the baselines under the study's exact
protocol, without recomputing the baselines the committed reports already hold. :func:`add_methods`
takes a study (:class:`lorp.run.study_records.StudyResult`, the committed one when
:func:`lorp.study.reuse.reuse_mismatches` finds its key intact) and adds, for each named method:

* **its picks** at every budget and run seed of the study. An allocation strategy or a clustering
  algorithm that reads only S selects from each seed's committed S matrix (no calibration pass); a
  similarity metric, or a strategy that reads other statistics or runs the model, selects on a worker
  that runs (or fetches from the cache) its own calibration pass per seed;
* **perplexity on the screening windows** for every pick. A removed set that a committed row already
  scored (any method, any seed: windows do not depend on who chose the set) takes that row's numbers
  exactly; only new sets are scored (:func:`lorp.run.screening.screen`);
* **zero-shot accuracy and decode speed** at the detail budget, first seed (:func:`lorp.run.screening.detail`,
  or a committed detailed row removing the same blocks);
* **perplexity on the held-out confirmation windows** at every budget, first seed, beside the verdict pairs
  (:func:`lorp.run.confirmation.confirm`), so the answer (:mod:`lorp.study.added_answer`) rests on windows
  that chose nothing.

The added rows carry ``added`` (:attr:`lorp.run.study_records.StudyCell.added`): every table and figure
shows them, no report counts them as a baseline, so every committed number and verdict stays as it was.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnknownNameError
from ..evaluate.perplexity import geometric_mean_perplexity
from ..method.selection import select_blocks
from ..paths import REPO_ROOT
from ..plugins.registry import Registry
from ..run.cells import Task
from ..run.confirmation import confirm
from ..run.executors import HeldWorkers, SerialExecutor
from ..run.records import CellSpec
from ..run.provenance import code_hash, git_commit
from ..run.screening import detail, screen
from ..run.study_records import StudyCell, StudyResult
from ..run.sweep import SweepConfig
from .confirmation import confirmation_row
from .load import detail_fields, per_sample

#: Component kinds ``--add`` takes, in the order a name is looked up.
KINDS = ("allocation", "clustering", "similarity")


@dataclass(frozen=True)
class AddedMethod:
    """One method ``--add`` puts beside the study.

    Attributes:
        label: the rows' method name: the strategy's name, or ``"<allocation>+<name>"`` for LoRP with another
            clustering algorithm or similarity metric (``"lorp+contiguous"``).
        kind: ``"allocation"``, ``"clustering"`` or ``"similarity"``: what ``name`` registered.
        name: the registered component.
        allocation, clustering, similarity: the components the picks are made with.
        code: the component's code stamp (:mod:`lorp.plugins.code`); source: where it came from.
        from_committed_s: the picks read only S of the study's similarity metric, so each seed's committed
            S is enough (no calibration pass).
    """

    label: str
    kind: str
    name: str
    allocation: str
    clustering: str
    similarity: str
    code: str
    source: str
    from_committed_s: bool


def resolve_added(names: Iterable[str], registry: Registry, config: SweepConfig, study_methods: Sequence[str],
                  allocation: str = "lorp") -> list[AddedMethod]:
    """The methods of ``names``, checked before any work.

    A name is looked up as an allocation strategy, then a clustering algorithm, then a similarity metric; a
    clustering algorithm or a similarity metric means LoRP (``allocation``) with that component.

    Raises:
        ConfigError: no name, or a name the study already compares (its rows are the committed ones).
        UnknownNameError: a name no plugin registered (one line, with the registered names).
    """
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise ConfigError("--add needs at least one registered method name, e.g. --add lorp-spread")
    base = config.base
    out = []
    for name in dict.fromkeys(names):
        kind = next((k for k in KINDS if name in registry.components.get(k, {})), None)
        if kind is None:
            known = [n for k in KINDS for n in registry.components.get(k, {})]
            raise UnknownNameError("method to add", name, known,
                                   "--add takes an allocation strategy, or a clustering algorithm or similarity "
                                   "metric to run LoRP with; `lorp plugins` lists them, a plugin file goes in "
                                   "plugins/ or --plugins-dir")
        if kind == "allocation":
            label, alloc, clus, sim = name, name, base.clustering, base.similarity
        elif kind == "clustering":
            label, alloc, clus, sim = f"{allocation}+{name}", allocation, name, base.similarity
        else:
            label, alloc, clus, sim = f"{allocation}+{name}", allocation, base.clustering, name
        if label in study_methods or (kind != "allocation" and name in (base.clustering, base.similarity)):
            raise ConfigError(f"{name!r} is already in the committed study (method {label if label in study_methods else allocation!r}); "
                              "--add takes a method the study does not compare")
        strategy = registry.allocation(alloc)
        pure = (sim == base.similarity and set(strategy.needs) <= {base.similarity} and not strategy.needs_model
                and strategy.nll_healer is None)
        prov = registry.provenance(kind, name)
        out.append(AddedMethod(label, kind, name, alloc, clus, sim, prov.get("code") or "", prov.get("source") or "",
                               pure))
    return out


def seed_similarity(results: StudyResult, seed: int) -> Any:
    """The committed S (float64 ``[N, N]``) of run seed ``seed``.

    Raises:
        ConfigError: the study holds no S for that seed.
    """
    if results.seeds:
        entry = results.seeds.get(str(seed))
        if entry is not None:
            return entry["similarity"]
    elif results.similarity is not None and seed == (results.config.get("seeds") or [results.config.get("seed", 0)])[0]:
        return results.similarity
    raise ConfigError(f"the committed study holds no similarity matrix for run seed {seed}; recompute the study")


def _picks(added: AddedMethod, results: StudyResult, config: SweepConfig, registry: Registry, executor: Any
           ) -> dict[tuple[int, int], tuple[list[int], float]]:
    """``{(budget, seed): (removed blocks, selection seconds)}`` at every budget and run seed of the study."""
    base, out = config.base, {}
    grid = [(b, s) for b in config.budgets for s in config.cell_seeds]
    if added.from_committed_s:
        for b, s in grid:
            t = time.perf_counter()
            sel = select_blocks(seed_similarity(results, s), b, k=base.k, seed=s, clustering=added.clustering,
                                allocation=added.allocation, protected=base.protected, registry=registry)
            out[b, s] = (sel.pruned, time.perf_counter() - t)
        return out
    run_base = replace(config.run_base, similarity=added.similarity, clustering=added.clustering)
    plain = config.plain_settings()
    with (executor or SerialExecutor()).workers(run_base, (added.allocation,), reuse_states=config.reuse_states,
                                                registry=registry) as workers:
        tasks = [Task("select_one", (CellSpec(added.allocation, b, s, plain),), key=(b, s)) for b, s in grid]
        for task, got in workers.run(tasks):
            if isinstance(got, BaseException):
                raise got
            out[task.key] = (got.selection.pruned, got.seconds)
    return out


def _block_parameters(results: StudyResult) -> int | None:
    """Parameters per block when every committed row says the blocks are of one size, else ``None``."""
    sizes = {(results.dense.parameters - c.parameters) / len(c.pruned) for c in results.all_cells
             if c.pruned and c.parameters and not c.added}
    return int(next(iter(sizes))) if len(sizes) == 1 else None


def _reusable(results: StudyResult) -> dict[tuple[int, ...], StudyCell]:
    """Committed rows with per-window NLL by removed set, a detailed row preferred (their numbers are exact)."""
    out: dict[tuple[int, ...], StudyCell] = {}
    for c in results.all_cells:
        if c.added or not c.window_nll:
            continue
        key = tuple(sorted(c.pruned))
        if key not in out or (_detailed(c) and not _detailed(out[key])):
            out[key] = c
    return out


def _detailed(c: StudyCell) -> bool:
    """Whether a row carries the detail budget's measures (zero-shot accuracy or decode speed)."""
    return c.zero_shot_average is not None or c.speed is not None


def add_methods(results: StudyResult, names: Iterable[str], config: SweepConfig, folder: str | Path,
                registry: Registry, *, allocation: str = "lorp", confirmation_windows: int = 0,
                executor: Any = None) -> list[AddedMethod]:
    """Add each method of ``names`` to ``results`` (in place): its rows at every budget and seed, its detail
    measures, its confirmation rows, its twins, and what was computed.

    Args:
        results: the study (its rows, S per seed, confirmation set).
        names: registered method names (:func:`resolve_added`).
        config: the study's sweep (:func:`lorp.study.parameters.study_config` of its parameters).
        folder: the sweep folder where the new scores are cached (the study's own, so the caches are shared).
        registry: the plugins.
        allocation: the study's method (LoRP).
        confirmation_windows: held-out windows per corpus (the study's); 0 for none.
    Returns:
        the added methods.
    Raises:
        ConfigError, UnknownNameError: as :func:`resolve_added`, before any work.
    """
    methods = list(dict.fromkeys(c.method for c in results.all_cells if not c.added))
    added = resolve_added(names, registry, config, methods, allocation)
    first, detail_budget = config.cell_seeds[0], (config.detail_budgets[0] if config.detail_budgets else None)
    reusable, per_block = _reusable(results), _block_parameters(results)
    record = dict(results.added or {"methods": [], "components": {}, "twins": {}, "computed": {}})
    for m in added:
        with HeldWorkers(executor) as held:  # one model load for the screening, detail and confirmation scores
            _add_one(results, m, config, folder, registry, held, reusable, per_block, first, detail_budget,
                     confirmation_windows, record)
    results.added = record
    return added


def _add_one(results: StudyResult, m: AddedMethod, config: SweepConfig, folder: str | Path, registry: Registry,
             executor: Any, reusable: dict, per_block: int | None, first: int, detail_budget: int | None,
             confirmation_windows: int, record: dict) -> None:
    """:func:`add_methods` for one method, its scores through ``executor`` (held workers)."""
    t0 = time.perf_counter()
    picks = _picks(m, results, config, registry, executor)
    new_sets = list(dict.fromkeys(tuple(p) for p, _ in picks.values() if tuple(p) not in reusable))
    firsts = tuple(sorted({r[0] for r in new_sets}))
    screened = screen(config, folder, new_sets, registry, executor) if new_sets else {}
    rows: list[StudyCell] = []
    for (b, s), (pruned, seconds) in sorted(picks.items(), key=lambda kv: (kv[0][1] != first, kv[0])):
        key = tuple(pruned)
        if key in reusable:
            old = reusable[key]
            row = replace(old, method=m.label, budget=b, seed=s, seconds={"selection": seconds, "evaluation": 0.0},
                          evaluation_reused=True, nll_passes=None, added=True,
                          zero_shot=None, zero_shot_items=None, zero_shot_average=None, speed=None,
                          zero_shot_correct=None)
        else:
            ppl = screened[key]
            row = StudyCell(method=m.label, budget=b, pruned=list(pruned),
                            perplexity={c: p.perplexity for c, p in ppl.items()},
                            mean_perplexity=geometric_mean_perplexity(ppl),
                            parameters=results.dense.parameters - per_block * len(pruned) if per_block else 0,
                            seed=s, seconds={"selection": seconds,
                                             "evaluation": float(sum(p.seconds for p in ppl.values()))},
                            added=True, **{k: v for k, v in per_sample(ppl, None).items()
                                           if k != "zero_shot_correct"})
        rows.append(row)
    detailed = _add_detail(rows, m, config, folder, registry, executor, reusable, detail_budget, first, firsts)
    confirmed = _add_confirmation(results, rows, m, config, folder, registry, executor, confirmation_windows,
                                  first)
    results.cells += [r for r in rows if r.seed == first]
    results.seed_cells += [r for r in rows if r.seed != first]
    record["methods"] = [*record["methods"], m.label]
    record["components"] = {**record["components"],
                            m.label: {"kind": m.kind, "name": m.name, "code": m.code, "source": m.source,
                                      "allocation": m.allocation, "clustering": m.clustering,
                                      "similarity": m.similarity}}
    record["twins"] = {**record["twins"], m.label: twins(results, m.label)}
    record["computed"] = {**record["computed"], m.label: {
        "picks": len(picks), "screened": len(new_sets),
        "reused_evaluations": sum(tuple(p) in reusable for p, _ in picks.values()),
        "detailed": detailed, "confirmed": confirmed, "seconds": time.perf_counter() - t0,
        "selection": "committed S" if m.from_committed_s else "own calibration pass per seed"}}


def _add_detail(rows: list[StudyCell], m: AddedMethod, config: SweepConfig, folder: str | Path, registry: Registry,
                executor: Any, reusable: dict, budget: int | None, first: int, firsts: tuple[int, ...] = ()) -> str:
    """Zero-shot accuracy and decode speed of the first-seed row at the detail budget (in place); what was done."""
    row = next((r for r in rows if r.budget == budget and r.seed == first), None)
    base = config.base
    if row is None or not (base.zero_shot_tasks or config.decode_tokens):
        return "none"
    old = reusable.get(tuple(row.pruned))
    if old is not None and _detailed(old):
        i = rows.index(row)
        rows[i] = replace(row, zero_shot=old.zero_shot, zero_shot_items=old.zero_shot_items,
                          zero_shot_average=old.zero_shot_average, speed=old.speed,
                          zero_shot_correct=old.zero_shot_correct, parameters=old.parameters)
        return f"reused from {old.method}"
    ev = detail(config, folder, [row.pruned], config.detail_settings(), registry, executor,
                firsts)[tuple(row.pruned)]
    i = rows.index(row)
    rows[i] = replace(row, parameters=ev.parameters, **detail_fields(ev.zero_shot, ev.speed),
                      zero_shot_correct=per_sample({}, ev.zero_shot)["zero_shot_correct"],
                      seconds={**row.seconds, "detail": ev.seconds})
    return "computed"


def _add_confirmation(results: StudyResult, rows: list[StudyCell], m: AddedMethod, config: SweepConfig,
                      folder: str | Path, registry: Registry, executor: Any, count: int, first: int) -> int:
    """Score the first-seed rows on the study's confirmation windows (each budget) and add them to
    ``results.confirmation`` with role ``"added"``; rows whose set a confirmation entry holds are copied.
    Returns the sets scored anew."""
    conf = results.confirmation
    if not count or not conf:
        return 0
    held = {tuple(sorted(e["pruned"])): e for e in conf["cells"] if e["role"] != "added"}
    mine = [r for r in rows if r.seed == first]
    new = [tuple(r.pruned) for r in mine if tuple(r.pruned) not in held]
    scored = confirm(config, folder, new, count, registry, executor) if new else {}
    entries = []
    for r in mine:
        key = tuple(r.pruned)
        scores = ({k: v for k, v in held[key].items() if k not in ("method", "budget", "role", "pruned")}
                  if key in held else confirmation_row(scored[key]))
        entries.append({"method": m.label, "budget": r.budget, "role": "added", "pruned": list(r.pruned), **scores})
    conf["cells"] = [*conf["cells"], *entries]
    return len(new)


def twins(results: StudyResult, label: str) -> list[str]:
    """The study's methods that remove the same blocks as ``label`` at every budget and every run seed both ran at
    (a new name for an old rule: "neighbour-sim ≡ shortgpt here"); a method run at the first seed only is
    compared at that seed."""
    mine = {(c.budget, c.seed): sorted(c.pruned) for c in results.all_cells if c.method == label}
    out = []
    for method in dict.fromkeys(c.method for c in results.all_cells if c.method != label):
        theirs = {(c.budget, c.seed): sorted(c.pruned) for c in results.all_cells if c.method == method}
        common = set(mine) & set(theirs)  # a method the study ran at the first seed only is compared there
        if common and {b for b, _ in common} == {b for b, _ in mine} and all(mine[k] == theirs[k] for k in common):
            out.append(method)
    return out


def load_committed(path: str | Path) -> StudyResult:
    """A committed ``results.json``.

    Raises:
        ConfigError: the file is missing or is not a study record (the message says how to make one).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no committed study at {path}: run `lorp study` for that model first (or give the folder "
                          "of a finished study with --committed)")
    return StudyResult.from_json(json.loads(path.read_text()))


def shown_path(path: str | Path | None) -> str:
    """``path`` as a record shows it: relative to the checkout when inside it (``reports/x/results.json``), so a
    committed record names no machine's folders."""
    if path is None:
        return ""
    p = Path(path).resolve()
    return p.relative_to(REPO_ROOT).as_posix() if p.is_relative_to(REPO_ROOT) else str(p)


def record_origin(results: StudyResult, committed: StudyResult | None, path: str | Path | None,
                  recomputed: Sequence[str]) -> None:
    """Say on ``results.added`` where the study's numbers came from: ``reused`` (the committed record's commit
    and code hash, when its key matched) and ``recomputed`` (one line per part of the key that differed). A
    reused study is rendered by this checkout: ``git_commit`` and ``code_hash`` become this checkout's, while
    ``computed_at_commit`` keeps the commit that computed the numbers."""
    reused = committed is not None and not recomputed
    results.added = {**(results.added or {}), "recomputed": list(recomputed),
                     "reused": {"from": shown_path(path), "computed_at_commit": committed.computed_at_commit,
                                "code_hash": committed.code_hash} if reused else None}
    if reused:
        results.git_commit, results.code_hash = git_commit(), code_hash()


#: ``table.csv``'s columns (:func:`lorp.run.sweep_table.sweep_table` with a seed column).
TABLE_COLUMNS = ("method", "budget", "seed", "corpus", "perplexity", "tokens", "parameters", "pruned")


def with_added_rows(table_csv: str, results: StudyResult) -> str:
    """The study's ``table.csv`` with a row per (added row, corpus) appended, in its columns."""
    reader = csv.DictReader(io.StringIO(table_csv))
    columns = reader.fieldnames or list(TABLE_COLUMNS)
    rows = [r for r in reader if r["method"] not in set((results.added or {}).get("methods", []))]
    tokens = {c: e.get("tokens_scored") for c, e in (results.evaluation or {}).items()}
    for c in (c for c in results.all_cells if c.added):
        for corpus, ppl in c.perplexity.items():
            rows.append({"method": c.method, "budget": c.budget, "seed": c.seed, "corpus": corpus, "perplexity": ppl,
                         "tokens": tokens.get(corpus, ""), "parameters": c.parameters or "",
                         "pruned": " ".join(map(str, c.pruned))})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


__all__ = ["AddedMethod", "KINDS", "TABLE_COLUMNS", "add_methods", "load_committed", "record_origin", "resolve_added",
           "seed_similarity", "shown_path", "twins", "with_added_rows"]
