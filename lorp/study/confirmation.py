"""The verdict on held-out windows: which pairs are confirmed, scoring them, and the confirmation table.

At each budget the screening windows choose the best baseline (lowest geometric mean perplexity
among the baselines); LoRP, that baseline, our selectors and dense are then scored on the confirmation
windows (:func:`lorp.run.confirmation.confirm`), and each pair is tested there with a paired t-interval,
Holm-corrected over the budgets of one model (one family per comparison: LoRP against the best
baseline, each selector against the best baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluate.perplexity import Perplexity, geometric_mean_perplexity
from ..evaluate.perplexity_uncertainty import compare_per_corpus, compare_perplexity
from ..evaluate.uncertainty import holm, holm_decisions
from ..run.confirmation import confirm
from ..run.study_records import StudyResult
from ..run.sweep import SweepConfig
from .formatting import fmt_number, interval_method, fmt_ratio_ci, fmt_times
from .load import per_sample
from .query import baseline_methods, best_baseline


def verdict_pairs(results: StudyResult, allocation: str = "lorp", selectors: Sequence[str] = (),
                  baselines: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per budget (first seed): LoRP, the best baseline chosen on the screening windows, and each selector.

    Baselines are ``baselines`` (default: every method other than ``allocation`` and ``selectors``). Returns rows
    ``{"method", "budget", "role", "pruned"}`` with ``role`` in ``"lorp"``, ``"best baseline"``, ``"selector"``.
    """
    r = results
    rows = []
    for b in sorted({c.budget for c in r.cells}):
        cells = [c for c in r.cells if c.budget == b]
        among = {m for m in baseline_methods(cells, allocation, selectors) if baselines is None or m in baselines}
        chosen = [(c, "lorp") for c in cells if c.method == allocation]
        best = best_baseline(cells, b, among=among)
        if best is not None:
            chosen.append((best, "best baseline"))
        chosen += [(c, "selector") for c in cells if c.method in selectors]
        rows += [{"method": c.method, "budget": b, "role": role, "pruned": list(c.pruned)} for c, role in chosen]
    return rows


def confirm_verdict_pairs(results: StudyResult, config: SweepConfig, folder: str | Path, count: int,
                          registry: Any = None, executor: Any = None, allocation: str = "lorp",
                          selectors: Sequence[str] = (), baselines: Sequence[str] | None = None) -> dict[str, Any]:
    """Score dense and the :func:`verdict_pairs` on ``count`` confirmation windows per corpus; the record
    :attr:`lorp.run.study_records.StudyResult.confirmation` holds (also set on ``results``).

    Raises:
        ConfigError: as :func:`lorp.run.confirmation.confirm`.
    """
    pairs = verdict_pairs(results, allocation, selectors, baselines)
    scored = confirm(config, folder, [p["pruned"] for p in pairs], count, registry, executor)
    record = {"windows": count, "seq_len": config.base.eval_seq_len, "dense": confirmation_row(scored[()]),
              "cells": [{**p, **confirmation_row(scored[tuple(sorted(p["pruned"]))])} for p in pairs]}
    results.confirmation = record
    return record


def confirmation_row(ppl: Mapping[str, Perplexity]) -> dict[str, Any]:
    """One model's scores on the confirmation windows as the record keeps them: perplexity per corpus, their
    geometric mean, the seconds, and per-window NLL and tokens (for the paired intervals)."""
    return {"perplexity": {c: v.perplexity for c, v in ppl.items()},
            "mean_perplexity": geometric_mean_perplexity(ppl), "seconds": sum(v.seconds for v in ppl.values()),
            **{k: v for k, v in per_sample(ppl, None).items() if k != "zero_shot_correct"}}


class ConfirmationRow:
    """A confirmation entry (:func:`confirmation_row`) seen as a study row (what the interval helpers read)."""

    def __init__(self, entry: dict[str, Any]):
        self.perplexity, self.window_nll = entry["perplexity"], entry.get("window_nll")
        self.window_tokens, self.mean_perplexity = entry.get("window_tokens"), entry["mean_perplexity"]


