"""Where the default study's time goes, before and after: seconds per stage from two sets of study reports.

    python -m benchmarks.study_time --before 2398c53              # committed reports at a revision vs reports/
    python -m benchmarks.study_time --before old/reports --after reports
    python -m benchmarks.study_time --project /tmp/smollm2-run --reference HEAD   # three-model projection

Reads each model's ``results.json`` (from a folder, or from ``git show REV:reports/...``)
and tabulates :func:`lorp.study.costs.stage_seconds` summed over models, each model's
wall time, and SLEB's selection time as a ratio to the same model's calibration
pass (32 x 256 tokens in the default preset). Prints Markdown; ``--out`` also
writes it. Nothing is run: the numbers are what the reports recorded.

``--project`` projects the full study from the models measured in a run's reports folder (one or
more): each stage's measured seconds times that stage's ratio (all models / the measured ones) in a
reference study of every model (the committed reports). Stages the reference did not have borrow the ratio of the stage that does the
same work (:data:`PROXY`); untimed notebook overhead scales with the number of models.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click

from lorp.paths import REPORTS_DIR
from lorp.run.study_records import StudyResult
from lorp.study.costs import STAGES, stage_seconds

MODELS = ("smollm2-135m", "gemma3-270m", "qwen2.5-0.5b")


def load(where: str, models=MODELS) -> dict[str, StudyResult]:
    """``{model: StudyResult}`` from a reports folder or a git revision's ``reports/``; missing models are skipped."""
    out = {}
    for m in models:
        if Path(where).is_dir():
            path = Path(where) / m / "results.json"
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
        else:
            res = subprocess.run(["git", "show", f"{where}:reports/{m}/results.json"], capture_output=True, text=True)
            if res.returncode:
                continue
            data = json.loads(res.stdout)
        out[m] = StudyResult.from_json(data)
    return out


#: A stage the reference study lacks -> the reference stage doing the same kind of work, whose
#: all-models / one-model ratio it borrows (confirmation and the random floor are perplexity over
#: pruned sets; SLEB's check is SLEB's search; the corpus axis is calibration passes).
PROXY = {"confirmation windows": "perplexity (pruned)", "random floor": "perplexity (pruned)",
         "SLEB at a second token count": "SLEB selection", "calibration-corpus axis": "calibration pass",
         "perplexity (dense)": "perplexity (pruned)", "healing grid": "calibration pass"}
#: The ablation notebook's timed parts (``ablation.json`` ``seconds``) and what their ratio comes from.
ABLATION_PARTS = {"selectors' calibration scoring": ("selectors_selection",),
                  "ablations' and selectors' perplexity": ("ablations_perplexity", "selectors_perplexity"),
                  "larger calibration pass and picks": ("more_data",)}


def _ablation_seconds(where: str, model: str) -> dict[str, float] | None:
    path = Path(where) / model / "ablation.json"
    if Path(where).is_dir():
        text = path.read_text() if path.is_file() else None
    else:
        res = subprocess.run(["git", "show", f"{where}:reports/{model}/ablation.json"], capture_output=True, text=True)
        text = None if res.returncode else res.stdout
    return {k: float(v or 0.0) for k, v in json.loads(text)["seconds"].items()} if text else None


