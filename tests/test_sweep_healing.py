"""Healing in the sweep's unit of work: a healed cell round-trips, its evaluation is cached by (removed set,
healer, calibration draw) and shared between methods removing the same blocks, and old records still load."""

import json
import uuid

import pytest
from click.testing import CliRunner

from lorp.cli import main
from lorp.errors import ConfigError, UnknownNameError
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.pipeline import PruneConfig
from lorp.run.records import CellResult, CellSpec, EvalSettings, Evaluation
from lorp.run.sweep import SweepConfig, execute_sweep
from lorp.testing import make_tiny_model_folder

#: An allocation strategy that removes exactly what the builtin "last" removes, under another name, and a
#: healer that always writes linear's map (a fixed alpha: on a tiny random model the held-out choice often keeps
#: no map, and these tests need a healed model that differs from the unhealed one).
TWIN = '''
from dataclasses import replace

import lorp
from lorp.builtins.baselines import last_blocks
from lorp.builtins.healers import linear_healing


@lorp.hookimpl
def lorp_register_allocation_strategies(register):
    register(lorp.AllocationStrategy("last-twin", last_blocks, uses_clusters=False, description="last, renamed"))


def needs_rank(settings):
    if "rank" not in settings:
        raise lorp.ConfigError("healer 'needs-rank' needs a rank setting, e.g. rank=8")


@lorp.hookimpl
def lorp_register_healers(register):
    register(lorp.Healer("fixed", lambda request: linear_healing(replace(request, settings={"alpha": 0.01})),
                         description="linear at alpha 0.01, always written"))
    register(lorp.Healer("needs-rank", lambda request: ({}, {}), check_settings=needs_rank,
                         description="refuses its default settings (test)"))
'''


@pytest.fixture
def tiny_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"last_twin_{uuid.uuid4().hex[:8]}.py").write_text(TWIN)  # a module name per test
    registry = load_registry(PluginSettings(autoload=True, plugin_dirs=(tmp_path / "plugins",)))
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=8, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False)
    return base, registry, tmp_path / "sweep"


def test_healed_cells_share_one_selection_and_one_evaluation_per_removed_set(tiny_sweep):
    base, registry, out = tiny_sweep
    config = SweepConfig(base=base, methods=("last", "last-twin"), budgets=(2,), healers=("none", "fixed"))
    run = execute_sweep(config, out, registry)
    cells = {(c.spec.method, c.spec.healer): c for c in run.cells}
    assert set(cells) == {("last", "none"), ("last", "fixed"), ("last-twin", "none"), ("last-twin", "fixed")}
    assert cells["last", "fixed"].pruned == cells["last-twin", "fixed"].pruned == cells["last", "none"].pruned
    # one unhealed and one healed evaluation for the two methods' shared removed set
    assert run.stats.evaluations_computed == 2 and run.stats.evaluations_reused == 2
    healed, plain = cells["last", "fixed"].evaluation, cells["last", "none"].evaluation
    assert healed.healing["healer"] == "fixed" and healed.healing["calibration_seed"] == base.seed
    assert healed.healing["record"]["maps"] and plain.healing is None
    assert cells["last", "fixed"].evaluation_key == cells["last-twin", "fixed"].evaluation_key
    assert cells["last", "fixed"].evaluation_key != cells["last", "none"].evaluation_key
    corpus = base.eval_corpora[0]
    assert healed.perplexity[corpus].nll != plain.perplexity[corpus].nll
    assert "heal_fit" in healed.stage_seconds and "healer:fixed" in cells["last", "fixed"].code
    assert (out / "cells" / "last-b2-s0-hfixed.json").is_file() and (out / "cells" / "last-b2-s0.json").is_file()
    rows = json.loads((out / "table.json").read_text())
    assert {(r["method"], r["healer"]) for r in rows} == {("dense", "none"), *cells}

    # a healed cell round-trips through the records
    again = CellResult.from_json(json.loads(json.dumps(cells["last", "fixed"].to_json())))
    assert again.spec == cells["last", "fixed"].spec and again.evaluation == healed
    # a rerun computes nothing; the unhealed cells' evaluation equals an unhealed-only sweep's
    rerun = execute_sweep(config, out, registry)
    assert rerun.stats is None
    only_plain = execute_sweep(SweepConfig(base=base, methods=("last",), budgets=(2,)), out.parent / "plain", registry)
    assert only_plain.cells[0].evaluation.perplexity[corpus].nll == plain.perplexity[corpus].nll
    assert "healer" not in json.loads((out.parent / "plain" / "table.json").read_text())[0]


def test_records_without_healers_still_load():
    settings = EvalSettings(corpora=("ptb",), seq_len=8, tokens=64)
    old_spec = {"schema": "lorp.cell_spec", "version": 1, "method": "lorp", "budget": 2, "seed": 0,
                "evaluation": settings.to_json()}
    spec = CellSpec.from_json(old_spec)
    assert spec.healer == "none" and not spec.healed and spec.name == "lorp-b2-s0"
    assert spec.to_json() == old_spec  # an unhealed spec writes what it did before healing existed
    healed = CellSpec("lorp", 2, 0, settings, "linear")
    assert healed.name == "lorp-b2-s0-hlinear" and CellSpec.from_json(healed.to_json()) == healed
    ev = Evaluation((3,), {}, 10)
    data = ev.to_json()
    del data["healing"]
    assert Evaluation.from_json(data) == ev


