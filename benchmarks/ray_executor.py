"""The Ray executor with N workers vs the serial executor on one sweep: same cells, same table.

Prints (and writes as JSON with ``--json``) the wall time of each, their ratio, the
evaluations the removed-set cache saved, and the start-up cost of each path (from
the call to the first stored cell). The calibration pass is cached by a warm-up
sweep first, so neither path pays for it.

    python -m benchmarks.ray_executor --workers 2
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import click

from lorp.run.executors import RayExecutor
from lorp.run.pipeline import PruneConfig
from lorp.run.sweep import SweepConfig, execute_sweep


def run(model: str, workers: int, root: Path) -> dict:
    """Serial then Ray on the same sweep under ``root``; returns the measurements."""
    base = PruneConfig(model=model, num_samples=8, seq_len=128, eval_tokens=1024, eval_seq_len=256,
                       progress=False, save_model=False)
    config = SweepConfig(base=base, methods=("lorp", "shortgpt", "streamline", "angular", "last", "random"),
                         budgets=(2, 4, 6, 8))
    execute_sweep(SweepConfig(base=base, methods=config.methods, budgets=(2,)), root / "warm")
    out: dict = {"model": model, "workers": workers, "cells": len(config.methods) * len(config.budgets)}
    for name, executor in (("serial", None), ("ray", RayExecutor(num_workers=workers, num_cpus=1))):
        t0 = time.time()
        result = execute_sweep(config, root / name, executor=executor)
        wall = time.time() - t0
        first = min(p.stat().st_mtime for p in (root / name / "cells").glob("*.json")) - t0
        out[name] = {"wall_s": wall, "call_to_first_cell_s": first,
                     "evaluations_computed": result.stats.evaluations_computed,
                     "evaluations_saved": result.stats.evaluations_reused}
        print(name, out[name], flush=True)
    out["same_table"] = (root / "serial/table.csv").read_text() == (root / "ray/table.csv").read_text()
    out["serial_over_ray"] = out["serial"]["wall_s"] / out["ray"]["wall_s"]
    return out


@click.command()
@click.option("--model", default="smollm2-135m", show_default=True)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
@click.option("--json", "json_path", default=None, help="also write the measurements here")
def main(model: str, workers: int, json_path: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="lorp-ray-bench-"))
    try:
        out = run(model, workers, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
