"""Which part of LoRP is at fault, and does a selector of our own do better? (``notebooks/ablation.ipynb``)

After a model's study (``notebooks/lorp_study.ipynb``), the ablation notebook runs the LoRP ablations
(:mod:`lorp.builtins.ablations`) and our selectors (:mod:`lorp.builtins.selectors`) in the study's own
sweep folder: same calibration draws, same evaluation windows, so every comparison here is paired and the
study's cells are reused, not recomputed. Ablations run at the first seed; selectors at every seed the
study ran (``selector_seeds``: ``all``) or at the first only (``first``, the default preset), against the
baselines at the same seed.

- **Ablation table** (:func:`ablation_rows`): each variant at each budget against LoRP and against the
  best baseline, as geometric-mean perplexity ratios with paired 95 % t-intervals over the screening
  windows (:func:`lorp.evaluate.perplexity_uncertainty.compare_perplexity`), and the share of LoRP's gap to the best
  baseline it recovers, in log perplexity: ``(log p_LoRP − log p_variant) / (log p_LoRP − log p_best)``
  (1: closes the gap; above 1: beats the baseline; below 0: worse than LoRP).
- **Selector outcome** per (model, budget) (:func:`selector_outcomes`): at each seed the selector is
  compared, paired, with every baseline evaluated at that seed (a baseline run at the first seed only,
  such as SLEB in the default preset, is compared at every seed with that one run). The setting is a
  **win** when at every seed the interval against every baseline lies below 1 *and* the selector's
  worst seed beats every baseline's best seed (beyond the seed spread); a **loss** when at every seed
  some baseline beats it beyond its interval; otherwise **undecided**.
- **Win rate** (:func:`win_rate`): wins over settings, with a Wilson 95 % interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluate.accuracy_uncertainty import wilson_interval
from ..evaluate.perplexity_uncertainty import compare_perplexity
from ..evaluate.uncertainty import LEVEL
from ..run.study_records import StudyCell, StudyResult
from .parameters import split_ints, split_list, study_config
from .formatting import fmt_times, interval_method
from .query import best_baseline
from .query import cell as query_cell


ABLATION_SCHEMA = "lorp.ablation"


def names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Comma-separated names (or a sequence) as a tuple, blanks dropped, order and first occurrence kept
    (:func:`lorp.study.parameters.split_list` without repeats)."""
    return tuple(dict.fromkeys(split_list(value, "names")))


def ablation_config(params: Mapping[str, Any], ablations: Sequence[str], selectors: Sequence[str]):
    """The study's :class:`lorp.run.sweep.SweepConfig` (``params``: its notebook parameters) with the
    ablations and selectors added: same shared settings, hence the same sweep folder and cells.

    Ablations run at the first seed; selectors at every seed (``params["selector_seeds"]`` ``"all"``, the
    default) or at the first only (``"first"``, the default preset's time cut); the study's methods as in the
    study (their cells are already in the folder).

    Raises:
        ConfigError: no ablation and no selector, a name given as both, one of them among the study's own
            methods, a study without a baseline to compare against, or ``selector_seeds`` other than
            ``all`` or ``first``.
    """
    ablations, selectors = names(ablations), names(selectors)
    if not ablations and not selectors:
        raise ConfigError("give at least one ablation or selector (e.g. ablations='lorp-residual')")
    both = sorted(set(ablations) & set(selectors))
    if both:
        raise ConfigError(f"{', '.join(both)} given both as an ablation and as a selector; name it once")
    study = study_config(params)
    if not [m for m in study.methods if m != study.base.allocation]:
        raise ConfigError(f"the ablation notebook compares against the study's baselines, but the study runs only "
                          f"{study.base.allocation}; add a baseline (e.g. methods='lorp,shortgpt') or set "
                          "ablations='' and selectors=''")
    clash = sorted(set(study.methods) & {*ablations, *selectors})
    if clash:
        raise ConfigError(f"{', '.join(clash)} already among the study's methods; an ablation or selector must be "
                          "compared against the study, not be part of it")
    seeded = study.seed_methods if study.seed_methods is not None else study.methods
    every = str(params.get("selector_seeds", "all")).strip().lower()
    if every not in ("all", "first"):
        raise ConfigError(f"selector_seeds must be 'all' (every run seed) or 'first' (the first seed only), "
                          f"got {params.get('selector_seeds')!r}")
    where = ablation_budgets(params.get("ablation_budgets", ""), study.budgets, study.detail_budgets)
    return replace(study, methods=(*study.methods, *ablations, *selectors),
                   seed_methods=(*seeded, *selectors) if every == "all" else tuple(seeded),
                   method_budgets=tuple((a, where) for a in ablations if where != study.budgets))


