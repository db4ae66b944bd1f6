"""Run the study notebooks headlessly with papermill; write per-model reports, the summary and the index.

``reports/<model>/`` comes from ``notebooks/lorp_study.ipynb`` (one per model),
``reports/summary/`` from ``notebooks/summary.ipynb``, and ``reports/index.md`` /
``index.html`` link them. Parameters come from a preset of ``notebooks/variants.yaml``
(:mod:`lorp.study.variants`) plus overrides.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LorpError, UnknownNameError
from ..model.data import load_corpus
from ..paths import REPORTS_DIR
from ..plugins.registry import default_registry
from ..run.healing import check_healers
from ..run.pipeline import block_metric
from ..run.progress import ENV as progress_env
from ..run.progress import Follower
from ..run.threads import resolve_threads, thread_env
from ..run.record_schema import STUDY_SCHEMA, schema_of
from ..run.study_records import StudyResult
from ..store.atomic import check_output_location, staged_dir, write_text
from ..store.cache import check_cache_writable
from .ablation import ablation_config, load_ablations, names
from .answer import answer_lines
from .parameters import (ABLATION_NOTEBOOK, STUDY_NOTEBOOK, SUMMARY_NOTEBOOK, evidence_settings, notebook_defaults,
                         notebook_parameters, study_config)
from .variants import load_preset


def render_html(notebook: Path, target: Path) -> Path:
    """Render an executed notebook to a standalone HTML file (nbconvert), figures embedded."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    return write_text(target, body)


def report_name(model: str) -> str:
    """Folder name of a model's report: the model argument with ``/`` made safe."""
    return model.rstrip("/").replace("/", "--").lstrip(".-") or "model"


#: Notebook parameters that name local files or folders (comma-separated where several): a relative one is
#: resolved against the directory ``lorp study`` runs from, since the notebooks run from ``notebooks/``.
PATH_PARAMETERS = ("work_dir", "calibration", "eval_corpora", "calibration_corpora")


def user_path(value: str | os.PathLike) -> Path:
    """A path the user gave, absolute: ``~`` expanded, a relative one taken from the current directory."""
    return Path(os.path.expanduser(str(value))).resolve()


def local_argument(value: str) -> str:
    """A model or corpus argument: an existing local path made absolute, anything else (a bundled key, a hub id,
    a registered corpus) unchanged."""
    text = str(value).strip()
    return str(user_path(text)) if text and Path(os.path.expanduser(text)).exists() else text


