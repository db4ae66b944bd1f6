"""``lorp`` command line: prune, select, study, plugins, models."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

import click

from .errors import ConfigError, LorpError
from .run.threads import ENV as THREADS_ENV
from .run.threads import apply_threads


def _handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LorpError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
    return wrapper


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lorp")
@click.option("--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False),
              help="extra folder of single-file plugins (repeatable; adds to $LORP_PLUGINS_DIR)")
@click.option("--no-plugin-autoload", is_flag=True,
              help="load builtin plugins only (same as LORP_DISABLE_PLUGIN_AUTOLOAD=1)")
@click.option("--deny-plugin", "deny", multiple=True, help="plugin name never to load (repeatable)")
@click.option("--threads", type=str, default=None,
              help=f"torch threads here and in every process lorp starts (notebook kernels; Ray workers share them); "
                   f"also ${THREADS_ENV}  [default: the cores this process may use]")
def main(plugins_dirs, no_plugin_autoload, deny, threads) -> None:
    """lorp: Locality-Aware Redundancy Pruning of LLM blocks (arXiv 2605.27786)."""
    # SIGTERM unwinds like Ctrl-C, so staged outputs are removed rather than left half-written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:  # threads and a passive OpenMP wait policy for this process and every process it starts
        apply_threads(threads)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    # The environment is the one channel for plugin settings, so papermill kernels inherit them too.
    missing = [p for p in plugins_dirs if not Path(p).is_dir()]
    if missing:
        click.echo(f"error: plugin folder {missing[0]} does not exist", err=True)
        sys.exit(2)
    if plugins_dirs:
        old = [p for p in os.environ.get("LORP_PLUGINS_DIR", "").split(os.pathsep) if p]
        os.environ["LORP_PLUGINS_DIR"] = os.pathsep.join(old + [str(Path(p).resolve()) for p in plugins_dirs])
    if no_plugin_autoload:
        os.environ["LORP_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if deny:
        old = [n for n in os.environ.get("LORP_DENY_PLUGINS", "").split(",") if n]
        os.environ["LORP_DENY_PLUGINS"] = ",".join(old + list(deny))


def _defaults() -> dict:
    """``PruneConfig``'s field defaults: the one place run defaults are spelled."""
    from dataclasses import MISSING, fields

    from .run.pipeline import PruneConfig

    return {f.name: f.default for f in fields(PruneConfig) if f.default is not MISSING}


_D = _defaults()

_run_options = [
    click.option("--model", default=_D["model"], show_default=True, help="bundled key, local folder or hub id"),
    click.option("--calibration", default=_D["calibration"], show_default=True, help="calibration corpus or text file"),
    click.option("--samples", "num_samples", type=int, default=_D["num_samples"], show_default=True,
                 help="calibration sequences (paper: 128)"),
    click.option("--seq-len", type=int, default=_D["seq_len"], show_default=True,
                 help="tokens per calibration sequence (paper: 2048)"),
    click.option("--eval", "eval_corpora", default=",".join(_D["eval_corpora"]), show_default=True,
                 help="perplexity corpora"),
    click.option("--eval-tokens", type=int, default=_D["eval_tokens"] or 0, show_default=True,
                 help="token limit per corpus (0: all)"),
    click.option("--eval-seq-len", type=int, default=_D["eval_seq_len"], show_default=True,
                 help="tokens per perplexity window"),
    click.option("--similarity", default=_D["similarity"], show_default=True, help="similarity metric plugin"),
    click.option("--clustering", default=_D["clustering"], show_default=True, help="clustering algorithm plugin"),
    click.option("--k", "k", type=int, default=_D["k"], help="number of clusters (default: from RLS, eq. 6)"),
    click.option("--seed", type=int, default=_D["seed"], show_default=True, help="random seed"),
    click.option("--protect", default=",".join(map(str, _D["protected"])), show_default=True,
                 help="comma-separated blocks never removed (negative counts from the end; '' for none)"),
    click.option("--sleb-samples", type=int, default=_D["sleb_samples"], show_default=True,
                 help="calibration sequences SLEB scores removals on"),
    click.option("--sleb-tokens", type=int, default=_D["sleb_tokens"], show_default=True,
                 help="tokens SLEB scores per sequence, the last ones (0: all)"),
    click.option("--device", default=_D["device"], show_default=True),
    click.option("--batch-size", type=int, default=_D["batch_size"], show_default=True,
                 help="sequences per forward call"),
    click.option("--no-cache", is_flag=True, help="recompute the calibration pass even if cached"),
]