def confirmed(results: StudyResult, role: str = "lorp") -> list[dict[str, Any]]:
    """Per budget: the ``role`` method (``"lorp"`` or ``"selector"``) against the best baseline on the confirmation
    windows: ``{"budget", "method", "baseline", "comparison", "per_corpus", "p_holm", "decision"}``; the
    decisions and ``p_holm`` are Holm-corrected over the budgets (and selectors) of this model. Empty without a
    confirmation set."""
    r = results
    conf = r.confirmation or {}
    out = []
    for b in sorted({e["budget"] for e in conf.get("cells", [])}):
        at = [e for e in conf["cells"] if e["budget"] == b]
        best = next((e for e in at if e["role"] == "best baseline"), None)
        for e in (e for e in at if e["role"] == role):
            k = None if best is None else compare_perplexity(ConfirmationRow(best), ConfirmationRow(e))
            if k is not None:
                out.append({"budget": b, "method": e["method"], "baseline": best["method"], "comparison": k,
                            "per_corpus": compare_per_corpus(ConfirmationRow(best), ConfirmationRow(e)),
                            "vs_dense": compare_perplexity(ConfirmationRow(conf["dense"]), ConfirmationRow(e)),
                            "baseline_vs_dense": compare_perplexity(ConfirmationRow(conf["dense"]), ConfirmationRow(best))})
    held = holm_decisions([o["comparison"].p_value for o in out], [o["comparison"].difference for o in out],
                          better="lower")
    for o, adjusted, decision in zip(out, holm([o["comparison"].p_value for o in out]), held):
        o["p_holm"], o["decision"] = adjusted, decision
    return out


def confirmation_markdown(results: StudyResult) -> str:
    """Markdown: the verdict pairs on the confirmation windows, per corpus and on the geometric mean, with Holm."""
    r = results
    if not r.confirmation:
        return ("_No confirmation set: these results were computed before held-out confirmation windows existed "
                "(or with none asked for); the verdict rests on the screening windows that chose the best "
                "baseline._\n")
    corpora = list(r.confirmation["dense"]["perplexity"])
    lines = [f"On {r.confirmation['windows']} held-out confirmation windows of {r.confirmation['seq_len']} tokens per "
             "corpus, disjoint from the screening windows that chose the best baseline at each budget.", ""]
    for role, title in (("lorp", "LoRP"), ("selector", "Our selector")):
        rows = confirmed(r, role)
        if not rows:
            continue
        lines += [f"### {title} ÷ best baseline", "",
                  "| budget | method | best baseline | " + " | ".join(corpora) + " | geometric mean | Holm p | outcome "
                  "| ÷ dense | baseline ÷ dense |",
                  "|---:|---|---|" + "---:|" * (len(corpora) + 2) + "---|---:|---:|"]
        for o in rows:
            lines.append(f"| {o['budget']} | {o['method']} | {o['baseline']} | "
                         + " | ".join(fmt_ratio_ci(o["per_corpus"][c]) for c in corpora)
                         + f" | {fmt_ratio_ci(o['comparison'])} | {o['p_holm']:.2g} | {o['decision']} | "
                         f"{fmt_times(o['vs_dense'].ratio)} | {fmt_times(o['baseline_vs_dense'].ratio)} |")
        lines += ["", f"{title} against the best baseline, Holm-corrected over these {len(rows)} tests: wins in "
                      f"{sum(o['decision'] == 'wins' for o in rows)}, loses in {sum(o['decision'] == 'loses' for o in rows)}, "
                      f"undecided in {sum(o['decision'] == 'undecided' for o in rows)}.", ""]
    dense = r.confirmation["dense"]
    lines += ["Dense on the confirmation windows: " + ", ".join(f"{c} {fmt_number(dense['perplexity'][c])}" for c in corpora)
              + f"; geometric mean {fmt_number(dense['mean_perplexity'])}. Ratios [95 % CI]: "
              f"{interval_method('confirmation windows')}; outcome after Holm's correction (family-wise error 5 %)."]
    return "\n".join(lines) + "\n"


__all__ = ["ConfirmationRow", "confirm_verdict_pairs", "confirmation_row", "confirmation_markdown", "confirmed", "verdict_pairs"]