def with_local_paths(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with :data:`PATH_PARAMETERS` resolved against the current directory (``work_dir`` always when
    set; the corpus lists item by item, where the item is an existing file or folder)."""
    out = dict(params)
    if out.get("work_dir"):
        out["work_dir"] = str(user_path(out["work_dir"]))
    for name in PATH_PARAMETERS[1:]:
        if isinstance(out.get(name), str) and out[name].strip():
            out[name] = ",".join(local_argument(item) for item in out[name].split(","))
    return out


def _cast(params: Mapping[str, Any], known: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Check names against the notebook and convert command-line strings to the parameter's type."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UnknownNameError("notebook parameter", unknown[0], known)
    out = {}
    for name, value in params.items():
        kind = known[name]["type"]
        if isinstance(value, str) and kind in ("int", "bool"):
            try:
                value = int(value) if kind == "int" else {"true": True, "false": False, "1": True, "0": False}[value.lower()]
            except (ValueError, KeyError):
                raise ConfigError(f"notebook parameter {name} takes a{'n' if kind == 'int' else ''} {kind}, "
                                  f"got {value!r}") from None
        out[name] = value
    return out


def check_study_parameters(params: Mapping[str, Any]) -> None:
    """Check one model's study parameters before any notebook runs: types, values, names, and the model.

    Raises:
        ConfigError, UnknownNameError: a wrong type or value, an unknown method,
            metric, clustering, corpus or zero-shot task, or a budget the model cannot
            take (its block count is read from the bundled table or config.json).
    """
    params_for_config = {k: v for k, v in params.items() if k not in ("preset", "out_dir", "work_dir")}
    config = study_config(params_for_config)
    check_cache_writable()
    if params.get("work_dir"):
        check_output_location(Path(params["work_dir"]))
    base = config.base
    registry = default_registry()
    strategies = [registry.allocation(m) for m in config.methods]
    for key in ("seed_methods", "detail_methods"):  # filters on the compared methods, but no unknown names
        for m in names(params.get(key, "")):
            registry.allocation(m)
    ablations, selectors = names(params.get("ablations", "")), names(params.get("selectors", ""))
    if ablations or selectors:
        ablation_config(params_for_config, ablations, selectors)
        strategies += [registry.allocation(m) for m in (*ablations, *selectors)]
    if any(s.uses_clusters for s in strategies):
        registry.clustering(base.clustering)
    block_metric(registry, base.similarity)
    check_healers(registry, params.get("healers", ""), "the study parameter healers")
    evidence = evidence_settings(params_for_config)
    for name in (base.calibration, *base.eval_corpora, *evidence["calibration_corpora"]):
        if name not in registry.components["corpus"]:
            load_corpus(name, registry)  # a text file: read and split now, so a bad path fails here
    base.check_against_model(config.budgets)


@functools.lru_cache(maxsize=1)
def _ipc_kernel_manager():
    """A jupyter kernel manager whose kernel talks over local IPC sockets instead of TCP.

    The kernel then opens no network port, and prints no "running over TCP
    without encryption" warning into the user's terminal.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc")

    return IPCKernelManager


