"""Is the selection stable across calibration draws? Per-seed S, RLS, K, picks and perplexity.

A sweep with several run seeds (:attr:`lorp.run.sweep.SweepConfig.seeds`) draws one
calibration set per seed (and seeds the clustering and random baselines with it)
while evaluating on fixed windows and items. This module reads the per-seed part
of a study (:attr:`lorp.run.study_records.StudyResult.seeds`, filled by :func:`seed_runs`
through :func:`lorp.study.load.summarize`) and its cells:

- max |ΔS|: the largest absolute entry of ``S_seed - S_first`` (cosine similarity,
  dimensionless, in [0, 2]) over the block-input similarity matrices;
- RLS and K per seed (eqs. 5-6 on that seed's S);
- each method's removed blocks per seed and budget, and their stability: the mean
  pairwise Jaccard index ``|A ∩ B| / |A ∪ B|`` of the removed sets over all seed
  pairs (1: every seed removes the same blocks);
- the geometric mean perplexity over corpora per seed, its mean and spread (min–max) across
  seeds per (method, budget).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..run.records import CellResult
from ..run.study_records import StudyResult, SweepRecord
from .picks import statistics_picks

#: What :func:`sensitivity_markdown` says for a study without several seeds.
ONE_SEED = "One seed: no sensitivity (run with several seeds, e.g. `seeds='0,1,2'`, to see it)."


def jaccard(a: Iterable[int], b: Iterable[int]) -> float:
    """``|A ∩ B| / |A ∪ B|`` of two removed-block sets, in [0, 1]; two empty sets give 1."""
    a, b = set(a), set(b)
    return 1.0 if not a | b else len(a & b) / len(a | b)


def mean_pairwise_jaccard(sets: Sequence[Iterable[int]]) -> float:
    """Mean :func:`jaccard` over every unordered pair of ``sets``; one set (no pair) gives 1."""
    pairs = list(combinations([set(s) for s in sets], 2))
    return 1.0 if not pairs else statistics.fmean(jaccard(a, b) for a, b in pairs)


def max_abs_delta(similarities: Sequence[Any]) -> float:
    """Largest ``|S_i - S_0|`` entry over the matrices after the first (float64 ``[N, N]`` each); 0 for one.

    Raises:
        ValueError: matrices of different shapes.
    """
    mats = [np.asarray(s, dtype=np.float64) for s in similarities]
    if any(m.shape != mats[0].shape for m in mats):
        raise ValueError(f"similarity matrices of different shapes: {[m.shape for m in mats]}")
    return max((float(np.max(np.abs(m - mats[0]))) for m in mats[1:]), default=0.0)


def seed_runs(meta: SweepRecord, cells: Sequence[CellResult], allocation: str = "lorp") -> dict[str, Any]:
    """Per run seed (``str(seed)``, in the sweep's seed order): S, calibration record, RLS, K of that draw.

    The first seed's S and calibration are the sweep's context; the others come from
    ``meta.seed_calibration`` (seeds it lacks are left out). RLS, K and ``k_source``
    come from that seed's ``allocation`` cells (``None`` when it has none). Empty
    when the sweep ran one seed.
    """
    seeds = [int(s) for s in meta.config.get("seeds") or []]
    if len(seeds) < 2:
        return {}
    out: dict[str, Any] = {}
    for i, seed in enumerate(seeds):
        if i == 0:
            similarity, calibration = meta.context.similarity, meta.context.calibration
        elif str(seed) in meta.seed_calibration:
            similarity = meta.seed_calibration[str(seed)]["similarity"]
            calibration = meta.seed_calibration[str(seed)]["calibration"]
        else:
            continue
        ref = next((c.selection for c in cells
                    if c.method == allocation and c.spec.seed == seed and c.selection.rls is not None), None)
        out[str(seed)] = {"similarity": np.asarray(similarity, dtype=np.float64), "calibration": dict(calibration),
                          "rls": ref.rls if ref else None, "k": ref.k if ref else None,
                          "k_source": ref.k_source if ref else None}
    return out


def stability(results: StudyResult) -> list[dict[str, Any]]:
    """One row per (method, budget) in cell order, over the seeds of :attr:`StudyResult.seeds`.

    Methods run at a single seed (:attr:`lorp.run.sweep.SweepConfig.seed_methods`) have no row.
    Row keys: ``method``, ``budget``, ``picks`` (``{seed: sorted removed blocks}``),
    ``jaccard`` (:func:`mean_pairwise_jaccard` of the removed sets), ``distinct``
    (number of different removed sets), ``perplexity`` (``{seed: geometric mean perplexity over
    corpora}``), ``ppl_mean``, ``ppl_min``, ``ppl_max``. Empty for a one-seed study.
    """
    r = results
    seeds = [int(s) for s in r.seeds]
    if len(seeds) < 2:
        return []
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for c in r.all_cells:
        if c.seed not in seeds:
            continue
        row = rows.setdefault((c.method, c.budget), {"method": c.method, "budget": c.budget, "picks": {},
                                                     "perplexity": {}})
        row["picks"][c.seed] = sorted(c.pruned)
        row["perplexity"][c.seed] = c.mean_perplexity
    rows = {key: row for key, row in rows.items() if len(row["picks"]) > 1}  # run at one seed: nothing to compare
    for row in rows.values():
        sets = list(row["picks"].values())
        ppl = list(row["perplexity"].values())
        row.update(jaccard=mean_pairwise_jaccard(sets), distinct=len({tuple(s) for s in sets}),
                   ppl_mean=statistics.fmean(ppl), ppl_min=min(ppl), ppl_max=max(ppl))
    return list(rows.values())


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def sensitivity_markdown(results: StudyResult) -> str:
    """Markdown for one model: is the selection stable across calibration draws?

    Sections: per-seed calibration (tokens, max |ΔS| vs the first seed, RLS, K), then
    one table row per (method, budget) with the removed blocks per seed, their
    stability (mean pairwise Jaccard, distinct sets) and the geometric mean perplexity over
    corpora across seeds (mean, min–max). A study without several seeds (or written
    before seeds drew calibration) gives :data:`ONE_SEED`.
    """
    r = results
    if len(r.seeds) < 2:
        return ONE_SEED
    seeds = list(r.seeds)
    first = seeds[0]
    mats = {s: np.asarray(v["similarity"], dtype=np.float64) for s, v in r.seeds.items()}
    name = r.model.get("name") or r.model.get("spec") or "model"
    cal = r.seeds[first]["calibration"]
    lines = [f"### {name}: {len(seeds)} calibration draws (seeds {', '.join(seeds)})", "",
             f"Each seed draws its own {r.config.get('num_samples', '?')} × {r.config.get('seq_len', '?')} "
             f"calibration tokens of {cal.get('corpus', r.config.get('calibration', '?'))} (SLEB scores the first "
             f"{r.config.get('sleb_samples', '?')} of them) and seeds the clustering and random baselines; "
             "perplexity windows and zero-shot items are the same for every seed "
             f"(zero-shot items drawn with seed {first}).", "",
             f"**max |ΔS| across seeds (vs seed {first})**: {_num(max_abs_delta(list(mats.values())), 4)}", "",
             "| seed | calibration tokens | max \\|ΔS\\| vs first | RLS | K |", "|---|---|---|---|---|"]
    for s, v in r.seeds.items():
        lines.append(f"| {s} | {v['calibration'].get('num_tokens', '—')} | "
                     f"{_num(float(np.max(np.abs(mats[s] - mats[first]))), 4)} | {_num(v.get('rls'))} | "
                     f"{v.get('k') if v.get('k') is not None else '—'} |")
    lines += ["", "| method | budget | removed blocks per seed | mean pairwise Jaccard | distinct sets | "
                  "perplexity mean | perplexity min–max |", "|---|---|---|---|---|---|---|"]
    for row in stability(r):
        picks = "; ".join(f"{s}: {' '.join(map(str, p))}" for s, p in row["picks"].items())
        lines.append(f"| {row['method']} | {row['budget']} | {picks} | {row['jaccard']:.2f} | {row['distinct']} | "
                     f"{row['ppl_mean']:.2f} | {row['ppl_min']:.2f}–{row['ppl_max']:.2f} |")
    rows_of = {row["method"] for row in stability(r)}
    single = [m for m in dict.fromkeys(c.method for c in r.cells) if m not in rows_of]
    lines += ["", "Jaccard: |A ∩ B| / |A ∪ B| of two seeds' removed sets, averaged over seed pairs (1: the same "
                  "blocks for every seed). Perplexity: mean over the evaluation corpora, per seed."
              + (f" Run at seed {first} only (`seed_methods`): {', '.join(single)}." if single else "")]
    return "\n".join(lines)


def picks_with_more_data(base: Any, methods: Sequence[str], budgets: Sequence[int], num_samples: int,
                         registry: Any = None) -> dict[str, Any]:
    """The removed blocks of each similarity-only method when S comes from ``num_samples`` calibration sequences.

    One calibration pass of ``num_samples`` × ``base.seq_len`` tokens (the first seed's draw,
    cached on disk like every pass) on a fresh :class:`lorp.run.worker.CellWorker`; then each
    method in ``methods`` that reads the calibration statistics and only them (SLEB and
    model-scoring selectors, which need the model, and ``last``/``random``, which read no
    statistic, are skipped) chooses its blocks at every budget. No evaluation: this says
    whether the picks move with more data.

    Returns:
        ``{"num_samples", "seq_len", "rls", "k", "seconds", "seconds_this_run", "picks": {method: {budget:
        sorted blocks}}, "skipped": [methods left out]}``: ``seconds`` is the calibration pass's
        cost when computed (a cached pass keeps it), ``seconds_this_run`` this call's wall time.
    Raises:
        ConfigError: ``num_samples`` below 1; what loading the model or the pass raises.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"the larger calibration size must be a whole number >= 1, got {num_samples!r}")
    out = statistics_picks(replace(base, num_samples=num_samples), methods, budgets, registry)
    return {"num_samples": num_samples, "seq_len": base.seq_len, **out}