def projection(measured: str, reference: str, model: str = "smollm2-135m") -> tuple[str, float]:
    """Project the full study's wall seconds from the runs in ``measured`` and the per-stage model ratios of
    ``reference`` (a reports folder or git revision holding every model of :data:`MODELS`).

    Every model of :data:`MODELS` found in ``measured`` counts as measured (``model`` must be one of them);
    each other model's stage is the measured models' seconds times that model's share of the reference's
    seconds over the measured models' (with one measured model: its seconds times all models / it). Returns
    ``(markdown, projected seconds)``. Perplexity over pruned and dense sets share one ratio (the reference's
    dense and pruned seconds summed), since both are forward passes over the same windows.
    Raises ValueError when ``measured`` lacks ``model`` or ``reference`` lacks a measured model or has no other.
    """
    runs = load(measured)
    ref = load(reference)
    if model not in runs or not set(runs) <= set(ref) or len(ref) < 2:
        raise ValueError(f"need {model}'s results.json in {measured} and every model's in {reference}")
    names, n = list(runs), len(ref)
    st = {m: stage_seconds(r) for m, r in runs.items()}
    rs = {m: stage_seconds(r) for m, r in ref.items()}

    def ratio(stage: str) -> float:
        keys = ("perplexity (pruned)", "perplexity (dense)") if PROXY.get(stage, stage) == "perplexity (pruned)" \
            else (PROXY.get(stage, stage),)
        mine = sum(rs[m][k] for m in names for k in keys)
        return sum(v[k] for v in rs.values() for k in keys) / mine if mine > 0 else n / len(names)

    head = " + ".join(names)
    lines = [f"| stage | {head} (s) | × ratio | projected, {n} models (s) |", "|---|---:|---:|---:|"]
    total = 0.0
    for stage in STAGES:
        x = sum(st[m][stage] for m in names)
        if not x:
            continue
        r = n / len(names) if stage.startswith("other") else ratio(stage)
        total += x * r
        lines.append(f"| {stage} | {x:.0f} | {r:.2f} | {x * r:.0f} |")
    mine = {m: _ablation_seconds(measured, m) for m in names}
    theirs = {m: _ablation_seconds(reference, m) for m in ref}
    if all(mine.values()):
        timed = 0.0
        for name, keys in ABLATION_PARTS.items():
            x = sum(mine[m].get(k, 0.0) for m in names for k in keys)
            one = sum((theirs[m] or {}).get(k, 0.0) for m in names for k in keys)
            r = (sum(sum((v or {}).get(k, 0.0) for k in keys) for v in theirs.values()) / one if one > 0
                 else n / len(names))
            timed += x
            total += x * r
            lines.append(f"| ablation notebook: {name} | {x:.0f} | {r:.2f} | {x * r:.0f} |")
        rest = max(sum(mine[m].get("notebook", 0.0) for m in names) - timed, 0.0)
        total += rest * n / len(names)
        lines.append(f"| ablation notebook: the rest (confirmation of our selector, figures, start-up) | {rest:.0f} | "
                     f"{n / len(names):.2f} | {rest * n / len(names):.0f} |")
    lines.append(f"| **projected study** | | | **{total:.0f}** ({total / 60:.0f} min) |")
    return "\n".join(lines) + "\n", total


def sleb_ratio(stages: dict[str, float]) -> float | None:
    """SLEB's selection seconds / the calibration pass seconds of one model's :func:`stage_seconds` (``None``
    without SLEB)."""
    s = stages
    return s["SLEB selection"] / s["calibration pass"] if s["SLEB selection"] and s["calibration pass"] else None


def table(before: dict[str, StudyResult], after: dict[str, StudyResult]) -> str:
    b = {m: stage_seconds(r) for m, r in before.items()}
    a = {m: stage_seconds(r) for m, r in after.items()}
    lines = ["| stage | before (s) | after (s) | after / before |", "|---|---:|---:|---:|"]
    for stage in STAGES:
        x, y = sum(v[stage] for v in b.values()), sum(v[stage] for v in a.values())
        lines.append(f"| {stage} | {x:.0f} | {y:.0f} | {y / x:.2f} |" if x else f"| {stage} | {x:.0f} | {y:.0f} | – |")
    wb = sum(float(r.wall_time_s or 0) for r in before.values())
    wa = sum(float(r.wall_time_s or 0) for r in after.values())
    lines.append(f"| **wall time, all models** | **{wb:.0f}** ({wb / 60:.1f} min) | **{wa:.0f}** ({wa / 60:.1f} min) | "
                 f"**{wa / wb:.2f}** |")
    lines += ["", "| model | wall before (s) | wall after (s) | SLEB / calibration pass, before | after |",
              "|---|---:|---:|---:|---:|"]
    for m in dict.fromkeys([*before, *after]):
        rb, ra = before.get(m), after.get(m)
        fmt = (lambda v: f"{v:.1f}" if v is not None else "not run")
        lines.append(f"| {m} | {rb.wall_time_s if rb else 0:.0f} | {ra.wall_time_s if ra else 0:.0f} | "
                     f"{fmt(sleb_ratio(b[m])) if rb else '–'} | {fmt(sleb_ratio(a[m])) if ra else '–'} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--before", default="", help="reports folder or git revision of the 'before' study")
@click.option("--after", default=str(REPORTS_DIR), show_default=True, help="reports folder or git revision")
@click.option("--out", default="", help="also write the Markdown here")
@click.option("--project", default="", help="reports folder of one model's run to project the full study from")
@click.option("--reference", default="HEAD", show_default=True, help="reports folder or git revision of every model")
@click.option("--model", default="smollm2-135m", show_default=True, help="a model --project ran (every model of the folder is used)")
def main(before: str, after: str, out: str, project: str, reference: str, model: str) -> None:
    """Print the per-stage time table of two default studies, or a projection (--project)."""
    if not before and not project:
        raise click.UsageError("give --before (a before/after table) or --project (a projection)")
    md = projection(project, reference, model)[0] if project else table(load(before), load(after))
    print(md)
    if out:
        from lorp.store.atomic import write_text

        write_text(out, md)


if __name__ == "__main__":
    main()