GGUF_TYPE = click.option("--gguf-type", type=click.Choice(["F16", "Q8_0", "F32"]), default="F16", show_default=True,
                         help="type of the healed 2-D tensors in the GGUF (docs/usage.md gives the measured cost)")


def run_options(fn):
    for option in reversed(_run_options):
        fn = option(fn)
    return fn


def _config(budget=1, allocation=_D["allocation"], save_model=True, tasks="", limit=None, heal="none", heal_settings=None,
            **kw):
    from .run.pipeline import PruneConfig

    return PruneConfig(
        model=kw["model"], budget=budget, calibration=kw["calibration"], num_samples=kw["num_samples"],
        seq_len=kw["seq_len"], seed=kw["seed"],
        eval_corpora=tuple(c.strip() for c in kw["eval_corpora"].split(",") if c.strip()),
        eval_seq_len=kw["eval_seq_len"], eval_tokens=kw["eval_tokens"] or None, similarity=kw["similarity"],
        clustering=kw["clustering"], allocation=allocation, k=kw["k"], protected=_int_list(kw["protect"], "--protect"),
        save_model=save_model, device=kw["device"], use_cache=not kw["no_cache"], sleb_samples=kw["sleb_samples"],
        sleb_tokens=kw["sleb_tokens"], batch_size=kw["batch_size"],
        zero_shot_tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), zero_shot_limit=limit,
        heal=heal, heal_settings=dict(heal_settings or {}),
    )


@main.command()
@click.option("--budget", type=int, required=True, help="number of blocks to remove")
@click.option("--allocation", default=_D["allocation"], show_default=True,
              help="allocation strategy plugin (or a baseline)")
@run_options
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="output folder (default: runs/<model>-<allocation>-b<budget>)")
@click.option("--no-save-model", is_flag=True, help="do not write the pruned model folder")
@click.option("--tasks", default="", help="zero-shot tasks before/after pruning, e.g. arc_easy,piqa ('' for none)")
@click.option("--limit", type=int, default=None, help="items per zero-shot task, drawn with --seed (default: all)")
@click.option("--heal", default=_D["heal"], show_default=True,
              help="healer plugin fitted on the calibration set before the blocks are deleted (lorp plugins lists them)")
@click.option("--heal-setting", "heal_setting", multiple=True, metavar="KEY=VALUE",
              help="a healer setting, VALUE read as JSON (repeatable), e.g. --heal-setting alpha=0.01")
@click.option("--gguf", "gguf_path", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="also write the pruned (and healed) model as this GGUF file (bundled models only; docs/usage.md)")
@GGUF_TYPE
@_handle_errors
def prune(budget, allocation, out, no_save_model, tasks, limit, heal, heal_setting, gguf_path, gguf_type, **kw):
    """Select blocks (LoRP by default), remove them (optionally healed), and write the pruned model and results.json."""
    from .run.healing import parse_heal_settings
    from .run.prune import run_prune, run_summary
    from .paths import report_name

    config = _config(budget=budget, allocation=allocation, save_model=not no_save_model, tasks=tasks, limit=limit,
                     heal=heal, heal_settings=parse_heal_settings(heal_setting), **kw)
    out = out or Path("runs") / f"{report_name(config.model)}-{allocation}-b{budget}"
    run = run_prune(config, out_dir=out, gguf_path=gguf_path, gguf_type=gguf_type)
    click.echo(run_summary(run.results, allocation))
    click.echo(f"wrote {out / 'results.json'}" + (f" and {gguf_path}" if gguf_path is not None else ""))


@main.command("export-gguf")
@click.argument("run_folder", type=click.Path(path_type=Path))
@click.argument("path", type=click.Path(path_type=Path))
@GGUF_TYPE
@_handle_errors
def export_gguf(run_folder, path, gguf_type):
    """Write the GGUF of a lorp prune RUN_FOLDER (a bundled model's) to PATH, healed tensors in --gguf-type."""
    from .run.gguf import export_run_folder

    export_run_folder(run_folder, path, gguf_type)
    click.echo(f"wrote {path}")


@main.command(name="eval")
@click.option("--pruned-from", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="results.json of a pruning run: evaluate its model (its own --model) dense and pruned, "
                   "and add the numbers to it")
