"""Who wins, and the verdict: LoRP against its best baseline per model and budget, with paired intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..evaluate.accuracy_uncertainty import compare_accuracy
from ..evaluate.perplexity_uncertainty import compare_perplexity
from ..evaluate.uncertainty import holm_decisions
from ..run.study_records import StudyCell, StudyResult
from .confirmation import confirmed
from .healing import healed_answer
from .quality_floor import floor_losses
from .query import baseline_methods, best_baseline, best_baseline_by_accuracy
from .formatting import NO_WINDOW_NLL, fmt_number, interval_method, fmt_times, shown


def lorp_vs_best_baseline(cells: Sequence[StudyCell], allocation: str = "lorp") -> dict[str, Any] | None:
    """LoRP against the baseline with the lowest geometric mean perplexity among ``cells`` (one budget;
    :func:`lorp.study.query.best_baseline`).

    Returns ``{"baseline", "ratio", "low", "high", "decision", "p"}``: ratio of LoRP's geometric mean
    perplexity over the baseline's with its paired 95 % t-interval and the t-test's p-value
    (:func:`lorp.evaluate.perplexity_uncertainty.compare_perplexity`), and whether LoRP ``"wins"``,
    ``"loses"`` or is ``"undecided"``; ``None`` without a LoRP cell, a baseline, or
    per-window NLL.
    """
    lorp = next((c for c in cells if c.method == allocation), None)
    base = lorp and best_baseline(cells, lorp.budget, among=baseline_methods(cells, allocation))
    if lorp is None or base is None:
        return None
    k = compare_perplexity(base, lorp)
    return None if k is None else {"baseline": base.method, "ratio": k.ratio, "low": k.ratio_low,
                                   "high": k.ratio_high, "decision": k.decision, "p": k.p_value,
                                   "difference": k.difference}


def lorp_vs_best_baseline_accuracy(cells: Sequence[StudyCell], allocation: str = "lorp") -> dict[str, Any] | None:
    """LoRP against the baseline with the highest mean zero-shot accuracy among ``cells`` (one budget).

    Returns ``{"baseline", "difference", "low", "high", "decision", "mcnemar_p"}``:
    LoRP's mean accuracy minus the baseline's (fractions) with its paired 95 %
    interval over items (:func:`lorp.evaluate.accuracy_uncertainty.compare_accuracy`) and the exact
    McNemar p-value on the pooled items; ``None`` without per-item results.
    """
    lorp = next((c for c in cells if c.method == allocation and c.zero_shot_average is not None), None)
    base = lorp and best_baseline_by_accuracy(cells, lorp.budget, among=baseline_methods(cells, allocation))
    if lorp is None or base is None:
        return None
    k = (compare_accuracy(base, lorp) or {}).get("average")
    return None if k is None else {"baseline": base.method, "difference": k.difference, "low": k.low,
                                   "high": k.high, "decision": k.decision, "mcnemar_p": k.mcnemar.p_value}


def winners(results: StudyResult) -> list[dict[str, Any]]:
    """Per budget: the method with the lowest geometric mean perplexity and (where measured) the highest mean accuracy.

    Tied methods are all named, comma-separated, best first. With per-window NLL
    (per-item results for accuracy) "tied" means the paired 95 % interval against
    the best includes zero (:mod:`lorp.evaluate.uncertainty`): a method is beaten
    only when the interval excludes zero. Without them, only equal point estimates
    tie.

    Returns rows ``{"model", "budget", "perplexity_winner", "perplexity", "lorp_perplexity",
    "accuracy_winner", "accuracy", "lorp_accuracy", "perplexity_intervals", "accuracy_intervals",
    "lorp_vs_best_baseline", "lorp_vs_best_baseline_accuracy"}`` (accuracy fields ``None`` where not
    measured; ``*_intervals`` say whether ties were judged by intervals; the ``lorp_vs_*`` entries are
    :func:`lorp_vs_best_baseline` and :func:`lorp_vs_best_baseline_accuracy`, ``None`` where unavailable).
    """
    r = results
    out = []
    for b in sorted({c.budget for c in r.cells}):
        cells = sorted((c for c in r.cells if c.budget == b), key=lambda c: (c.mean_perplexity, c.method))  # as query
        ppl = cells[0]
        lorp = next((c for c in cells if c.method == "lorp"), None)
        acc_cells = sorted((c for c in cells if c.zero_shot_average is not None),
                           key=lambda c: (-c.zero_shot_average, c.method))
        acc = acc_cells[0] if acc_cells else None
        ppl_k = [compare_perplexity(ppl, c) for c in cells[1:]]
        ppl_iv = bool(ppl_k) and all(ppl_k)
        ppl_names = ", ".join([ppl.method] + [c.method for c, k in zip(cells[1:], ppl_k)
                                              if (k.decision != "loses" if ppl_iv else c.mean_perplexity
                                                  == ppl.mean_perplexity)])
        acc_k = [(compare_accuracy(acc, c) or {}).get("average") for c in acc_cells[1:]]
        acc_iv = bool(acc_k) and all(acc_k)
        acc_names = acc and ", ".join([acc.method] + [c.method for c, k in zip(acc_cells[1:], acc_k)
                                                      if (k.decision != "loses" if acc_iv else c.zero_shot_average
                                                          == acc.zero_shot_average)])
        out.append({"model": r.model["name"], "budget": b, "perplexity_winner": ppl_names,
                    "perplexity": ppl.mean_perplexity, "lorp_perplexity": lorp and lorp.mean_perplexity,
                    "accuracy_winner": acc_names, "accuracy": acc and acc.zero_shot_average,
                    "lorp_accuracy": lorp and lorp.zero_shot_average, "perplexity_intervals": ppl_iv,
                    "accuracy_intervals": acc_iv, "lorp_vs_best_baseline": lorp_vs_best_baseline(cells),
                    "lorp_vs_best_baseline_accuracy": lorp_vs_best_baseline_accuracy(cells)})
    return out


#: The baselines the paper compares LoRP against.
PAPER_BASELINES = ("shortgpt", "streamline")


def winners_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown of :func:`winners` rows across models.

    Where rows carry intervals, two columns give LoRP against the best baseline
    (perplexity ratio, accuracy difference, with 95 % intervals and the outcome) and
    a line counts the settings LoRP wins, loses and leaves undecided; rows without
    them (older results) give the point-estimate table with :data:`NO_WINDOW_NLL`.
    """
    intervals = any(w.get("lorp_vs_best_baseline") or w.get("lorp_vs_best_baseline_accuracy")
                    or w.get("perplexity_intervals") for w in rows)
    head = ("| model | budget | best on geometric mean perplexity | its perplexity | LoRP perplexity | best on mean accuracy "
            "| its accuracy | LoRP accuracy |")
    rule = "|---|---:|---|---:|---:|---|---:|---:|"
    if intervals:
        head += " LoRP ÷ best baseline, perplexity [95 % CI] | LoRP − best baseline, accuracy (points) [95 % CI] |"
        rule += "---|---|"
    lines = [head, rule]
    for w in rows:
        acc = "–" if w["accuracy"] is None else f"{100 * w['accuracy']:.1f} %"
        lacc = "–" if w["lorp_accuracy"] is None else f"{100 * w['lorp_accuracy']:.1f} %"
        line = (f"| {w['model']} | {w['budget']} | {w['perplexity_winner']} | {fmt_number(w['perplexity'])} | "
                f"{fmt_number(w['lorp_perplexity'])} | {w['accuracy_winner'] or '–'} | {acc} | {lacc} |")
        if intervals:
            v, a = w.get("lorp_vs_best_baseline"), w.get("lorp_vs_best_baseline_accuracy")
            line += (f" {fmt_times(v['ratio'])}× [{fmt_times(v['low'])}, {fmt_times(v['high'])}] vs {v['baseline']}: "
                     f"{v['decision']} |" if v else " – |")
            line += (f" {100 * a['difference']:+.1f} [{100 * a['low']:+.1f}, {100 * a['high']:+.1f}] vs "
                     f"{a['baseline']}: {shown(a['decision'])} |" if a else " – |")
        lines.append(line)
    if not intervals:
        return "\n".join(lines) + "\n\n" + NO_WINDOW_NLL + "\n"
    lines.append("")
    for what, key, p, better in (("geometric mean perplexity", "lorp_vs_best_baseline", "p", "lower"),
                                 ("mean accuracy", "lorp_vs_best_baseline_accuracy", "mcnemar_p", "higher")):
        got = [w[key] for w in rows if w.get(key)]
        if got:
            raw = [g["decision"] for g in got]
            held = holm_decisions([g[p] for g in got], [g["difference"] for g in got], better=better)
            lines.append(f"LoRP against the best baseline on {what}, Holm-corrected over these {len(got)} settings: "
                         f"wins in {held.count('wins')}, loses in {held.count('loses')}, undecided in "
                         f"{held.count('undecided')} (each interval alone: {raw.count('wins')} wins, "
                         f"{raw.count('loses')} losses).")
    lines.append(f"Best names every method, best first, whose interval against the best includes no difference "
                 f"(a perplexity ratio of 1, an accuracy difference of 0): "
                 f"{interval_method('screening windows (items for accuracy)')}.")
    return "\n".join(lines) + "\n"


