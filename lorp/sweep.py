"""One calibration pass, many methods × budgets: the comparison table behind the study.

Layout of a sweep folder::

    sweep.json                settings, the calibration record, dense perplexity
    cells/<method>-b<B>.json  one per (method, budget): pruned blocks, perplexity, parameters
    table.csv, table.json     tidy table: one row per (method, budget, corpus)

Every file is written atomically. A rerun with the same settings skips the
cells already written (and, when none is left, does not even load the model);
the calibration pass itself is cached on disk (:func:`lorp.pipeline.calibrate`).
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import progress
from .atomic import write_json, write_text
from .blocks import find_blocks
from .atomic import check_output_location
from .cache import cache_key, check_cache_writable, input_fingerprint, read_checked_json, write_checked_json
from .data import evaluation_windows, load_corpus
from .errors import ConfigError
from .evaluation import SweepPerplexity
from .models import load_model, resolve_model
from .pipeline import PruneConfig, block_metric, calibrate, calibration_nll
from .plugins import Registry, load_registry
from .provenance import git_commit, package_versions
from .pruning import blocks_removed
from .selection import select_blocks
from .speed import decode_speed, flops_per_token
from .zeroshot import zero_shot

#: Fields every cell file must hold to be reused.
CELL_FIELDS = ("identity", "method", "budget", "pruned", "selection", "perplexity", "parameters")
DEFAULT_METHODS = ("lorp", "shortgpt", "streamline", "angular", "sleb", "last", "random")
DEFAULT_BUDGETS = (3, 5, 7, 9)


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the shared settings of one run (``base``) × methods × budgets.

    ``base.budget`` and ``base.allocation`` are ignored; every other field of
    :class:`lorp.pipeline.PruneConfig` applies to all cells.

    Attributes:
        methods: allocation strategies compared.
        budgets: blocks to remove.
        detail_budgets: budgets (a subset of ``budgets``) whose cells also get
            zero-shot accuracy (``base.zero_shot_tasks``) and decode speed.
        detail_methods: the methods measured at detail budgets (``None``: all).
        decode_tokens: tokens generated per decode-speed run (0: no speed).
        reuse_states: restart each pruned variant's perplexity from the dense
            model's hidden states (:class:`lorp.evaluation.SweepPerplexity`).
    """

    base: PruneConfig = PruneConfig()
    methods: tuple[str, ...] = DEFAULT_METHODS
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    detail_budgets: tuple[int, ...] = ()
    detail_methods: tuple[str, ...] | None = None
    decode_tokens: int = 0
    reuse_states: bool = True

    def detailed(self, method: str, budget: int) -> bool:
        """Whether the cell (method, budget) gets zero-shot accuracy and decode speed."""
        return budget in self.detail_budgets and (self.detail_methods is None or method in self.detail_methods)

    def identity(self) -> str:
        """Hash of the settings every cell shares (cells from other settings are not reused).

        Includes the content digests of local inputs (a model folder, text-file
        corpora: :func:`lorp.cache.input_fingerprint`), so a rewritten file gives
        a new identity and its cells are recomputed.
        """
        shared = _shared_settings(self.base)
        local = input_fingerprint(self.base.model, [self.base.calibration, *self.base.eval_corpora])
        if local:  # local inputs enter by content, not by path
            shared["model"] = local.get("model", shared["model"])
            shared["calibration"] = local.get(shared["calibration"], shared["calibration"])
            shared["eval_corpora"] = [local.get(c, c) for c in shared["eval_corpora"]]
        return cache_key({"sweep": shared})


def _shared_settings(base: PruneConfig) -> dict[str, Any]:
    """The settings every cell shares, JSON-ready (per-cell fields left out)."""
    shared = json.loads(json.dumps(asdict(base), default=list))
    for per_cell in ("budget", "allocation", "save_model", "progress", "use_cache"):
        shared.pop(per_cell)
    return shared


def _cell_name(method: str, budget: int) -> str:
    return f"{method}-b{budget}"


def _table(cells: list[dict[str, Any]], dense: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"method": "dense", "budget": 0, "corpus": c, "perplexity": v["perplexity"], "tokens": v["tokens"],
             "parameters": dense["parameters"], "pruned": ""} for c, v in dense["perplexity"].items()]
    for cell in cells:
        for corpus, v in cell["perplexity"].items():
            rows.append({"method": cell["method"], "budget": cell["budget"], "corpus": corpus,
                         "perplexity": v["perplexity"], "tokens": v["tokens"], "parameters": cell["parameters"],
                         "pruned": " ".join(map(str, cell["pruned"]))})
    return rows