@click.option("--budget", type=int, default=None, help="prune this many blocks first (with --allocation)")
@click.option("--allocation", default=_D["allocation"], show_default=True)
@click.option("--tasks", default=",".join(("arc_easy", "arc_challenge", "hellaswag", "winogrande", "boolq",
                                           "openbookqa", "rte", "copa", "piqa")), show_default=True,
              help="zero-shot tasks (offline copies; race has none)")
@click.option("--limit", type=int, default=None, help="items per task, drawn with --seed (default: all)")
@run_options
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="output folder with --budget (default: runs/<model>-<allocation>-b<budget>)")
@_handle_errors
def eval_(pruned_from, budget, allocation, tasks, limit, out, **kw):
    """Zero-shot accuracy (lm-evaluation-harness, offline) of a dense and a pruned model."""
    from .evaluate.zeroshot import zero_shot
    from .model.models import load_model
    from .model.pruning import blocks_removed
    from .run.prune import run_prune, run_summary
    from .store.atomic import write_json
    from .paths import report_name

    if pruned_from is not None and budget is not None:
        raise ConfigError("give either --pruned-from or --budget, not both")
    config = _config(budget=1 if budget is None else budget, allocation=allocation, save_model=False, tasks=tasks,
                     limit=limit, **kw)
    config.validate()
    if budget is not None:
        out = out or Path("runs") / f"{report_name(config.model)}-{allocation}-b{budget}"
        run = run_prune(config, out_dir=out)
        click.echo(run_summary(run.results, allocation))
        click.echo(f"wrote {out / 'results.json'}")
        return
    if pruned_from is not None:
        if not pruned_from.is_file():
            raise ConfigError(f"{pruned_from} does not exist; give the results.json of a `lorp prune` run")
        try:
            results = json.loads(pruned_from.read_text())
            model_spec, pruned = str(results["config"]["model"]), [int(b) for b in results["pruned"]]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{pruned_from} is not a lorp results.json ({type(exc).__name__}: {exc})") from None
        if results.get("healing"):
            raise ConfigError(f"{pruned_from} is a healed run (healer {results['healing'].get('healer')!r}): deleting "
                              "its blocks from the dense model would skip the healing; rerun `lorp prune --heal ... "
                              "--tasks ...` to evaluate it")
    else:
        results, model_spec, pruned = None, config.model, []
    loaded = load_model(model_spec, device=config.device)
    with blocks_removed(loaded.model, pruned):  # checks the block list against this model before any evaluation
        pass
    run_zs = functools.partial(zero_shot, loaded.model, loaded.tokenizer, config.zero_shot_tasks,
                               limit=config.zero_shot_limit, seed=config.seed)
    dense, after = run_zs(), None
    if pruned:
        with blocks_removed(loaded.model, pruned):
            after = run_zs()
    for task, v in dense["tasks"].items():
        line = f"{task:<14} {v['metric']:<8} {v['items']:>5} items ({v['split']}): dense {v['score']:.3f}"
        click.echo(line + (f"  pruned {after['tasks'][task]['score']:.3f}" if after else ""))
    click.echo(f"average: dense {dense['average']:.3f}" + (f"  pruned {after['average']:.3f}" if after else ""))
    if results is not None:
        results["zero_shot"] = {"before": dense, "after": after}
        write_json(pruned_from, results)
        click.echo(f"updated {pruned_from}")


def _sweep_defaults() -> dict:
    from dataclasses import fields

    from .run.sweep import SweepConfig

    return {f.name: f.default for f in fields(SweepConfig)}


_S = _sweep_defaults()


def _ray_defaults() -> dict:
    from dataclasses import fields

    from .run.executors import RayExecutor

    return {f.name: f.default for f in fields(RayExecutor)}


_R = _ray_defaults()


@main.command()
@click.option("--methods", default=",".join(_S["methods"]), show_default=True,
              help="comma-separated allocation strategies")
@click.option("--budgets", default=",".join(map(str, _S["budgets"])), show_default=True,
              help="comma-separated budgets (blocks to remove)")
@click.option("--attribution/--no-attribution", default=_S["attribution"], show_default=True,
              help="also compute the single-block removal profile (calibration NLL with each one block removed) "
                   "into sweep.json")
@click.option("--seeds", default="", help="comma-separated run seeds, one cell each: each draws its own calibration set "
              "(S, SLEB's sequences) and seeds clustering and random baselines; evaluation stays fixed "
              "(default: --seed)")