def ablation_budgets(value: str | Sequence[int], budgets: Sequence[int], detail: Sequence[int]) -> tuple[int, ...]:
    """The budgets the LoRP ablations run at: ``""`` the detail budget (every budget without one), ``"all"`` every
    budget, else the comma-separated budgets given (each one of the study's).

    Raises:
        ConfigError: a budget that is not one of the study's.
    """
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value or "").strip()
    if not text:
        return tuple(detail[:1]) or tuple(budgets)
    if text == "all":
        return tuple(budgets)
    chosen = split_ints(text, "ablation_budgets")
    bad = [b for b in chosen if b not in budgets]
    if bad or not chosen:
        raise ConfigError(f"ablation_budgets {text!r}: each must be one of the budgets {list(budgets)} (or 'all'; "
                          "empty: the detail budget)")
    return tuple(b for b in budgets if b in chosen)


def _compare(reference: StudyCell, other: StudyCell) -> dict[str, Any] | None:
    k = compare_perplexity(reference, other)
    return None if k is None else {"ratio": k.ratio, "low": k.ratio_low, "high": k.ratio_high,
                                   "decision": k.decision}


def recovered_share(lorp: float, variant: float, best: float) -> float | None:
    """Share of LoRP's log-perplexity gap to the best baseline that ``variant`` closes.

    ``(log lorp − log variant) / (log lorp − log best)``: 0 for LoRP itself, 1 for the baseline's
    perplexity, above 1 when the variant beats it, below 0 when it is worse than LoRP. ``None``
    when LoRP is not worse than the best baseline (no gap to recover) or a perplexity is not positive and finite.
    """
    if not all(math.isfinite(v) and v > 0 for v in (lorp, variant, best)) or not lorp > best:
        return None
    return (math.log(lorp) - math.log(variant)) / (math.log(lorp) - math.log(best))


def ablation_rows(results: StudyResult, variants: Sequence[str], baselines: Sequence[str],
                  allocation: str = "lorp") -> list[dict[str, Any]]:
    """One row per (variant, budget), first-seed cells, in variant then budget order.

    Row keys: ``method``, ``budget``, ``pruned``, ``mean_perplexity`` (and ``lorp_perplexity``,
    ``best_perplexity``: LoRP's and the best baseline's), ``same_as_lorp`` (removes LoRP's blocks), ``vs_lorp`` and ``vs_best`` (``{"ratio", "low", "high", "decision"}``: the
    variant's geometric mean perplexity over LoRP's / the best baseline's with the paired 95 % interval;
    ``None`` without per-window NLL), ``best_baseline``, ``recovered`` (:func:`recovered_share`).
    Variants or budgets without a cell are skipped.
    """
    r = results
    out = []
    for v in variants:
        for b in sorted({c.budget for c in r.cells}):
            cell, lorp = query_cell(r.cells, v, b), query_cell(r.cells, allocation, b)
            best = best_baseline(r.cells, b, among=baselines)
            if cell is None or lorp is None or best is None:
                continue
            out.append({"method": v, "budget": b, "pruned": list(cell.pruned),
                        "mean_perplexity": cell.mean_perplexity, "lorp_perplexity": lorp.mean_perplexity,
                        "best_perplexity": best.mean_perplexity, "same_as_lorp": set(cell.pruned) == set(lorp.pruned),
                        "vs_lorp": _compare(lorp, cell), "best_baseline": best.method,
                        "vs_best": _compare(best, cell),
                        "recovered": recovered_share(lorp.mean_perplexity, cell.mean_perplexity, best.mean_perplexity)})
    return out