def write_table(folder: Path, rows: list[dict[str, Any]]) -> None:
    """``table.csv`` and ``table.json`` (atomic)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / "table.csv", buf.getvalue())
    write_json(folder / "table.json", rows)


def _run_cells(config: SweepConfig, out: Path, registry: Registry, strategies: dict[str, Any],
               pending: list[tuple[str, int]], previous: dict[str, Any] | None, identity: str) -> None:
    """Load the model once, select every pending cell, evaluate it and write its JSON."""
    base = config.base
    calib_corpus = load_corpus(base.calibration, registry)
    eval_corpora = {name: load_corpus(name, registry) for name in base.eval_corpora}
    loaded = load_model(base.model, device=base.device)
    model = loaded.model
    _, blocks = find_blocks(model, registry)
    num_params = sum(p.numel() for p in model.parameters())
    block_params = [sum(p.numel() for p in blk.parameters()) for blk in blocks]
    needed = {base.similarity: block_metric(registry, base.similarity)}
    for m, _ in pending:
        needed.update({n: registry.similarity(n) for n in strategies[m].needs})
    t0 = time.perf_counter()
    progress.report(stage="calibration", message=f"calibration pass ({base.num_samples} x {base.seq_len} tokens of "
                                                 f"{base.calibration}; cached passes are reused)")
    matrices, calib_meta = calibrate(loaded, calib_corpus, base, needed, registry)
    calib_seconds = time.perf_counter() - t0

    nll: list = []

    def select(method: str, budget: int):
        strategy = strategies[method]
        if strategy.needs_model and not nll:
            nll.append(calibration_nll(loaded, calib_corpus, base, registry))
        scorer_nll = nll[0] if strategy.needs_model else None
        t = time.perf_counter()
        selection = select_blocks(matrices[base.similarity], budget, k=base.k, seed=base.seed,
                                  clustering=base.clustering, allocation=method, protected=base.protected,
                                  statistics=matrices, nll=scorer_nll, registry=registry)
        passes = {"full": scorer_nll.forward_passes, "partial": scorer_nll.partial_passes} if scorer_nll else None
        return selection, time.perf_counter() - t, passes

    # Cheap selections first (their first removed blocks tell the scorer which dense states to keep);
    # strategies that run the model (SLEB) are selected and evaluated one cell at a time afterwards.
    cheap = [(m, b) for m, b in pending if not strategies[m].needs_model]
    costly = [(m, b) for m, b in pending if strategies[m].needs_model]
    selections = {cell: select(*cell) for cell in cheap}

    windows = {n: evaluation_windows(loaded.tokenizer, c, base.eval_seq_len, base.eval_tokens)
               for n, c in eval_corpora.items()}
    progress.report(stage="dense", message="dense model: perplexity" + (", zero-shot accuracy and decode speed"
                                                                        if config.detail_budgets else ""))
    t = time.perf_counter()
    firsts = {min(sel.pruned) for sel, _, _ in selections.values()} if config.reuse_states else set()
    scorer = SweepPerplexity(model, windows, firsts, batch_size=base.batch_size, registry=registry,
                             reuse=config.reuse_states)
    prompt = next(iter(windows.values()))[:1, : min(32, base.eval_seq_len)]

    def details() -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if base.zero_shot_tasks:
            extra["zero_shot"] = zero_shot(model, loaded.tokenizer, base.zero_shot_tasks, limit=base.zero_shot_limit,
                                           seed=base.seed)
        if config.decode_tokens:
            extra["speed"] = {**decode_speed(model, prompt, new_tokens=config.decode_tokens),
                              "flops_per_token": flops_per_token(model, registry)}
        return extra

    dense = {"parameters": num_params, "perplexity": scorer.dense, "flops_per_token": flops_per_token(model, registry),
             "seconds": time.perf_counter() - t}
    old_dense = (previous or {}).get("dense", {})
    wanted = {k for k, on in (("zero_shot", base.zero_shot_tasks), ("speed", config.decode_tokens)) if on}
    reusable = {k: old_dense[k] for k in wanted if old_dense.get(k) is not None}
    if config.detail_budgets:
        dense.update(reusable if set(reusable) == wanted else details())
    write_checked_json(out / "sweep.json", {
        "identity": identity, "config": {**_shared_settings(base), "methods": list(config.methods),
                                         "budgets": list(config.budgets), "detail_budgets": list(config.detail_budgets),
                                         "decode_tokens": config.decode_tokens},
        "model": {"spec": base.model, "name": loaded.name, **loaded.info, "num_blocks": len(blocks)},
        "calibration": {**calib_meta, "seconds_this_run": calib_seconds, "corpus": base.calibration,
                        "source": calib_corpus.source},
        "similarity": matrices[base.similarity], "dense": dense,
        "perplexity_reuse": {"enabled": scorer.reuse, "stored_blocks": scorer.stored_blocks},
        "versions": package_versions(), "git_commit": git_commit(),
        "content": input_fingerprint(base.model, [base.calibration, *base.eval_corpora], registry),
    })
    order = cheap + costly
    progress.report(stage="cells", total=len(order), message=f"{len(order)} cells to compute")
    for done, (method, budget) in enumerate(tqdm(order, desc="sweep cells", disable=not base.progress, unit="cell"), 1):
        selection, select_s, passes = selections.pop((method, budget), None) or select(method, budget)
        t = time.perf_counter()
        ppl = scorer(selection.pruned)
        ppl_s = time.perf_counter() - t
        extra = {}
        if config.detailed(method, budget):
            with blocks_removed(model, selection.pruned, registry):
                extra = details()
        write_checked_json(out / "cells" / f"{_cell_name(method, budget)}.json", {
            "identity": identity, "method": method, "budget": budget, "pruned": selection.pruned,
            "selection": selection.to_dict(), "perplexity": ppl,
            "parameters": num_params - sum(block_params[b] for b in selection.pruned), **extra,
            "plugin": registry.provenance("allocation", method),
            "seconds": {"selection": select_s, "perplexity": ppl_s, "total": select_s + time.perf_counter() - t},
            "nll_passes": passes,
        })
        progress.report(stage="cell", done=done, total=len(order), method=method, budget=budget)


def run_sweep(config: SweepConfig, out_dir: str | Path, registry: Registry | None = None) -> list[dict[str, Any]]:
    """Evaluate every (method, budget) cell from one calibration pass; return the tidy table rows.

    Raises:
        ConfigError, UnknownNameError: unknown method, bad budgets, or a folder
            holding a sweep with other settings — all before any heavy work.
    """
    base = config.base
    base.validate()
    out = Path(out_dir)
    registry = registry or load_registry()
    strategies = {m: registry.allocation(m) for m in config.methods}
    if not config.methods or not config.budgets:
        raise ConfigError("give at least one method and one budget")
    if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in config.budgets):
        raise ConfigError(f"budgets must be whole numbers >= 1, got {list(config.budgets)}")
    if any(s.uses_clusters for s in strategies.values()):
        registry.clustering(base.clustering)
    block_metric(registry, base.similarity)
    resolve_model(base.model)
    check_cache_writable()
    base.check_against_model(config.budgets)
    check_output_location(out)
    identity = config.identity()
    meta_path = out / "sweep.json"
    previous = read_checked_json(meta_path, "sweep record", ("identity", "config", "dense"))
    if previous is not None and not isinstance(previous, dict):
        previous = None
    if previous is not None and previous.get("identity") != identity:
        now = _shared_settings(base)
        changed = sorted(k for k in now if previous.get("config", {}).get(k) != now[k])
        local = input_fingerprint(base.model, [base.calibration, *base.eval_corpora], registry)
        changed += [f"content of {base.model if k == 'model' else k}" for k in local
                    if previous.get("content", {}).get(k) != local[k]]
        raise ConfigError(f"{out} holds a sweep with other settings (differing: {', '.join(changed) or 'lorp version'}); "
                          "use another --out or delete it")
    if out.exists() and previous is None and not meta_path.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} exists and is not a lorp sweep; choose another --out")

    if not set(config.detail_budgets) <= set(config.budgets):
        raise ConfigError(f"detail budgets {list(config.detail_budgets)} must be among the budgets {list(config.budgets)}")
    if isinstance(config.decode_tokens, bool) or config.decode_tokens < 0 or config.decode_tokens == 1:
        raise ConfigError(f"decode_tokens must be 0 (no speed) or >= 2, got {config.decode_tokens!r}")

    if config.detail_methods is not None and not set(config.detail_methods) <= set(config.methods):
        raise ConfigError(f"detail methods {sorted(set(config.detail_methods) - set(config.methods))} are not among "
                          f"the methods {list(config.methods)}")

    def complete(cell: dict[str, Any], budget: int) -> bool:
        if not config.detailed(cell["method"], budget):
            return True
        return ((not base.zero_shot_tasks or cell.get("zero_shot") is not None)
                and (not config.decode_tokens or cell.get("speed") is not None))

    def load_cell(method: str, budget: int) -> dict[str, Any] | None:
        cell = read_checked_json(out / "cells" / f"{_cell_name(method, budget)}.json", "sweep cell", CELL_FIELDS)
        if isinstance(cell, dict) and cell.get("identity") == identity and complete(cell, budget):
            return cell
        return None

    dense_needs = bool(config.detail_budgets) and (
        (base.zero_shot_tasks and (previous or {}).get("dense", {}).get("zero_shot") is None)
        or (config.decode_tokens and (previous or {}).get("dense", {}).get("speed") is None))
    pending = [(m, b) for m in config.methods for b in config.budgets if load_cell(m, b) is None]
    if pending or previous is None or dense_needs:
        _run_cells(config, out, registry, strategies, pending, previous, identity)
    else:
        progress.report(stage="cached", message=f"all {len(config.methods) * len(config.budgets)} cells already "
                                                f"computed in {out}; reusing them")
    summary = read_checked_json(meta_path, "sweep record", ("identity", "config", "dense"))
    cells = [load_cell(m, b) for m in config.methods for b in config.budgets]
    rows = _table([c for c in cells if c is not None], summary["dense"])
    write_table(out, rows)
    return rows