@click.option("--seed-methods", default="", help="comma-separated methods run at every seed; the others run at "
              "the first seed only (default, or empty: every method at every seed)")
@click.option("--healers", default="none", show_default=True,
              help="comma-separated healers, one cell each per (method, budget, seed): 'none' is unhealed, e.g. "
                   "none,linear,residual (lorp plugins lists them)")
@run_options
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="sweep folder (default: runs/sweep-<model>); rerunning resumes it")
@click.option("--executor", type=click.Choice(["serial", "ray"]), default="serial", show_default=True,
              help="where cells run: this process, or Ray actors (pip install 'lorp[ray]')")
@click.option("--address", default=None, help="Ray cluster address (auto, host:6379, ray://host:10001); "
                                              "default: start a local Ray")
@click.option("--workers", "num_workers", type=int, default=None, help=f"Ray workers, each loads the model once  [default: {_R['num_workers']}]")
@click.option("--worker-cpus", "num_cpus", type=float, default=None, help=f"CPUs per Ray worker  [default: {_R['num_cpus']:g}]")
@click.option("--worker-gpus", "num_gpus", type=float, default=None, help=f"GPUs per Ray worker  [default: {_R['num_gpus']:g}]")
@_handle_errors
def sweep(methods, budgets, seeds, seed_methods, healers, attribution, out, executor, address, num_workers, num_cpus,
          num_gpus, **kw):
    """Compare methods × budgets from one calibration pass; writes table.csv/json and one file per cell."""
    from .run.executors import make_executor
    from .run.sweep import SweepConfig, run_sweep
    from .study.parameters import split_list
    from .paths import report_name

    runner = make_executor(executor, address=address, num_workers=num_workers, num_cpus=num_cpus, num_gpus=num_gpus)
    config = SweepConfig(base=_config(save_model=False, **kw),
                         methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                         budgets=_int_list(budgets, "--budgets"), seeds=_int_list(seeds, "--seeds"),
                         attribution=attribution,
                         seed_methods=split_list(seed_methods, "--seed-methods") or None,
                         healers=split_list(healers, "--healers") or ("none",))
    out = out or Path("runs") / f"sweep-{report_name(config.base.model)}"
    rows = run_sweep(config, out, executor=runner)
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    by_cell: dict = {}
    for r in rows:
        by_cell.setdefault((r["method"], r["budget"], r.get("seed"), r.get("healer", "none")), {})[r["corpus"]] = r
    names = {key: key[0] + ("" if key[2] is None else f" s{key[2]}") + ("" if key[3] == "none" else f" +{key[3]}")
             for key in by_cell}
    width = max(12, *(len(n) + 1 for n in names.values()))
    click.echo(f"{'method':<{width}}{'budget':>7}  " + "  ".join(f"{c:>16}" for c in corpora) + "  pruned")
    for key, cell in by_cell.items():
        first = next(iter(cell.values()))
        click.echo(f"{names[key]:<{width}}{key[1]:>7}  " + "  ".join(f"{cell[c]['perplexity']:>16.2f}" for c in corpora)
                   + f"  {first['pruned']}")
    click.echo(f"wrote {out / 'table.csv'}")


