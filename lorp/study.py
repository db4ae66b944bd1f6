"""Run the study notebooks headlessly with papermill and render them to HTML."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .atomic import staged_dir, write_text
from .errors import LorpError
from .paths import NOTEBOOKS_DIR, REPORTS_DIR

STUDY_NOTEBOOK = NOTEBOOKS_DIR / "lorp_study.ipynb"


def notebook_parameters(notebook: str | Path = STUDY_NOTEBOOK) -> dict[str, dict[str, Any]]:
    """The notebook's papermill parameters: name -> ``{"type", "default", "help"}``."""
    import papermill as pm

    return {p["name"]: {"type": p["inferred_type_name"], "default": p["default"], "help": p["help"]}
            for p in pm.inspect_notebook(str(notebook)).values()}


def render_html(notebook: Path, target: Path) -> Path:
    """Render an executed notebook to a standalone HTML file (nbconvert)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    return write_text(target, body)


def report_name(model: str) -> str:
    """Folder name of a model's report: the model argument with ``/`` made safe."""
    return model.rstrip("/").replace("/", "--").lstrip(".-") or "model"


def run_study(models: Iterable[str], *, parameters: Mapping[str, Any] | None = None,
              reports_dir: str | Path = REPORTS_DIR, notebook: str | Path = STUDY_NOTEBOOK,
              progress: bool = True) -> list[Path]:
    """Execute the study notebook once per model into ``reports_dir/<model>/``.

    Each report folder gets the executed notebook ``study.ipynb``, ``study.html``,
    ``results.json``, ``similarity.png``, ``similarity.npy``, ``pruned_blocks.md``
    and the pruned ``model/``. A report is built in a temporary folder and only
    replaces the previous one when complete; a failing notebook raises
    :class:`LorpError` with the failing cell's error and leaves earlier reports intact.

    Args:
        models: model arguments (bundled keys, folders or hub ids).
        parameters: papermill parameters for every model (``model`` and ``out_dir`` are set per run).
    Returns:
        the report folders written.
    """
    import papermill as pm

    known = notebook_parameters(notebook)
    if {"model", "out_dir"} & set(parameters or {}):
        raise LorpError("run_study sets the notebook's model and out_dir itself; pass models= and reports_dir=")
    unknown = sorted(set(parameters or {}) - set(known))
    if unknown:
        raise LorpError(f"unknown notebook parameter(s) {unknown}; the notebook takes: {', '.join(sorted(known))}")
    written = []
    for model in models:
        final = Path(reports_dir) / report_name(model)
        with staged_dir(final) as stage:
            try:
                pm.execute_notebook(
                    str(notebook), str(stage / "study.ipynb"),
                    parameters={**(parameters or {}), "model": model, "out_dir": str(stage)},
                    progress_bar=progress, kernel_name="python3", cwd=str(Path(notebook).parent),
                )
            except pm.PapermillExecutionError as exc:
                raise LorpError(
                    f"study notebook failed for {model!r} in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
                ) from exc
            render_html(stage / "study.ipynb", stage / "study.html")
        written.append(final)
    return written
