"""Run seeds choose the calibration draw: per-seed S and picks, shared evaluations, the sensitivity report."""

import ast
import json
from dataclasses import replace

import numpy as np
import pytest

from lorp.errors import ConfigError
from lorp.model.data import calibration_samples, load_corpus
from lorp.model.models import load_model
from lorp.plugins.registry import load_registry
from lorp.run.pipeline import PruneConfig
from lorp.run.study_records import StudyResult, SweepRecord
from lorp.run.sweep import SweepConfig, execute_sweep, plan_cells
from lorp.store.cache import write_checked_json
from lorp.study.load import load_sweep, summarize
from lorp.study.parameters import study_config
from lorp.study.sensitivity import (ONE_SEED, jaccard, max_abs_delta, mean_pairwise_jaccard, sensitivity_markdown,
                                    stability)
from lorp.testing import make_tiny_model_folder

METHODS = ("lorp", "sleb", "random", "last")


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """One tiny-model sweep with seeds (0, 1) and a single-seed sweep with ``base.seed = 1``, sharing a cache."""
    tmp = tmp_path_factory.mktemp("seeds")
    mp = pytest.MonkeyPatch()
    mp.setenv("LORP_CACHE_DIR", str(tmp / "cache"))
    folder, text = make_tiny_model_folder(tmp / "inputs", num_blocks=6)
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False, sleb_samples=2)
    both = execute_sweep(SweepConfig(base=base, methods=METHODS, budgets=(1, 2), seeds=(0, 1)), tmp / "both")
    one = execute_sweep(SweepConfig(base=replace(base, seed=1), methods=METHODS, budgets=(1, 2)), tmp / "one")
    yield base, tmp, both, one
    mp.undo()


def test_two_seeds_draw_different_calibration_samples_and_s(two_seeds):
    base, _, both, _ = two_seeds
    loaded = load_model(base.model)
    corpus = load_corpus(base.calibration, load_registry())
    draws = [calibration_samples(loaded.tokenizer, corpus, base.num_samples, base.seq_len, s) for s in (0, 1)]
    assert not np.array_equal(draws[0].numpy(), draws[1].numpy())
    record = both.record
    assert set(record.seed_calibration) == {"1"} and record.config["calibration_per_seed"]
    s0, s1 = record.context.similarity, record.seed_calibration["1"]["similarity"]
    assert s0.shape == s1.shape == (6, 6) and max_abs_delta([s0, s1]) > 0
    assert record.context.calibration["seed"] == 0 and record.seed_calibration["1"]["calibration"]["seed"] == 1


def test_a_seeds_cells_equal_a_single_seed_sweep_with_that_seed(two_seeds):
    _, _, both, one = two_seeds
    np.testing.assert_array_equal(both.record.seed_calibration["1"]["similarity"], one.record.context.similarity)
    seed1 = {(c.method, c.budget): c for c in both.cells if c.spec.seed == 1}
    assert len(seed1) == len(one.cells) == len(METHODS) * 2
    for c in one.cells:
        other = seed1[(c.method, c.budget)]
        assert other.pruned == c.pruned, c.spec.name
        assert other.selection.rls == c.selection.rls and other.selection.k == c.selection.k
        # same removed set, same fixed evaluation (the dense-state restart point may differ: float rounding)
        assert other.mean_perplexity() == pytest.approx(c.mean_perplexity(), rel=1e-5)


def test_identical_removed_sets_across_seeds_are_evaluated_once(two_seeds):
    _, _, both, _ = two_seeds
    distinct = {tuple(c.pruned) for c in both.cells}
    assert both.stats.evaluations_computed == len(distinct)
    assert both.stats.evaluations_reused == len(both.cells) - len(distinct)
    last = [c for c in both.cells if c.method == "last" and c.budget == 2]
    assert len(last) == 2 and last[0].pruned == last[1].pruned and sum(c.evaluation_reused for c in last) >= 1