@main.command()
@click.option("--similarity", "similarity_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="saved [N, N] similarity matrix (.npy, .json or results.json)")
@click.option("--budget", type=int, required=True, help="number of blocks to remove")
@click.option("--clustering", default=_D["clustering"], show_default=True)
@click.option("--allocation", default=_D["allocation"], show_default=True)
@click.option("--k", "k", type=int, default=None, help="number of clusters (default: from RLS)")
@click.option("--seed", type=int, default=_D["seed"], show_default=True)
@click.option("--protect", default=",".join(map(str, _D["protected"])), show_default=True, help="blocks never removed")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@_handle_errors
def select(similarity_path, budget, clustering, allocation, k, seed, protect, as_json):
    """Choose blocks to remove from a saved similarity matrix (no model needed)."""
    from .method.selection import select_blocks
    from .method.similarity_file import read_similarity
    from .store.atomic import to_json

    s = read_similarity(similarity_path)
    sel = select_blocks(s, budget, k=k, seed=seed, clustering=clustering, allocation=allocation,
                        protected=_int_list(protect, "--protect"))
    if as_json:
        click.echo(to_json(sel.to_dict()))
    else:
        click.echo(f"RLS = {sel.rls:.4f}, K = {sel.k} ({sel.k_source})")
        click.echo(f"labels: {sel.labels}")
        for r in sel.removals:
            click.echo(f"  remove block {r.block:3d}  (stage {r.stage}) {r.reason}")
        click.echo(f"pruned: {sel.pruned}")


@main.command()
@click.option("--preset", default="default", show_default=True,
              help="parameter set from notebooks/variants.yaml: quick (CI, minutes), default (three model "
                   "families, over an hour on 2 CPU cores, reports/performance.md: run seeds 0, 1, 2, ablations, our selector), sensitivity (default with SLEB "
                   "at every seed), "
                   "paper (the paper's protocol, for a GPU)")
@click.option("--models", "models", multiple=True, metavar="A,B",
              help="comma-separated models to study (default: the preset's models)")
@click.option("-p", "--parameter", "params", multiple=True, metavar="NAME=VALUE",
              help="notebook parameter override for every model, e.g. -p budgets=2,4 (repeatable)")
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="reports folder (default: reports/ for the default preset, reports/<preset>/ otherwise)")
@click.option("--no-summary", is_flag=True, help="skip the summary notebook and the index")
@click.option("--list-parameters", is_flag=True, help="print the study notebook's parameters and exit")
@click.option("--add", "add", default="", metavar="NAME[,NAME…]",
              help="put these registered methods (allocation strategies, or clustering/similarity plugins LoRP runs "
                   "with) beside the committed study, reusing every committed number whose key matches; writes "
                   "reports/added/<names>/ (or --reports)")
@click.option("--committed", "committed_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="with --add: the committed study's reports folder (default: reports/)")
@_handle_errors
def study(preset, models, params, reports_dir, no_summary, list_parameters, add, committed_dir):
    """Run the study notebooks headlessly with papermill: per model the study notebook, then the ablation notebook
    (LoRP ablations, our selector, picks with more calibration data; skipped when the parameters ablations and
    selectors are both empty), then the summary and index.

    With --add NAME: only NAME's rows are computed, under the committed study's exact protocol, beside its
    reused numbers (docs/plugins.md)."""
    from .study.runner import notebook_parameters, run_added, run_study

    if list_parameters:
        for name, spec in notebook_parameters().items():
            click.echo(f"{name} ({spec['type']}, default {spec['default']}): {spec['help']}")
        return
    parameters = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"parameter {item!r} must look like NAME=VALUE, e.g. -p budgets=2,4")
        if name in parameters:
            raise ConfigError(f"parameter {name} given twice (-p {name}=...); give it once")
        parameters[name.strip()] = value
    chosen = [m.strip() for group in models for m in group.split(",") if m.strip()]
    if add or committed_dir:
        if not add:
            raise ConfigError("--committed goes with --add NAME: the methods to put beside the committed study")
        if parameters or preset != "default":
            raise ConfigError("--add runs the committed study's own protocol; drop --preset and -p")
        folders = run_added(add.split(","), chosen or None, committed_dir=committed_dir, reports_dir=reports_dir,
                            summary=not no_summary, echo=lambda line: click.echo(line, err=True))
        for folder in folders:
            click.echo(f"report: {folder / ('summary.html' if folder.name == 'summary' else 'study.html')}")
        return
    for folder in run_study(chosen or None, preset=preset, parameters=parameters, reports_dir=reports_dir,
                            summary=not no_summary, echo=lambda line: click.echo(line, err=True)):
        page = "summary.html" if folder.name == "summary" else "study.html"
        click.echo(f"report: {folder / page}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@_handle_errors
def plugins(as_json):
    """List loaded plugins: source, version and the components each provides."""
    from .plugins.registry import load_registry

    registry = load_registry()
    if as_json:
        click.echo(json.dumps([p.__dict__ for p in registry.plugins], indent=2, default=list))
        return
    for p in registry.plugins:
        click.echo(f"{p.name}  {p.version}  [{p.source}]")
        for c in p.components:
            kind, name = c.split(":", 1)
            comp = registry.components[kind][name].component
            click.echo(f"    {kind:<10} {name:<16} {comp.description}")


@main.command()
def models():
    """List the bundled real models."""
    from .model.models import BUNDLED_MODELS

    for m in BUNDLED_MODELS.values():
        click.echo(f"{m.key:<14} {m.architecture:<12} {m.num_blocks:>3} blocks  hidden {m.hidden_size:<5} {m.description}")


if __name__ == "__main__":
    main()
