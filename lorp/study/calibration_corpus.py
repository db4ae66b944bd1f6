"""The calibration corpus as an axis: do the picks move more with the text they are calibrated on than with the rule?

Kim, Yun et al. (arXiv 2604.24938) argue that the calibration configuration matters more to
which blocks are pruned than the search algorithm does. The study varies the calibration draw
(seeds); this varies the corpus. For each bundled corpus's calibration part — ``lambada`` (book
passages), ``ptb`` (Penn Treebank train) and ``wiki-paragraphs`` (Wikipedia passages disjoint from
the evaluation pool) — one calibration pass of the study's size and first seed, then the picks of
every calibration-statistics method at every budget (:func:`lorp.study.picks.statistics_picks`;
selection only, no evaluation). Three Jaccard figures, each the mean over budgets:

* **corpus**: per method, the mean pairwise Jaccard of its removed sets across corpora;
* **seed**: per method, the same across the study's run seeds (:func:`lorp.study.sensitivity.stability`);
* **rule**: per corpus, the mean pairwise Jaccard across methods (how much the choice of method moves the picks).

The corpus moves the picks more than the rule does when the corpus Jaccard (averaged over methods)
is lower than the rule Jaccard (averaged over corpora).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..errors import ConfigError
from ..run.study_records import StudyResult
from ..run.sweep import SweepConfig
from .picks import statistics_picks
from .sensitivity import mean_pairwise_jaccard, stability

#: The bundled corpora whose calibration parts the axis draws from (each disjoint from every evaluation window).
CALIBRATION_CORPORA = ("lambada", "ptb", "wiki-paragraphs")


def add_calibration_corpora(results: StudyResult, config: SweepConfig, corpora: Sequence[str] = CALIBRATION_CORPORA,
                            registry: Any = None) -> dict[str, Any] | None:
    """Each calibration-statistics method's picks at every budget with the calibration drawn from each corpus.

    One calibration pass per corpus at the study's size and first run seed (cached on disk; the
    study's own corpus reuses its pass). Kept on :attr:`StudyResult.calibration_corpora`.

    Returns:
        ``{"corpora", "num_samples", "seq_len", "seed", "picks": {corpus: {method: {budget: blocks}}},
        "rls": {corpus: RLS}, "k": {corpus: K}, "seconds": {corpus: pass seconds when computed}, "skipped"}``;
        ``None`` (nothing set) when ``corpora`` is empty.
    Raises:
        ConfigError: a single corpus (nothing to compare); what a calibration pass raises.
    """
    corpora = list(dict.fromkeys(corpora))
    if not corpora:
        return None
    if len(corpora) < 2:
        raise ConfigError(f"the calibration-corpus axis needs at least two corpora, got {corpora}; e.g. "
                          f"calibration_corpora='{','.join(CALIBRATION_CORPORA)}' (empty: none)")
    base = config.run_base
    out: dict[str, Any] = {"corpora": corpora, "num_samples": base.num_samples, "seq_len": base.seq_len,
                           "seed": base.seed, "picks": {}, "rls": {}, "k": {}, "seconds": {}, "skipped": []}
    for corpus in corpora:
        got = statistics_picks(replace(base, calibration=corpus), config.methods, config.budgets, registry)
        out["picks"][corpus] = {m: {str(b): v for b, v in per.items()} for m, per in got["picks"].items()}
        out["rls"][corpus], out["k"][corpus], out["seconds"][corpus] = got["rls"], got["k"], got["seconds"]
        out["skipped"] = got["skipped"]
    results.calibration_corpora = out
    return out


def corpus_jaccard(record: Mapping[str, Any]) -> dict[str, float]:
    """Per method: the mean over budgets of the mean pairwise Jaccard of its removed sets across corpora."""
    picks = record["picks"]
    corpora = list(picks)
    methods = list(dict.fromkeys(m for c in corpora for m in picks[c]))
    out = {}
    for m in methods:
        budgets = list(dict.fromkeys(b for c in corpora for b in picks[c].get(m, {})))
        sets = [[picks[c][m][b] for c in corpora if b in picks[c].get(m, {})] for b in budgets]
        values = [mean_pairwise_jaccard(s) for s in sets if len(s) > 1]  # one corpus alone has no pair
        if values:
            out[m] = statistics.fmean(values)
    return out


def rule_jaccard(record: Mapping[str, Any]) -> dict[str, float]:
    """Per corpus: the mean over budgets of the mean pairwise Jaccard across methods (the rule's effect)."""
    out = {}
    for corpus, per in record["picks"].items():
        budgets = list(dict.fromkeys(b for m in per for b in per[m]))
        sets = [[per[m][b] for m in per if b in per[m]] for b in budgets]
        values = [mean_pairwise_jaccard(s) for s in sets if len(s) > 1]
        if values:
            out[corpus] = statistics.fmean(values)
    return out


def seed_jaccard(results: StudyResult) -> dict[str, float]:
    """Per method of the study run at several seeds (not one ``lorp study --add`` put beside it): the mean over
    budgets of its across-seed Jaccard."""
    added = set((results.added or {}).get("methods", []))
    out: dict[str, list[float]] = {}
    for row in stability(results):
        if row["method"] not in added:
            out.setdefault(row["method"], []).append(row["jaccard"])
    return {m: statistics.fmean(v) for m, v in out.items()}


def corpus_verdict(record: Mapping[str, Any]) -> tuple[float, float, bool] | None:
    """``(corpus Jaccard, rule Jaccard, corpus moves more)``: each averaged (over methods, over corpora); ``None``
    without two methods and two corpora."""
    corpus, rule = corpus_jaccard(record), rule_jaccard(record)
    if not corpus or not rule:
        return None
    c, r = statistics.fmean(corpus.values()), statistics.fmean(rule.values())
    return c, r, c < r


def calibration_corpus_markdown(results: StudyResult) -> str:
    """Markdown (``calibration_corpus.md``): each method's picks per corpus, the three Jaccard figures, the answer."""
    r = results
    rec = r.calibration_corpora
    if not rec:
        return "_No calibration-corpus axis in this run (set calibration_corpora)._\n"
    corpora = rec["corpora"]
    lines = [f"Calibration drawn from each corpus ({rec['num_samples']} × {rec['seq_len']} tokens, seed {rec['seed']}); "
             "each method chooses from that pass alone, no evaluation. RLS / K per corpus: "
             + ", ".join(f"{c} {rec['rls'][c]:.3f} / {rec['k'][c]}" for c in corpora if rec["rls"].get(c) is not None)
             + ".", "", "| method | budget | " + " | ".join(corpora) + " | Jaccard across corpora |",
             "|---|---:|" + "---|" * len(corpora) + "---:|"]
    methods = list(dict.fromkeys(m for c in corpora for m in rec["picks"][c]))
    for m in methods:
        budgets = list(dict.fromkeys(b for c in corpora for b in rec["picks"][c].get(m, {})))
        for b in budgets:
            sets = [rec["picks"][c].get(m, {}).get(b) for c in corpora]
            j = mean_pairwise_jaccard([s for s in sets if s is not None])
            lines.append(f"| {m} | {b} | " + " | ".join(" ".join(map(str, s)) if s is not None else "–" for s in sets)
                         + f" | {j:.2f} |")
    corpus, seeds, rule = corpus_jaccard(rec), seed_jaccard(r), rule_jaccard(rec)
    lines += ["", "| method | Jaccard across corpora | Jaccard across seeds |", "|---|---:|---:|"]
    lines += [f"| {m} | {corpus[m]:.2f} | " + (f"{seeds[m]:.2f}" if m in seeds else "–") + " |" for m in corpus]
    lines += ["", "Jaccard across methods (the rule's effect) per corpus: "
              + ", ".join(f"{c} {v:.2f}" for c, v in rule.items()) + "."]
    v = corpus_verdict(rec)
    if v:
        lines += ["", (f"**The corpus moves the picks {'more' if v[2] else 'less'} than the rule does**: mean Jaccard "
                       f"across corpora {v[0]:.2f} against {v[1]:.2f} across methods (lower: more movement).")]
    lines += ["", "Jaccard: |A ∩ B| / |A ∪ B|, the mean over pairs, then over budgets. Left out (they score candidates "
                  "with the model, or read no calibration statistic): " + (", ".join(rec.get("skipped") or []) or "none")
              + "."]
    return "\n".join(lines) + "\n"


def calibration_corpus_summary(studies: Mapping[str, StudyResult]) -> str:
    """Markdown across models: corpus, seed and rule Jaccard per model, and whether the corpus moves picks more."""
    lines = ["| model | Jaccard across corpora | across seeds | across methods (rule) | corpus moves picks more |",
             "|---|---:|---:|---:|---|"]
    got = 0
    for name, res in studies.items():
        r = res
        if not r.calibration_corpora:
            continue
        v = corpus_verdict(r.calibration_corpora)
        seeds = seed_jaccard(r)
        if v is None:
            continue
        got += 1
        lines.append(f"| {name} | {v[0]:.2f} | " + (f"{statistics.fmean(seeds.values()):.2f}" if seeds else "–")
                     + f" | {v[1]:.2f} | {'yes' if v[2] else 'no'} |")
    if not got:
        return "_No calibration-corpus axis in these reports._\n"
    return "\n".join(lines) + "\n\nMeans over methods (corpora, seeds) or corpora (rule), then budgets; each model's " \
                              "calibration_corpus.md has the picks.\n"


__all__ = ["CALIBRATION_CORPORA", "add_calibration_corpora", "calibration_corpus_markdown",
           "calibration_corpus_summary", "corpus_jaccard", "corpus_verdict", "rule_jaccard", "seed_jaccard"]