def _outcome(decisions: Sequence[str]) -> str:
    """One setting from LoRP's comparisons with each baseline: wins all, loses any, else undecided."""
    return "wins" if all(d == "wins" for d in decisions) else "loses" if "loses" in decisions else "undecided"


def _holm_outcomes(outcomes: list[str | None], tests: Sequence[tuple[int, float, float]], better: str) -> None:
    """Fill the ``None`` entries of ``outcomes`` from their tests ``(position, p, difference)``, Holm-corrected
    together (:func:`lorp.evaluate.uncertainty.holm_decisions`), one outcome per position (:func:`_outcome`)."""
    decided = holm_decisions([t[1] for t in tests], [t[2] for t in tests], better=better)
    by_position: dict[int, list[str]] = {}
    for (position, _p, _d), decision in zip(tests, decided):
        by_position.setdefault(position, []).append(decision)
    for position, decisions in by_position.items():
        outcomes[position] = _outcome(decisions)


def _point(lorp: float, rival: float, lower_is_better: bool) -> str:
    if lorp == rival:
        return "undecided"
    return "wins" if (lorp < rival) == lower_is_better else "loses"


def _status(outcomes: Sequence[str]) -> str:
    """``holds`` when LoRP wins most settings, ``fails`` when it loses most, else ``undecided``."""
    if outcomes.count("wins") > len(outcomes) / 2:
        return "holds"
    return "fails" if outcomes.count("loses") > len(outcomes) / 2 else "undecided"