def test_bad_healer_lists_are_refused_before_any_work(tiny_sweep):
    base, registry, out = tiny_sweep
    with pytest.raises(UnknownNameError, match="known healers"):
        execute_sweep(SweepConfig(base=base, methods=("last",), budgets=(2,), healers=("none", "lineer")), out,
                      registry)
    with pytest.raises(ConfigError, match="each healer once"):
        execute_sweep(SweepConfig(base=base, methods=("last",), budgets=(2,), healers=("linear", "linear")), out,
                      registry)
    with pytest.raises(ConfigError, match="needs a rank setting"):  # a plugin's own settings check, before any work
        execute_sweep(SweepConfig(base=base, methods=("last",), budgets=(2,), healers=("none", "needs-rank")), out,
                      registry)
    assert not (out / "cells").exists()


def test_the_study_and_the_cli_refuse_bad_healers_in_one_line_before_any_work(tiny_sweep, tmp_path):
    from lorp.run.healing import check_healers

    base, registry, out = tiny_sweep
    assert check_healers(registry, " none, linear ,") == ("none", "linear")
    assert check_healers(registry, ["fixed"]) == ("fixed",)
    for value, message in [("linear,linaer", "did you mean 'linear'"), ("linear,linear", "give each healer once"),
                           ("needs-rank", "needs a rank setting"), ([1], "must be healer names")]:
        with pytest.raises(ConfigError, match=message):
            check_healers(registry, value)
    common = ["--model", base.model, "--calibration", base.calibration, "--eval", base.calibration, "--samples", "8",
              "--seq-len", "8", "--eval-seq-len", "8", "--eval-tokens", "64"]
    res = CliRunner().invoke(main, ["sweep", "--methods", "last", "--budgets", "2", "--healers", "none,lineer",
                                    *common, "--out", str(out)])
    assert res.exit_code == 2 and "unknown healer 'lineer' (did you mean 'linear'?)" in res.output
    assert "Traceback" not in res.output and not (out / "cells").exists()
    res = CliRunner().invoke(main, ["prune", "--budget", "2", "--heal", "linear", "--heal-setting", "ridge=1",
                                    *common, "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "takes the settings alpha and alphas, got unknown ['ridge']" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_cli_sweep_healers(tiny_sweep):
    base, _, out = tiny_sweep
    res = CliRunner().invoke(main, [
        "sweep", "--methods", "last", "--budgets", "2", "--healers", "none,linear,residual", "--model", base.model,
        "--calibration", base.calibration, "--eval", base.calibration, "--samples", "8", "--seq-len", "8",
        "--eval-seq-len", "8", "--eval-tokens", "64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "last +linear" in res.output and "last +residual" in res.output and "\nlast " in res.output
    cell = json.loads(next(out.glob("cells/last-b2-s0-hresidual.json")).read_text())
    maps = cell["evaluation"]["healing"]["record"]["maps"]
    assert cell["evaluation"]["healing"]["healer"] == "residual" and [m["run"] for m in maps] == [[3, 4]]  # "last" keeps the protected last block
    linear = json.loads(next(out.glob("cells/last-b2-s0-hlinear.json")).read_text())
    kept = cell["evaluation"]["healing"]["record"]["kept_maps"]
    assert cell["evaluation"]["parameters"] == linear["evaluation"]["parameters"] + kept * 32 * 32  # d² per map


def test_one_folder_with_healed_and_unhealed_cells_never_mixes_them_in_a_table(tiny_sweep):
    from dataclasses import replace

    from lorp.study.load import load_sweep, summarize

    base, registry, out = tiny_sweep
    both = SweepConfig(base=base, methods=("last",), budgets=(1, 2), healers=("none", "fixed"))
    execute_sweep(both, out, registry)
    meta, plain = load_sweep(out)  # default: the unhealed cells only
    assert [(c.method, c.budget, c.spec.healer) for c in plain] == [("last", 1, "none"), ("last", 2, "none")]
    _, healed = load_sweep(out, config=both, healer="fixed")
    assert [(c.budget, c.spec.healer) for c in healed] == [(1, "fixed"), (2, "fixed")]
    assert all(h.perplexity != p.perplexity for h, p in zip(healed, plain))  # really the other cells
    # a later unhealed-only run in the same folder: its study has one cell per (method, budget), the unhealed one
    only = SweepConfig(base=base, methods=("last",), budgets=(1, 2))
    execute_sweep(only, out, registry)
    meta, cells = load_sweep(out, config=only)
    study = summarize(meta, cells, allocation="last")
    assert [(c.method, c.budget) for c in study.cells] == [("last", 1), ("last", 2)]
    assert [c.perplexity for c in study.cells] == [{k: v.perplexity for k, v in c.perplexity.items()} for c in plain]
    with pytest.raises(ConfigError, match="--healers none,linear"):
        execute_sweep(SweepConfig(base=replace(base, heal="linear"), methods=("last",), budgets=(1,)), out, registry)
