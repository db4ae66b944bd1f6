"""Where the default study's time goes, before and after: seconds per stage from two sets of study reports.

    python -m benchmarks.study_time --before 2398c53              # committed reports at a revision vs reports/
    python -m benchmarks.study_time --before old/reports --after reports

Reads each model's ``results.json`` (from a folder, or from ``git show REV:reports/...``)
and tabulates :func:`lorp.study.costs.stage_seconds` summed over models, each model's
wall time, and SLEB's selection time as a ratio to the same model's calibration
pass (32 x 256 tokens in the default preset). Prints Markdown; ``--out`` also
writes it. Nothing is run: the numbers are what the reports recorded.
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
@click.option("--before", required=True, help="reports folder or git revision of the 'before' study")
@click.option("--after", default=str(REPORTS_DIR), show_default=True, help="reports folder or git revision")
@click.option("--out", default="", help="also write the Markdown here")
def main(before: str, after: str, out: str) -> None:
    """Print the per-stage time table of two default studies."""
    md = table(load(before), load(after))
    print(md)
    if out:
        from lorp.store.atomic import write_text

        write_text(out, md)


if __name__ == "__main__":
    main()