def _mixed(outcomes: Sequence[str]) -> str:
    """Where the majority rule leaves a claim undecided but some settings are decided, the counts in words
    (``"not shown in most settings; LoRP worse shown in 1 of 3, better in 0"``); else ``""``."""
    if _status(outcomes) != "undecided" or not {"wins", "loses"} & set(outcomes):
        return ""
    return (f"not shown in most settings; LoRP worse shown in {outcomes.count('loses')} of {len(outcomes)}, "
            f"better in {outcomes.count('wins')}")


def verdict_pairs_tested(studies: Mapping[str, StudyResult]) -> dict[str, Any]:
    """The verdict's counts: LoRP against the paper's baselines in every (model, budget) setting, Holm-corrected.

    Returns ``{"perplexity": [outcome per setting], "accuracy": [outcome per detail setting],
    "best": [whether LoRP beats every other method, per setting], "point": {criterion: settings compared on
    point estimates}, "tests": {criterion: [(setting, p, difference)]}}``; each outcome is ``"wins"``,
    ``"loses"`` or ``"undecided"`` (:func:`verdict` explains the rule).
    """
    studies = {name: r for name, r in studies.items()}
    ppl, acc, best, point = [], [], [], {"perplexity": 0, "accuracy": 0}
    tests: dict[str, list[tuple[int, float, float]]] = {"perplexity": [], "accuracy": []}
    for r in studies.values():
        for b in sorted({c.budget for c in r.cells}):
            cells = {c.method: c for c in r.cells if c.budget == b}
            lorp = cells.get("lorp")
            rivals = [cells[m] for m in PAPER_BASELINES if m in cells]
            if lorp is None or not rivals:
                continue
            ks = [compare_perplexity(c, lorp) for c in rivals]
            if all(ks):
                tests["perplexity"] += [(len(ppl), k.p_value, k.difference) for k in ks]
                ppl.append(None)  # decided below, after Holm's correction over every setting
            else:
                point["perplexity"] += 1
                ppl.append(_outcome([_point(lorp.mean_perplexity, c.mean_perplexity, True) for c in rivals]))
            others = [c for m, c in cells.items() if m != "lorp"]
            kb = [compare_perplexity(c, lorp) for c in others]
            best.append(all(k.decision == "wins" for k in kb) if kb and all(kb)
                        else lorp.mean_perplexity == min(c.mean_perplexity for c in cells.values()))
            if lorp.zero_shot_average is not None and all(c.zero_shot_average is not None for c in rivals):
                ka = [(compare_accuracy(c, lorp) or {}).get("average") for c in rivals]
                if all(ka):
                    tests["accuracy"] += [(len(acc), k.mcnemar.p_value, k.difference) for k in ka]
                    acc.append(None)
                else:
                    point["accuracy"] += 1
                    acc.append(_outcome([_point(lorp.zero_shot_average, c.zero_shot_average, False) for c in rivals]))
    _holm_outcomes(ppl, tests["perplexity"], "lower")
    _holm_outcomes(acc, tests["accuracy"], "higher")
    return {"perplexity": ppl, "accuracy": acc, "best": best, "point": point, "tests": tests}


