"""The one-pass sweep: one calibration forward pass for all cells, resume without recomputation."""

import json

import pytest

import lorp.run.pipeline
import lorp.run.sweep
from lorp.errors import ConfigError, UnknownNameError
from lorp.run.pipeline import PruneConfig
from lorp.run.records import CellResult
from lorp.run.study_records import SweepRecord
from lorp.run.sweep import SweepConfig, run_sweep
from lorp.testing import make_tiny_model_folder


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False, sleb_samples=2)
    return base, tmp_path / "sweep"


@pytest.fixture
def capture_calls(monkeypatch):
    calls = []
    real = lorp.run.pipeline.capture_similarities

    def counting(model, ids, metrics, **kw):
        result = real(model, ids, metrics, **kw)
        calls.append((sorted(metrics), result.forward_passes))
        return result

    monkeypatch.setattr(lorp.run.pipeline, "capture_similarities", counting)
    return calls


def test_two_methods_two_budgets_take_one_calibration_pass(tiny_run, capture_calls):
    base, out = tiny_run
    rows = run_sweep(SweepConfig(base=base, methods=("lorp", "shortgpt"), budgets=(1, 2)), out)
    assert capture_calls == [(["cosine", "stream-cosine"], 4)]  # one pass: 4 sequences, batch size 1
    cells = {(r["method"], r["budget"]) for r in rows}
    assert cells == {("dense", 0), ("lorp", 1), ("lorp", 2), ("shortgpt", 1), ("shortgpt", 2)}
    for r in rows:
        assert r["perplexity"] > 1 and r["tokens"] == 8 * 7
        n_pruned = len(r["pruned"].split()) if r["pruned"] else 0
        assert n_pruned == r["budget"]
    assert (out / "table.csv").read_text().splitlines()[0] == "method,budget,corpus,perplexity,tokens,parameters,pruned"
    dense_params = next(r["parameters"] for r in rows if r["method"] == "dense")
    assert all(r["parameters"] < dense_params for r in rows if r["budget"])


def test_resumed_sweep_recomputes_nothing(tiny_run, capture_calls, monkeypatch):
    base, out = tiny_run
    config = SweepConfig(base=base, methods=("lorp", "random"), budgets=(1, 2))
    first = run_sweep(config, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every cell was finished")

    monkeypatch.setattr(lorp.model.models, "load_model", no_model)
    assert run_sweep(config, out) == first
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps
    assert len(capture_calls) == 1


def test_interrupted_sweep_finishes_only_the_missing_cells(tiny_run, capture_calls):
    base, out = tiny_run
    config = SweepConfig(base=base, methods=("lorp", "last"), budgets=(1, 2))
    run_sweep(config, out)
    (out / "cells" / "last-b2-s0.json").unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    run_sweep(config, out)
    assert len(capture_calls) == 1  # the calibration pass came from the disk cache
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    assert set(after) == set(stamps) | {"last-b2-s0.json"} and all(after[k] == v for k, v in stamps.items())


def test_sleb_in_a_sweep_reports_its_forward_passes(tiny_run):
    base, out = tiny_run
    run_sweep(SweepConfig(base=base, methods=("sleb",), budgets=(1, 2)), out)
    cell = json.loads((out / "cells" / "sleb-b2-s0.json").read_text())
    assert len(cell["pruned"]) == 2 and cell["nll_passes"]["full"] >= 1
    assert json.loads((out / "sweep.json").read_text())["attribution"] is None  # the profile only when asked for


def test_other_settings_in_the_same_folder_are_refused(tiny_run):
    base, out = tiny_run
    run_sweep(SweepConfig(base=base, methods=("last",), budgets=(1,)), out)
    changed = SweepConfig(base=PruneConfig(**{**base.__dict__, "seed": 1}), methods=("last",), budgets=(1,))
    with pytest.raises(ConfigError, match="holds a sweep with other settings \(differing: seed\)"):
        run_sweep(changed, out)


def test_bad_sweep_input(tiny_run):
    base, out = tiny_run
    with pytest.raises(UnknownNameError, match="did you mean 'shortgpt'"):
        run_sweep(SweepConfig(base=base, methods=("shortgtp",), budgets=(1,)), out)
    with pytest.raises(ConfigError, match="budgets must be whole numbers"):
        run_sweep(SweepConfig(base=base, methods=("last",), budgets=(0,)), out)
    assert not out.exists()


def test_detail_budget_adds_speed_to_chosen_methods_and_a_rerun_completes_missing_details(tiny_run):
    base, out = tiny_run
    plain = SweepConfig(base=base, methods=("lorp", "last"), budgets=(1, 2))
    run_sweep(plain, out)
    assert CellResult.from_json(json.loads((out / "cells" / "last-b2-s0.json").read_text())).evaluation.speed is None
    detailed = SweepConfig(base=base, methods=("lorp", "last"), budgets=(1, 2), detail_budgets=(2,),
                           detail_methods=("last",), decode_tokens=3)
    run_sweep(detailed, out)  # same shared settings: cells are reused, the missing details are added
    meta = SweepRecord.from_json(json.loads((out / "sweep.json").read_text()))

    def cell(name):
        return CellResult.from_json(json.loads((out / "cells" / f"{name}.json").read_text())).evaluation

    assert meta.dense.speed.tokens_per_s > 0 and cell("last-b2-s0").speed.tokens_per_s > 0
    assert meta.dense_flops_per_token > cell("last-b2-s0").speed.flops_per_token
    assert cell("lorp-b2-s0").speed is None  # not a detail method
    assert cell("last-b1-s0").speed is None  # not the detail budget
    with pytest.raises(ConfigError, match=r"detail budgets \[3\] must be among the budgets"):
        run_sweep(SweepConfig(base=base, methods=("last",), budgets=(1, 2), detail_budgets=(3,)), out)
    with pytest.raises(ConfigError, match="decode_tokens must be 0"):
        run_sweep(SweepConfig(base=base, methods=("last",), budgets=(1,), decode_tokens=1), out)