def more_data_markdown(results: StudyResult, more: Mapping[str, Any]) -> str:
    """Markdown: each method's picks at the study's calibration size (first seed) against ``more``
    (:func:`picks_with_more_data`), with their Jaccard index."""
    r = results
    n0, n1 = r.config.get("num_samples", "?"), more["num_samples"]
    lines = [f"Calibration {n0} × {more['seq_len']} tokens (the study, first seed) against {n1} × {more['seq_len']} "
             f"(same draw, more sequences): RLS {_num(r.rls)} → {_num(more.get('rls'))}, K {r.k} → {more.get('k')}. "
             f"One extra calibration pass ({more['seconds']:.0f} s when computed); no evaluation.", "",
             f"| method | budget | removed at {n0} | removed at {n1} | Jaccard |", "|---|---:|---|---|---:|"]
    moved = same = 0
    for m, per in more["picks"].items():
        for b, blocks in per.items():
            cell = next((c for c in r.cells if c.method == m and c.budget == int(b)), None)
            if cell is None:
                continue
            j = jaccard(cell.pruned, blocks)
            same, moved = same + (j == 1.0), moved + (j < 1.0)
            lines.append(f"| {m} | {b} | {' '.join(map(str, sorted(cell.pruned)))} | {' '.join(map(str, blocks))} | "
                         f"{j:.2f} |")
    lines += ["", f"{same} of {same + moved} picks unchanged with {n1 / n0 if isinstance(n0, int) else '?':g}× the "
                  "calibration sequences." + (f" Left out (they score candidates with the model, or read no "
                                              f"calibration statistic): {', '.join(more['skipped'])}."
                                              if more.get("skipped") else "")]
    return "\n".join(lines) + "\n"


__all__ = ["ONE_SEED", "more_data_markdown", "picks_with_more_data", "jaccard", "max_abs_delta", "mean_pairwise_jaccard", "seed_runs", "sensitivity_markdown",
           "stability"]