def recovers_most(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The variant that recovers the largest share of LoRP's log-perplexity gap over the budgets where LoRP trails.

    Pooled, not averaged: ``sum(log p_LoRP − log p_variant) / sum(log p_LoRP − log p_best)`` over the budgets
    with a gap (rows whose ``recovered`` is not ``None``), so a budget where LoRP trails by a hair cannot
    dominate. Returns ``{"method", "pooled_recovered", "budgets", "wins_vs_lorp"}`` (``pooled_recovered`` is that
    pooled share; ``budgets`` counts the budgets pooled; ``wins_vs_lorp`` those where the variant's interval
    against LoRP lies below 1), or ``None`` when no row has a gap. Ties: the first variant.
    """
    per: dict[str, list[float]] = {}
    for row in rows:
        if row.get("recovered") is not None and row.get("vs_lorp") and row.get("vs_best"):
            lorp_log = math.log(row["lorp_perplexity"])
            acc = per.setdefault(row["method"], [0.0, 0.0, 0, 0])
            acc[0] += lorp_log - math.log(row["mean_perplexity"])  # what the variant recovers
            acc[1] += lorp_log - math.log(row["best_perplexity"])  # LoRP's gap
            acc[2] += 1
            acc[3] += row["vs_lorp"]["decision"] == "wins"
    scored = {m: v[0] / v[1] for m, v in per.items() if v[1] > 0}
    if not scored:
        return None
    best = max(scored, key=lambda m: scored[m])  # dicts keep order: ties go to the first variant
    return {"method": best, "pooled_recovered": scored[best], "budgets": per[best][2], "wins_vs_lorp": per[best][3]}


def selector_outcomes(results: StudyResult, selector: str, baselines: Sequence[str]
                      ) -> list[dict[str, Any]]:
    """Per budget: the selector against every baseline at every seed it ran (see the module docstring).

    Row keys: ``budget``, ``outcome`` (``"wins"``, ``"loses"``, ``"undecided"``), ``seeds`` (one entry per
    seed: ``seed``, ``pruned``, ``mean_perplexity``, ``best_baseline``, ``best_perplexity``, ``vs_best``
    (ratio and interval against that seed's best baseline), ``beats_all`` / ``beaten`` (whether the
    interval against every baseline lies below 1 / against some baseline above 1)), ``spread``
    (selector's worst seed and every baseline's best seed, geometric mean perplexity) and ``beyond_spread``.
    Budgets without a selector cell are skipped; a seed without per-window NLL counts as undecided.
    """
    r = results
    cells = r.all_cells
    first = r.cells[0].seed if r.cells else None
    out = []
    for b in sorted({c.budget for c in r.cells}):
        mine = sorted((c for c in cells if c.method == selector and c.budget == b), key=lambda c: c.seed)
        if not mine:
            continue
        seeds, beats, beaten = [], [], []
        for cell in mine:
            rivals = [x for x in (query_cell(cells, m, b, seed=cell.seed) or query_cell(cells, m, b, seed=first)
                                   for m in baselines)
                      if x is not None]
            if not rivals:
                continue
            ks = [compare_perplexity(x, cell) for x in rivals]
            best = best_baseline(rivals, b, among=baselines)
            all_win = all(k is not None and k.decision == "wins" for k in ks)
            any_lose = any(k is not None and k.decision == "loses" for k in ks)
            beats.append(all_win)
            beaten.append(any_lose)
            seeds.append({"seed": cell.seed, "pruned": list(cell.pruned), "mean_perplexity": cell.mean_perplexity,
                          "best_baseline": best.method, "best_perplexity": best.mean_perplexity,
                          "vs_best": _compare(best, cell), "beats_all": all_win, "beaten": any_lose})
        if not seeds:
            continue
        worst = max(s["mean_perplexity"] for s in seeds)
        rival_best = {m: min(c.mean_perplexity for c in cells if c.method == m and c.budget == b)
                      for m in baselines if any(c.method == m and c.budget == b for c in cells)}
        beyond = all(worst < v for v in rival_best.values())
        outcome = "wins" if all(beats) and beyond else "loses" if all(beaten) else "undecided"
        out.append({"budget": b, "outcome": outcome, "seeds": seeds, "beyond_spread": beyond,
                    "spread": {"selector_worst": worst, "baselines_best": rival_best}})
    return out


def seed_pattern(outcome: Mapping[str, Any]) -> str:
    """What an outcome's seeds say, in words: which seeds tie the best baseline's exact perplexity, which are
    beaten, which beat every baseline, which stay within the intervals (an "undecided" can be any mix)."""
    seeds = outcome["seeds"]
    tie = [s["seed"] for s in seeds if not s["beaten"] and not s["beats_all"] and s["vs_best"]
           and s["vs_best"]["ratio"] == 1.0]
    groups = [("beats every baseline", [s["seed"] for s in seeds if s["beats_all"]]),
              ("beaten", [s["seed"] for s in seeds if s["beaten"]]),
              ("same perplexity as the best baseline", tie),
              ("within the intervals", [s["seed"] for s in seeds if not s["beaten"] and not s["beats_all"]
                                        and s["seed"] not in tie])]
    parts = [f"{what} at seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))}" for what, ss in groups if ss]
    return "; ".join(parts) or "–"


def win_rate(outcomes: Sequence[Mapping[str, Any]], level: float = LEVEL) -> dict[str, Any]:
    """Wins over settings with a Wilson interval: ``{"wins", "losses", "undecided", "settings", "rate", "low", "high"}``.

    ``rate``, ``low`` and ``high`` are ``None`` without settings.
    """
    n = len(outcomes)
    wins = sum(1 for o in outcomes if o["outcome"] == "wins")
    losses = sum(1 for o in outcomes if o["outcome"] == "loses")
    low, high = wilson_interval(wins, n, level) if n else (None, None)
    return {"wins": wins, "losses": losses, "undecided": n - wins - losses, "settings": n,
            "rate": wins / n if n else None, "low": low, "high": high}


def _ci(k: Mapping[str, Any] | None) -> str:
    return "–" if not k else f"{fmt_times(k['ratio'])}× [{fmt_times(k['low'])}, {fmt_times(k['high'])}]"


def _ppl(v: float) -> str:
    return f"{v:,.1f}" if v < 1e5 else f"{v:.2e}"


def _interval_note() -> str:
    return interval_method("screening windows")


def ablation_markdown(rows: Sequence[Mapping[str, Any]], descriptions: Mapping[str, str] | None = None) -> str:
    """Markdown: the ablation table of :func:`ablation_rows`, then which variant recovers most."""
    if not rows:
        return "_No ablation in this run._\n"
    descriptions = descriptions or {}
    lines = ["| variant | budget | geometric mean perplexity | × LoRP [95 % CI] | × best baseline [95 % CI] | "
             "gap recovered | pruned blocks |", "|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        rec = "–" if row["recovered"] is None else f"{100 * row['recovered']:.0f} %"
        same = " (LoRP's)" if row["same_as_lorp"] else ""
        lines.append(f"| {row['method']} | {row['budget']} | {_ppl(row['mean_perplexity'])} | {_ci(row['vs_lorp'])} | "
                     f"{_ci(row['vs_best'])} ({row['best_baseline']}) | {rec} | "
                     f"{' '.join(map(str, row['pruned']))}{same} |")
    lines += ["", (f"Geometric mean perplexity over the evaluation corpora, first seed. Ratios: the variant's geometric mean perplexity over "
                   f"LoRP's and over the best baseline's at that budget, {_interval_note()}. Gap recovered: "
                   "(log p_LoRP − log p_variant) / (log p_LoRP − log p_best); 100 % closes LoRP's gap to the best "
                   "baseline, above 100 % beats it, below 0 is worse than LoRP. \"Recovers most\" pools the budgets where LoRP "
                   "trails: the sum of what a variant recovers over the sum of the gaps.")]
    used = list(dict.fromkeys(r["method"] for r in rows))
    if any(m in descriptions for m in used):
        lines += ["", "What each variant changes:", ""] + [f"- `{m}`: {descriptions[m]}" for m in used
                                                           if m in descriptions]
    top = recovers_most(rows)
    if top and top["pooled_recovered"] > 0:
        lines += ["", (f"**Recovers most: `{top['method']}`**, {100 * top['pooled_recovered']:.0f} % of LoRP's "
                       f"log-perplexity gap to the best baseline, pooled over the {top['budgets']} budget(s) where LoRP trails; "
                       f"better than LoRP beyond its interval at {top['wins_vs_lorp']} of them.")]
    elif top:
        lines += ["", (f"**No ablation recovers any of LoRP's gap**; the least harmful is `{top['method']}` "
                       f"({100 * top['pooled_recovered']:.0f} % over {top['budgets']} budget(s)).")]
    else:
        lines += ["", "No share of a gap to recover: LoRP is not worse than the best baseline at any budget here "
                      "(or the intervals are unavailable)."]
    return "\n".join(lines) + "\n"


def selector_markdown(selector: str, outcomes: Sequence[Mapping[str, Any]], description: str = "") -> str:
    """Markdown: the selector against the best baseline per budget and seed, the outcomes and the win rate."""
    if not outcomes:
        return f"_No {selector} cells in this run._\n"
    lines = [f"**{selector}**" + (f": {description}" if description else ""), "",
             "| budget | seed | geometric mean perplexity | best baseline (its perplexity) | × best [95 % CI] | "
             "against the baselines at this seed | pruned blocks |", "|---:|---:|---:|---|---:|---|---|"]
    for o in outcomes:
        for s in o["seeds"]:
            word = "beats all" if s["beats_all"] else "beaten" if s["beaten"] else "undecided"
            lines.append(f"| {o['budget']} | {s['seed']} | {_ppl(s['mean_perplexity'])} | {s['best_baseline']} "
                         f"({_ppl(s['best_perplexity'])}) | {_ci(s['vs_best'])} | {word} | "
                         f"{' '.join(map(str, s['pruned']))} |")
    lines += ["", "| budget | outcome | selector's worst seed | best baseline's best seed | beyond the seed spread | "
                  "what the seeds say |", "|---:|---|---:|---:|---|---|"]
    for o in outcomes:
        base = min(o["spread"]["baselines_best"].items(), key=lambda kv: kv[1]) if o["spread"]["baselines_best"] \
            else ("–", float("nan"))
        lines.append(f"| {o['budget']} | **{o['outcome']}** | {_ppl(o['spread']['selector_worst'])} | "
                     f"{_ppl(base[1])} ({base[0]}) | {'yes' if o['beyond_spread'] else 'no'} | {seed_pattern(o)} |")
    w = win_rate(outcomes)
    lines += ["", (f"Wins in {w['wins']} of {w['settings']} budget(s) (95 % Wilson interval "
                   f"{100 * w['low']:.0f}–{100 * w['high']:.0f} %), loses in {w['losses']}, undecided in "
                   f"{w['undecided']}. **Win**: at every seed, the interval of the selector's geometric mean perplexity over "
                   f"each baseline's ({_interval_note()}) lies wholly below 1, and the selector's worst seed is "
                   "below every baseline's best seed. **Loss**: at every seed some baseline's interval lies wholly "
                   "above 1. Otherwise **undecided**. A baseline run at the first seed only is compared at every "
                   "seed with that run.")]
    if any(s["vs_best"] is None for o in outcomes for s in o["seeds"]):
        lines += ["", "Some comparisons lack per-window NLL (intervals unavailable); they count as undecided."]
    return "\n".join(lines) + "\n"


def ablation_record(results: StudyResult, ablations: Sequence[str], selectors: Sequence[str],
                    baselines: Sequence[str], allocation: str = "lorp") -> dict[str, Any]:
    """``ablation.json`` (``"schema": "lorp.ablation"``): the model, its ablation rows and what recovers most,
    and per selector its outcomes and win rate. The summary notebook reads it."""
    r = results
    rows = ablation_rows(r, ablations, baselines, allocation)
    sel = {s: selector_outcomes(r, s, baselines) for s in selectors}
    return {"schema": ABLATION_SCHEMA, "version": 1, "model": r.model.get("name"), "baselines": list(baselines),
            "ablations": list(ablations), "rows": rows, "recovers_most": recovers_most(rows),
            "selectors": {s: {"outcomes": o, "win_rate": win_rate(o)} for s, o in sel.items()},
            "seeds": sorted({c.seed for c in r.all_cells}), "computed_at_commit": r.computed_at_commit}


def summary_markdown(records: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown across models from their ``ablation.json``: the ablation that recovers most per model and
    each selector's win rate per model and over all (model, budget) settings, with Wilson intervals."""
    if not records:
        return "_No ablation reports found (run `lorp study`, which runs notebooks/ablation.ipynb per model)._\n"
    lines = [("Per model, the LoRP ablation that recovers the largest share of LoRP's log-perplexity gap to the best "
              "baseline (pooled over the budgets where LoRP trails; each model's ablation.md has every variant), "
              "then how often our selector beats every baseline (each model's selector.md has every seed)."), "","| model | ablation that recovers most | gap recovered (pooled over budgets) | budgets better than LoRP |",
             "|---|---|---:|---:|"]
    for name, rec in records.items():
        top = rec.get("recovers_most")
        lines.append(f"| {name} | " + (f"`{top['method']}` | {100 * top['pooled_recovered']:.0f} % | "
                                      f"{top['wins_vs_lorp']} of {top['budgets']} |" if top else "– | – | – |"))
    selectors = list(dict.fromkeys(s for rec in records.values() for s in rec.get("selectors", {})))
    for s in selectors:
        every = [o for rec in records.values() for o in rec.get("selectors", {}).get(s, {}).get("outcomes", [])]
        if not every:
            lines += ["", f"**{s}**: no outcomes in these reports."]
            continue
        lines += ["", f"**{s}** against every baseline, counting a win only beyond the paired intervals at every "
                      "seed and beyond the seed spread:", "",
                  "| model | wins | losses | undecided | win rate [95 % Wilson] |", "|---|---:|---:|---:|---:|"]
        for name, rec in records.items():
            o = rec.get("selectors", {}).get(s, {}).get("outcomes", [])
            if o:
                w = win_rate(o)
                lines.append(f"| {name} | {w['wins']} | {w['losses']} | {w['undecided']} | {100 * w['rate']:.0f} % "
                             f"[{100 * w['low']:.0f}, {100 * w['high']:.0f}] |")
        if every:
            w = win_rate(every)
            lines.append(f"| **all** | **{w['wins']}** | {w['losses']} | {w['undecided']} | **{100 * w['rate']:.0f} %** "
                         f"[{100 * w['low']:.0f}, {100 * w['high']:.0f}] |")
            goal = "meets" if w["rate"] >= 0.8 else "misses"
            lines += ["", f"Goal: wins in at least 80 % of (model, budget) settings; {s} {goal} it "
                          f"({w['wins']} of {w['settings']}). The Wilson interval treats the settings as independent "
                          "trials; budgets of one model share the model and overlap in the blocks they remove, so it "
                          "is narrower than the evidence warrants."]
    return "\n".join(lines) + "\n"


def time_markdown(records: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: seconds of each model's ablation notebook (``ablation.json``'s ``seconds``): the ablations' and
    the selectors' selection and perplexity when computed (one row each where the record splits them), the
    larger calibration pass when computed, and the wall time of the notebook run that wrote the record."""
    rows = {n: r.get("seconds") or {} for n, r in records.items()}
    if not rows:
        return ""
    names_ = list(rows)
    split = any("selectors_selection" in r for r in rows.values())
    stages = ([("selection: ablations", "ablations_selection"),
               ("selection: selectors (calibration scoring)", "selectors_selection"),
               ("perplexity: ablations' removed sets", "ablations_perplexity"),
               ("perplexity: selectors' removed sets", "selectors_perplexity")] if split else
              [("selection (ablations and selectors)", "selection"), ("perplexity (their removed sets)", "perplexity")])
    stages += [("larger calibration pass and picks", "more_data"),
               ("wall time of the run that wrote this report", "notebook")]
    lines = ["| ablation notebook | " + " | ".join(names_) + " | total |", "|---|" + "---:|" * (len(names_) + 1)]
    for label, key in stages:
        vals = [float(rows[n].get(key) or 0.0) for n in names_]
        lines.append(f"| {label} | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {sum(vals):.0f} |")
    return "\n".join(lines) + "\n"


def load_ablations(root: str | Path, names_: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{folder: ablation.json}`` for each model folder under ``root`` in ``names_`` that has one (others skipped)."""
    out = {}
    for name in names_:
        path = Path(root) / name / "ablation.json"
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("schema") == ABLATION_SCHEMA:
                out[name] = data
    return out


__all__ = ["ABLATION_SCHEMA", "load_ablations", "ablation_budgets", "ablation_config", "ablation_markdown", "ablation_record", "ablation_rows", "names",
           "recovered_share", "recovers_most", "seed_pattern", "selector_markdown", "selector_outcomes", "summary_markdown", "time_markdown",
           "win_rate"]