#: How the one decision reads in the index's question and on the verdict page.
ANSWER = {"holds": "Yes", "fails": "No", "undecided": "Not shown"}


def perplexity_decision(studies: Mapping[str, StudyResult], tested: Mapping[str, Any] | None = None
                        ) -> dict[str, Any]:
    """The one perplexity decision every report states (the index, the verdict page, the reading).

    The held-out confirmation windows decide where the results have them: LoRP against the best baseline that the
    screening windows chose, per (model, budget), Holm-corrected per model over its budgets
    (:func:`lorp.study.confirmation.confirmed`). Results without a confirmation set fall back to the screening
    windows: LoRP against the paper's baselines, Holm-corrected over every setting (:func:`verdict_pairs_tested`).
    The status is ``holds`` when LoRP wins most settings, ``fails`` when it loses most, else ``undecided``
    (:data:`ANSWER` words it).

    ``tested``: :func:`verdict_pairs_tested` of ``studies`` where the caller has it already (else computed).

    Returns:
        ``{"source": "confirmation" | "screening", "outcomes": [per setting], "status", "answer", "held": [the
        confirmed rows, with their model under "model"]}``.
    """
    held = [{**o, "model": name} for name, r in studies.items() for o in confirmed(r)]
    if held:
        outcomes, source = [o["decision"] for o in held], "confirmation"
    else:
        outcomes, source = (tested or verdict_pairs_tested(studies))["perplexity"], "screening"
    status = _status(outcomes) if outcomes else "undecided"
    return {"source": source, "outcomes": outcomes, "status": status, "answer": ANSWER[status], "held": held}