def _execute(notebook: Path, target_dir: Path, name: str, parameters: dict[str, Any], progress: bool, what: str,
             echo=print, prefix: str = "") -> None:
    """Execute ``notebook`` into ``target_dir / name`` and render its HTML; stream the sweep's progress to ``echo``."""
    import papermill as pm

    fd, progress_file = tempfile.mkstemp(prefix="lorp-progress-", suffix=".jsonl")
    os.close(fd)
    # the kernel inherits these: the sweep appends its events to the progress file; lorp's threads and a passive
    # OpenMP wait policy (lorp.run.threads)
    settings = {progress_env: progress_file, **thread_env(resolve_threads())}
    previous = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        with Follower(progress_file, echo if progress else (lambda _line: None), prefix=prefix):
            pm.execute_notebook(str(notebook), str(target_dir / name), parameters=parameters, progress_bar=False,
                                kernel_name="python3", cwd=str(notebook.parent),
                                kernel_manager_class=_ipc_kernel_manager())
    except pm.PapermillExecutionError as exc:
        raise LorpError(f"{what} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                        f"(the executed notebook up to the error was discarded; earlier reports are intact)") from exc
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.unlink(progress_file)
    render_html(target_dir / name, target_dir / name.replace(".ipynb", ".html"))


def run_study(models: Iterable[str] | None = None, *, preset: str = "default",
              parameters: Mapping[str, Any] | None = None, reports_dir: str | Path | None = None,
              summary: bool = True, progress: bool = True, echo=print) -> list[Path]:
    """Run the study: the per-model notebook for each model, then the summary notebook and the index.

    Args:
        models: model arguments (bundled keys, folders or hub ids); default: the preset's models.
        preset: a preset of ``notebooks/variants.yaml`` (``quick``, ``default``, ``paper``).
        parameters: notebook parameters overriding the preset for every model
            (strings are converted to the parameter's type).
        reports_dir: where reports go (default ``reports/`` for the default
            preset, ``reports/<preset>/`` otherwise).
        summary: also run the summary notebook and write the index.
        echo: progress lines go here.
    Each model's report is built in a temporary folder and replaces the previous
    one only when complete. A failing notebook raises :class:`LorpError` with the
    failing cell's error; reports written before it stay. Finished sweep cells
    and calibration passes are cached, so a rerun skips finished work.

    Returns:
        the report folders written (models, then the summary).
    Raises:
        ConfigError, UnknownNameError: unknown preset or parameter, bad values.
        LorpError: a notebook failed.
    """
    known = notebook_parameters(STUDY_NOTEBOOK)
    chosen = load_preset(preset, known_parameters=list(known))
    overrides = with_local_paths(_cast(dict(parameters or {}), known))
    if {"model", "out_dir"} & set(overrides):
        raise ConfigError("the study sets each notebook's model and out_dir itself; choose models with --models "
                          "and the folder with --reports")
    models = list(models) if models else list(chosen.models)
    if not models:
        raise ConfigError(f"preset {preset!r} names no models; give --models")
    root = user_path(reports_dir) if reports_dir else (REPORTS_DIR if preset == "default" else REPORTS_DIR / preset)
    created = not root.exists()
    try:
        for m in models:  # every model's settings are checked before any notebook runs
            check_study_parameters({**notebook_defaults(known), **chosen.parameters_for(m, overrides),
                                    "model": local_argument(m)})
            check_output_location(root / report_name(m))
    except BaseException:
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        raise
    try:
        return _run_all(models, chosen, overrides, root, preset, summary, progress, echo)
    except BaseException:
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # a study that wrote nothing leaves no empty folder behind
        raise


def _run_all(models, chosen, overrides, root: Path, preset: str, summary: bool, progress: bool, echo) -> list[Path]:
    written = []
    defaults = notebook_defaults(notebook_parameters(STUDY_NOTEBOOK))
    for i, model in enumerate(models, 1):
        params = {**chosen.parameters_for(model, overrides), "model": local_argument(model)}
        final = root / report_name(model)
        echo(f"[{i}/{len(models)}] {model}: running notebooks/lorp_study.ipynb (preset {preset}) -> {final}")
        t = time.perf_counter()
        with staged_dir(final) as stage:
            _execute(STUDY_NOTEBOOK, stage, "study.ipynb", {**params, "preset": preset, "out_dir": str(stage)},
                     progress, f"study notebook for {model!r}", echo, f"[{i}/{len(models)}] {model}: ")
            if not (stage / "results.json").is_file():
                raise LorpError(f"the study notebook for {model!r} ran but wrote no results.json into {stage}; "
                                "its report would not be where this run says, so nothing was replaced")
            full = {**defaults, **params}
            if names(full["ablations"]) or names(full["selectors"]):
                echo(f"[{i}/{len(models)}] {model}: running notebooks/ablation.ipynb (ablations and our selectors)")
                _execute(ABLATION_NOTEBOOK, stage, "ablation.ipynb", {"study_dir": str(stage), "out_dir": str(stage)},
                         progress, f"ablation notebook for {model!r}", echo, f"[{i}/{len(models)}] {model}: ")
        echo(f"[{i}/{len(models)}] {model}: done in {time.perf_counter() - t:.0f} s")
        written.append(final)
    if summary:
        final = root / "summary"
        echo(f"summary: running notebooks/summary.ipynb over {root} -> {final}")
        with staged_dir(final) as stage:
            _execute(SUMMARY_NOTEBOOK, stage, "summary.ipynb", {"reports_dir": str(root), "out_dir": str(stage)},
                     progress, "summary notebook", echo, "summary: ")
        written.append(final)
        write_index(root, preset=preset, default_root=root == REPORTS_DIR)
        echo(f"index: {root / 'index.html'}")
    return written


def _inline_html(markdown: str) -> str:
    """One Markdown line as HTML: escaped, with ``**bold**`` and ``code`` spans (all the answer lines use)."""
    text = html.escape(markdown, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def write_index(root: str | Path, *, preset: str = "", default_root: bool = True) -> Path:
    """``index.md`` and ``index.html`` under ``root``: the answer first, then one figure, then the links.

    The first lines are :func:`lorp.study.answer.answer_lines` over the stored ``results.json`` (and
    ``ablation.json``) under ``root``: does LoRP beat its baselines, why not, how sure, on exactly
    which checkpoints. Then the summary's ``verdict.png`` where it exists, then every model report and
    the summary.
    """
    root = Path(root)
    rows, studies = [], {}
    for res in sorted(root.glob("*/results.json")):
        data = json.loads(res.read_text())
        if schema_of(data) != STUDY_SCHEMA:
            continue
        r = StudyResult.from_json(data)
        studies[res.parent.name] = r
        rows.append((res.parent.name, r.model.get("model_type", ""), r.num_blocks, r.rls, r.k,
                     r.parameters.get("preset", "")))
    answer = answer_lines(studies, load_ablations(root, studies))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    has_summary = (root / "summary" / "summary.html").is_file()
    figure = (root / "summary" / "verdict.png").is_file()
    md = ["# LoRP study reports", "", *(f"- {line}" for line in answer), ""]
    if figure:
        md += ["![LoRP's perplexity over the best baseline's, per model and budget, with 95 % intervals]"
               "(summary/verdict.png)", ""]
    md += ["Locality-Aware Redundancy Pruning (arXiv 2605.27786) and its baselines on real pretrained models.", ""]
    if has_summary:
        md += ["**[Summary across models](summary/summary.html)** "
               "([notebook](summary/summary.ipynb), [verdict](summary/verdict.md), [winners](summary/winners.md), "
               "[why LoRP loses](summary/why.md), [ablations and our selector](summary/ablation.md), "
               "[RLS](summary/rls.md), [time per stage](summary/time.md))", ""]
    md += ["| model | architecture | blocks | RLS | K | preset | report |", "|---|---|---:|---:|---:|---|---|"]
    for folder, arch, n, rls, k, pre in rows:
        md.append(f"| {folder} | {arch} | {n} | {rls:.3f} | {k} | {pre} | [HTML]({folder}/study.html) · "
                  f"[notebook]({folder}/study.ipynb) · [perplexity]({folder}/perplexity.md) · "
                  f"[ablations]({folder}/ablation.md) · [our selector]({folder}/selector.md) · "
                  f"[results.json]({folder}/results.json) |")
    rerun = f"`lorp study --preset {preset or 'default'}" + ("" if default_root else f" --reports {root}") + "`"
    if preset in ("", "default") and default_root:
        rerun = f"`make study` (or {rerun})"
    md += ["", f"Written {stamp}. Rerun with {rerun}; finished work is reused."]
    write_text(root / "index.md", "\n".join(md) + "\n")
    body = ["<!doctype html><meta charset='utf-8'><title>LoRP study reports</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em}</style>",
            "<h1>LoRP study reports</h1>",
            "<ul>" + "".join(f"<li>{_inline_html(line)}</li>" for line in answer) + "</ul>" if answer else ""]
    if figure:
        body.append("<p><img src='summary/verdict.png' alt=\"LoRP's perplexity over the best baseline's\" "
                    "style='max-width:100%'></p>")
    body.append("<p>Locality-Aware Redundancy Pruning (arXiv 2605.27786) and its baselines on real pretrained "
                "models.</p>")
    if has_summary:
        body.append("<p><b><a href='summary/summary.html'>Summary across models</a></b></p>")
    body.append("<table><tr><th>model</th><th>architecture</th><th>blocks</th><th>RLS</th><th>K</th><th>preset</th>"
                "<th>report</th></tr>")
    for folder, arch, n, rls, k, pre in rows:
        f = html.escape(folder)
        body.append(f"<tr><td>{f}</td><td>{html.escape(arch)}</td><td>{n}</td><td>{rls:.3f}</td><td>{k}</td>"
                    f"<td>{html.escape(pre)}</td><td><a href='{f}/study.html'>HTML</a> · "
                    f"<a href='{f}/study.ipynb'>notebook</a> · <a href='{f}/ablation.md'>ablations</a> · "
                    f"<a href='{f}/selector.md'>our selector</a> · <a href='{f}/results.json'>results.json</a></td></tr>")
    body += ["</table>", f"<p>Written {stamp}.</p>"]
    write_text(root / "index.html", "\n".join(body) + "\n")
    return root / "index.html"