def test_zero_shot_items_are_drawn_with_the_first_seed_for_every_seed():
    base = PruneConfig(model="x", seed=7, zero_shot_tasks=("arc_easy",), zero_shot_limit=5)
    specs = plan_cells(SweepConfig(base=base, methods=("lorp",), budgets=(2,), detail_budgets=(2,), seeds=(3, 4)))
    assert [s.seed for s in specs] == [3, 4]
    assert {s.evaluation.zero_shot_seed for s in specs} == {3}
    assert specs[0].evaluation == specs[1].evaluation  # so the evaluation key does not depend on the seed


def test_seed_methods_run_at_every_seed_the_others_at_the_first(tmp_path):
    base = PruneConfig(model="x", seed=7)
    config = SweepConfig(base=base, methods=("lorp", "sleb", "last"), budgets=(2, 3), seeds=(3, 4, 5),
                         seed_methods=("lorp", "last"))
    specs = plan_cells(config)
    assert [(s.method, s.budget, s.seed) for s in specs if s.method == "sleb"] == [("sleb", 2, 3), ("sleb", 3, 3)]
    assert len([s for s in specs if s.method == "lorp"]) == 6 and config.seeds_of("last") == (3, 4, 5)
    assert plan_cells(replace(config, seed_methods=None)) == plan_cells(replace(config, seed_methods=("lorp", "sleb",
                                                                                                      "last")))
    with pytest.raises(ConfigError, match=r"seed methods \['shortgpt'\] are not among the methods"):
        execute_sweep(replace(config, base=PruneConfig(model="smollm2-135m"), seed_methods=("shortgpt",)), tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_study_summary_and_sensitivity_report_of_a_two_seed_sweep(two_seeds):
    _, tmp, both, _ = two_seeds
    record, cells = load_sweep(tmp / "both")
    study = summarize(record, cells)
    # the tables read the first seed's cells; the other seed's are kept apart for the sensitivity report
    assert {c.seed for c in study.cells} == {0} and {c.seed for c in study.seed_cells} == {1}
    assert len(study.all_cells) == len(cells)
    assert list(study.seeds) == ["0", "1"] and study.seeds["1"]["rls"] is not None
    again = StudyResult.from_json(json.loads(json.dumps(study.to_json())))
    text = sensitivity_markdown(again)
    assert "max |ΔS| across seeds (vs seed 0)" in text and "| last | 2 |" in text
    rows = {(r["method"], r["budget"]): r for r in stability(again)}
    assert rows[("last", 2)]["jaccard"] == 1.0 and rows[("last", 2)]["distinct"] == 1


def test_study_config_passes_seeds():
    from lorp.study.runner import notebook_parameters

    p = {name: ast.literal_eval(spec["default"]) for name, spec in notebook_parameters().items()}
    assert study_config(p).seeds == ()
    assert study_config({**p, "seeds": "0, 1,2"}).seeds == (0, 1, 2)
    assert study_config(p).seed_methods is None  # empty: every method at every seed
    # a filter on the compared methods, in their order; names not compared are skipped
    assert study_config({**p, "seed_methods": "shortgpt,lorp,nope"}).seed_methods == ("lorp", "shortgpt")


def test_older_sweep_cells_of_extra_seeds_are_recomputed(two_seeds):
    """A sweep written before seeds drew calibration selected every seed on ``seed``'s S: its other seeds' cells
    are recomputed, its own seed's cells are kept."""
    base, tmp, both, _ = two_seeds
    import shutil

    old = tmp / "old"
    shutil.copytree(tmp / "both", old)
    raw = json.loads((old / "sweep.json").read_text())
    raw.pop("seed_calibration")
    raw["config"].pop("calibration_per_seed")
    write_checked_json(old / "sweep.json", {k: v for k, v in raw.items() if k != "sha256"})
    stamps = {p.name: p.stat().st_mtime_ns for p in (old / "cells").iterdir()}
    run = execute_sweep(SweepConfig(base=base, methods=METHODS, budgets=(1, 2), seeds=(0, 1)), old)
    after = {p.name: p.stat().st_mtime_ns for p in (old / "cells").iterdir()}
    assert set(after) == set(stamps)
    assert all(after[n] == stamps[n] for n in after if n.endswith("-s0.json"))
    assert all(after[n] != stamps[n] for n in after if n.endswith("-s1.json"))
    assert set(run.record.seed_calibration) == {"1"}
    assert run.stats.evaluations_computed == 0  # every removed set was evaluated before


# -- the report's arithmetic on a hand-made study -----------------------------------------------------------------
def _cell(method, budget, seed, pruned, ppl):
    return {"method": method, "budget": budget, "seed": seed, "pruned": pruned, "perplexity": {"a": ppl},
            "mean_perplexity": ppl, "parameters": 10}


def _study(seeds):
    s0 = np.eye(3)
    s1 = s0.copy()
    s1[0, 1] = s1[1, 0] = 0.25
    s2 = s0.copy()
    s2[2, 1] = s2[1, 2] = -0.5
    cells = [_cell("lorp", 2, 0, [1, 2], 10.0), _cell("lorp", 2, 1, [1, 3], 14.0), _cell("lorp", 2, 2, [4, 5], 12.0),
             _cell("last", 2, 0, [4, 5], 20.0), _cell("last", 2, 1, [4, 5], 20.0), _cell("last", 2, 2, [4, 5], 20.0)]
    per_seed = {str(s): {"similarity": m.tolist(), "calibration": {"num_tokens": 32, "seed": s}, "rls": 0.5 + s,
                         "k": 2 + s} for s, m in zip((0, 1, 2), (s0, s1, s2))}
    return {"model": {"name": "hand"}, "num_blocks": 6, "rls": 0.5, "k": 2, "config": {"seeds": [0, 1, 2]},
            "dense": {"perplexity": {"a": 5.0}, "mean_perplexity": 5.0, "parameters": 100}, "cells": cells,
            **({"seeds": per_seed} if seeds else {})}


def test_jaccard_and_spread_by_hand():
    assert jaccard([1, 2], [1, 3]) == pytest.approx(1 / 3) and jaccard([], []) == 1.0
    # pairs: {1,2}/{1,3} = 1/3, {1,2}/{4,5} = 0, {1,3}/{4,5} = 0 -> mean 1/9
    assert mean_pairwise_jaccard([[1, 2], [1, 3], [4, 5]]) == pytest.approx(1 / 9)
    assert mean_pairwise_jaccard([[1, 2]]) == 1.0
    rows = {(r["method"], r["budget"]): r for r in stability(StudyResult.from_json(_study(True)))}
    lorp = rows[("lorp", 2)]
    assert lorp["picks"] == {0: [1, 2], 1: [1, 3], 2: [4, 5]} and lorp["distinct"] == 3
    assert lorp["jaccard"] == pytest.approx(1 / 9)
    assert (lorp["ppl_mean"], lorp["ppl_min"], lorp["ppl_max"]) == (12.0, 10.0, 14.0)
    assert rows[("last", 2)]["jaccard"] == 1.0 and rows[("last", 2)]["ppl_min"] == rows[("last", 2)]["ppl_max"]
    text = sensitivity_markdown(StudyResult.from_json(_study(True)))
    assert "**max |ΔS| across seeds (vs seed 0)**: 0.5000" in text
    assert "| 1 | 32 | 0.2500 | 1.500 | 3 |" in text
    assert "| lorp | 2 | 0: 1 2; 1: 1 3; 2: 4 5 | 0.11 | 3 | 12.00 | 10.00–14.00 |" in text


def test_old_results_load_and_say_one_seed():
    old = StudyResult.from_json(_study(False))
    assert old.seeds == {}
    assert sensitivity_markdown(old) == ONE_SEED
    assert stability(old) == []


def test_old_sweep_records_load_without_seed_calibration(two_seeds):
    _, _, both, _ = two_seeds
    raw = both.record.to_json()
    raw.pop("seed_calibration")
    assert SweepRecord.from_json(raw).seed_calibration == {}