def verdict(studies: Mapping[str, StudyResult]) -> str:
    """Plain statement of whether the paper's claim holds on these models, whichever way it falls.

    The claim tested: at the same budget, LoRP's pruned model has lower perplexity and
    higher zero-shot accuracy than the paper's baselines (ShortGPT, LLM-Streamline).
    Counted per (model, budget) on geometric mean perplexity, and per (model, detail budget)
    on mean accuracy.

    With per-window NLL (per-item results for accuracy) each (setting, baseline) pair is
    a test (paired t on the geometric mean perplexity; exact McNemar on the pooled
    items), and each family (perplexity, accuracy) is Holm-corrected across every model,
    budget and baseline (:func:`lorp.evaluate.uncertainty.holm_decisions`). LoRP wins a
    setting only when it wins against each baseline after the correction, loses it when
    it loses against either, and otherwise the setting is undecided. Each criterion holds when LoRP
    wins most settings, does not hold when it loses most, and is otherwise not shown either
    way; the two criteria (perplexity, accuracy) are stated apart, never merged into one word,
    since a loss on one says nothing about the other. The text is short bullets: perplexity,
    the held-out confirmation windows, accuracy, the floors (``last``, the random median;
    :func:`lorp.study.quality_floor.floor_losses`), the interval methods, samples and checkpoints. Settings without
    intervals are compared on point estimates (ties undecided) and counted as such.
    Results without any intervals (older runs) get the point-estimate verdict (ties
    count as not beaten) with :data:`NO_WINDOW_NLL`.
    """
    studies = {name: r for name, r in studies.items()}
    tested = verdict_pairs_tested(studies)
    ppl, acc, best, point, tests = (tested[k] for k in ("perplexity", "accuracy", "best", "point", "tests"))
    if not ppl:
        return "The studies hold no LoRP cells next to ShortGPT or LLM-Streamline cells; the claim cannot be tested.\n"
    if point["perplexity"] == len(ppl) and point["accuracy"] == len(acc):
        return _point_verdict(studies, ppl, acc, best)
    words = {"holds": "the paper's claim holds on these models", "fails": "the paper's claim does not hold on these models",
             "undecided": "not shown either way on these models and samples"}
    decided = perplexity_decision(studies, tested)
    where = (" (held-out confirmation windows)" if decided["source"] == "confirmation" else "")
    head = (f"**Perplexity{where}: {words[decided['status']]}. Zero-shot accuracy: "
            + (f"{_mixed(acc) or words[_status(acc)]}.**" if acc else "not measured.**"))
    lines = [head + " The claim: at the same budget, LoRP's pruned model has lower perplexity and higher zero-shot "
             "accuracy than ShortGPT's and LLM-Streamline's. Shown means a difference that survives Holm's correction "
             "over its family of tests (5 % family-wise); not shown is not the same as equal.", "",
             f"- **Perplexity on the screening windows** (geometric mean over corpora; they chose the rivals, so where "
             f"confirmation windows exist they do not decide; {len(tests['perplexity'])} paired t-tests): LoRP better than both baselines shown in {ppl.count('wins')} of {len(ppl)} (model, budget) "
             f"settings, worse than at least one shown in {ppl.count('loses')}, neither shown in "
             f"{ppl.count('undecided')}. It beats every other method compared in {sum(best)}."]
    held_out = [o["decision"] for r in studies.values() for o in confirmed(r)]
    if held_out:
        lines.insert(2, f"- **Held-out confirmation windows** (they decide the perplexity verdict: LoRP against the "
                     f"best baseline chosen on the screening windows; Holm per model over its budgets): worse shown in {held_out.count('loses')} of "
                     f"{len(held_out)} settings, better shown in {held_out.count('wins')}, neither shown in "
                     f"{held_out.count('undecided')} (each model's confirmation.md).")
    else:
        lines.append("- **Held-out confirmation windows**: none in these results (they predate them).")
    if acc:
        sizes = accuracy_sizes(studies)
        lines.append(f"- **Zero-shot accuracy** (mean over tasks at the detail budget, {sizes}; "
                     f"{len(tests['accuracy'])} exact McNemar tests): LoRP better than both shown in "
                     f"{acc.count('wins')} of {len(acc)} settings, worse shown in {acc.count('loses')}, neither shown "
                     f"in {acc.count('undecided')} (each model's zero_shot.md gives the smallest difference "
                     "detectable at its size).")
    else:
        lines.append("- **Zero-shot accuracy**: not measured.")
    healed = healed_answer(studies)
    if healed:
        lines.append(f"- {healed} Details: each model's healing.md.")
    floors = [f"{what} on {name} (budget{'s' if len(bs) > 1 else ''} {', '.join(map(str, bs))})"
              for name, r in studies.items() for what, bs in floor_losses(r).items() if bs]
    lines.append("- **Floors**: " + (f"LoRP loses even to {'; '.join(floors)} (each model's floors.md)." if floors
                                     else "LoRP loses to neither `last` nor the random median where they ran."))
    for what, n in point.items():
        if n:
            lines.append(f"- {n} setting(s) lacked per-{'window NLL' if what == 'perplexity' else 'item results'} "
                         f"and were compared on point {what} (equal values undecided).")
    lines.append(f"- **Intervals**: {interval_method('screening windows (items for accuracy)')}.")
    lines += _samples_and_models(studies)
    return "\n".join(lines) + "\n"


