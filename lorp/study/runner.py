"""Run the study notebooks headlessly with papermill; write per-model reports, the summary and the index
(rendered by :mod:`lorp.study.index`; the parameters checked by :mod:`lorp.study.checks`).

``reports/<model>/`` comes from ``notebooks/lorp_study.ipynb`` (one per model),
``reports/summary/`` from ``notebooks/summary.ipynb``, and ``reports/index.md`` /
``index.html`` link them. Parameters come from a preset of ``notebooks/variants.yaml``
(:mod:`lorp.study.variants`) plus overrides.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LorpError, UnknownNameError
from ..paths import REPORTS_DIR, report_name
from ..plugins.registry import load_registry
from ..run.progress import ENV as progress_env
from ..run.progress import Follower
from ..run.threads import resolve_threads, thread_env
from ..store.atomic import check_output_location, staged_dir, write_text
from .ablation import names
from .add import load_committed, resolve_added
from .checks import check_study_parameters
from .index import write_index
from .parameters import (ABLATION_NOTEBOOK, STUDY_NOTEBOOK, SUMMARY_NOTEBOOK, notebook_defaults,
                         notebook_parameters, study_config)
from .reuse import reuse_mismatches
from .variants import load_preset


def render_html(notebook: Path, target: Path) -> Path:
    """Render an executed notebook to a standalone HTML file (nbconvert), figures embedded."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    return write_text(target, body)


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


def added_reports_dir(added: Iterable[str]) -> Path:
    """Where ``lorp study --add`` writes by default: ``reports/added/<name>+<name>…``."""
    return REPORTS_DIR / "added" / "+".join(added)


def committed_models(root: Path) -> list[str]:
    """The models with a committed study under ``root`` (``<model>/results.json``), in the default preset's order
    first."""
    found = [p.parent.name for p in sorted(root.glob("*/results.json"))]
    order = list(load_preset("default").models)
    return sorted(found, key=lambda m: (order.index(m) if m in order else len(order), m))


def run_added(added: Iterable[str], models: Iterable[str] | None = None, *, committed_dir: str | Path | None = None,
              reports_dir: str | Path | None = None, summary: bool = True, progress: bool = True,
              echo=print) -> list[Path]:
    """``lorp study --add NAME…``: each model's committed study with the added methods beside it, as a full report
    set (per-model reports, summary, index) in a folder of its own.

    Every committed number whose key matches this checkout (:func:`lorp.study.reuse.reuse_mismatches`) is
    reused; only the added methods are computed (:func:`lorp.study.add.add_methods`). A model whose key differs
    is studied again whole, with one line per differing part said here and in the report. The committed
    reports are read, never written.

    Args:
        added: registered method names (allocation strategies, or clustering algorithms / similarity metrics
            LoRP runs with).
        models: models to add to (default: every model with a committed study).
        committed_dir: the committed reports (default ``reports/``).
        reports_dir: where the report set goes (default :func:`added_reports_dir`); never the committed folder.
        summary: also run the summary notebook and write the index.
        echo: progress lines go here.
    Returns:
        the report folders written (models, then the summary).
    Raises:
        UnknownNameError: a name no plugin registered (before any work).
        ConfigError: no committed study for a model, a name the study already compares, or the output folder
            is the committed one.
        LorpError: a notebook failed.
    """
    added = [n.strip() for n in added if n and n.strip()]
    committed_root = user_path(committed_dir) if committed_dir else REPORTS_DIR
    root = user_path(reports_dir) if reports_dir else added_reports_dir(added)
    if root == committed_root or (root.parent == committed_root and (root / "results.json").is_file()):
        raise ConfigError(f"--add writes a report set of its own; {root} is the committed study's folder: "
                          "choose another with --reports")
    models = list(models) if models else committed_models(committed_root)
    if not models:
        raise ConfigError(f"no committed study under {committed_root} (no <model>/results.json); run `lorp study` "
                          "first, or give its folder with --committed")
    registry = load_registry()
    known = notebook_parameters(STUDY_NOTEBOOK)
    defaults = notebook_defaults(known)
    plans = []
    for m in models:  # every name and model checked before any notebook runs
        path = committed_root / report_name(m) / "results.json"
        committed = load_committed(path)
        params = {k: v for k, v in committed.parameters.items() if k in known and k not in
                  ("out_dir", "work_dir", "added", "committed_results")}
        config = study_config({**defaults, **params})
        resolve_added(added, registry, config, [c.method for c in committed.all_cells if not c.added])
        recomputed = reuse_mismatches(committed, config, registry)
        check_output_location(root / report_name(m))
        plans.append((m, path, params, recomputed, committed.computed_at_commit))
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (m, path, params, recomputed, computed_at) in enumerate(plans, 1):
        tag = f"[{i}/{len(plans)}] {m}: "
        for line in recomputed:
            echo(tag + line)
        if not recomputed:
            echo(tag + f"every committed number reused (computed at {str(computed_at)[:7]}); "
                       f"computing {', '.join(added)}")
        final = root / report_name(m)
        t = time.perf_counter()
        with staged_dir(final) as stage:
            if not recomputed:  # the committed ablation pages stay as they are: the added methods are not ablations
                for f in path.parent.iterdir():
                    if f.is_file():
                        shutil.copy2(f, stage / f.name)
            _execute(STUDY_NOTEBOOK, stage, "study.ipynb",
                     {**params, "added": ",".join(added), "committed_results": str(path), "out_dir": str(stage)},
                     progress, f"study notebook for {m!r} with {', '.join(added)}", echo, tag)
            full = {**defaults, **params}
            if recomputed and (names(full["ablations"]) or names(full["selectors"])):
                _execute(ABLATION_NOTEBOOK, stage, "ablation.ipynb", {"study_dir": str(stage), "out_dir": str(stage)},
                         progress, f"ablation notebook for {m!r}", echo, tag)
        echo(tag + f"done in {time.perf_counter() - t:.0f} s")
        written.append(final)
    if summary:
        final = root / "summary"
        with staged_dir(final) as stage:
            _execute(SUMMARY_NOTEBOOK, stage, "summary.ipynb", {"reports_dir": str(root), "out_dir": str(stage)},
                     progress, "summary notebook", echo, "summary: ")
        written.append(final)
        write_index(root, preset=plans[0][2].get("preset", "default"), default_root=False, added=added)
        echo(f"index: {root / 'index.html'}")
    return written