def accuracy_sizes(studies: Mapping[str, StudyResult]) -> str:
    """``"100 items per task"`` (or ``"20/100 …"``): the zero-shot items per task behind the accuracy verdict."""
    items = sorted({n for r in studies.values() for c in r.cells for n in (c.zero_shot_items or {}).values()})
    return f"{'/'.join(map(str, items))} items per task" if items else "items per task not recorded"


def _samples_and_models(studies: Mapping[str, StudyResult]) -> list[str]:
    """The verdict's last bullets: sample sizes, seeds, and the checkpoints exactly."""
    sizes = sorted({(r.config.get("num_samples"), r.config.get("seq_len"), r.config.get("eval_tokens"),
                     r.config.get("zero_shot_limit")) for r in studies.values()}, key=str)
    scored = sorted({e["tokens_scored"] for r in studies.values() for e in (r.evaluation or {}).values()})
    samples = "; ".join(f"{n} x {t} calibration tokens, {e or 'all'} evaluation tokens per corpus"
                        + (f" ({'/'.join(f'{s:,}' for s in scored)} scored)" if scored else "")
                        + (f", {z} zero-shot items per task" if z else "") for n, t, e, z in sizes)
    seeds = sorted({tuple(r.seeds) for r in studies.values() if len(r.seeds) > 1})
    runs = "; ".join(f"the counts above are for run seed {s[0]}, and seeds {', '.join(s[1:])} are in each model's "
                     "sensitivity.md and selector.md" for s in seeds)
    models = "; ".join(f"{name}: {r.model.get('checkpoint') or r.model.get('name')} "
                       f"({r.dense.parameters / 1e6:.0f}M parameters, RLS {r.rls:.2f})" for name, r in studies.items())
    return [f"- **Samples**: {samples}." + (f" Seeds: {runs}." if runs else ""),
            f"- **Checkpoints**: {models}. Small models on small samples: the paper's models have 7-14B parameters, "
            "so this tests whether the method transfers down in scale, not the paper's numbers."]


def _point_verdict(studies: Mapping[str, StudyResult], ppl: Sequence[str], acc: Sequence[str],
                   best: Sequence[bool]) -> str:
    """The verdict on point estimates alone (results without per-window NLL), as before intervals."""
    ppl_wins, ppl_total, acc_wins, acc_total = ppl.count("wins"), len(ppl), acc.count("wins"), len(acc)
    ppl_holds = ppl_wins > ppl_total / 2
    acc_holds = acc_total > 0 and acc_wins > acc_total / 2
    if ppl_holds and (acc_holds or not acc_total):
        head = "**The paper's claim holds on these models.**"
    elif not ppl_holds and not acc_holds:
        head = "**The paper's claim does not hold on these models.**"
    else:
        head = "**The paper's claim holds only in part on these models.**"
    text = (f"{head} LoRP beats both ShortGPT and LLM-Streamline on geometric mean perplexity in {ppl_wins} of {ppl_total} "
            f"(model, budget) settings and is the best of all methods compared in {sum(best)}")
    text += (f"; it beats both on mean zero-shot accuracy in {acc_wins} of {acc_total} settings." if acc_total
             else "; zero-shot accuracy was not measured.")
    text += " Ties do not count as wins.\n\n" + "\n".join(_samples_and_models(studies))
    return text + "\n\n" + NO_WINDOW_NLL + "\n"
