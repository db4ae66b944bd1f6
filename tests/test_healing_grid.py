"""The study's selection × healing grid: healed removed sets cached and shared, the gap closed, the three answers."""

import math

import pytest

import lorp.run.worker
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.healed_sets import heal_sets
from lorp.run.pipeline import PruneConfig
from lorp.run.study_records import StudyResult
from lorp.run.sweep import SweepConfig, execute_sweep
from lorp.study.costs import stage_seconds
from lorp.study.confirmation import confirm_verdict_pairs
from lorp.errors import ConfigError
from lorp.study.healing import (add_healing, best_healed_baseline, gap_closed, healing_markdown, healing_rows,
                                healing_summary, healed_answer, same_tasks_average)
from lorp.study.formatting import fmt_times
from lorp.study.parameters import evidence_settings, healed_zero_shot_tasks
from lorp.study.load import load_sweep, summarize
from lorp.testing import make_tiny_model_folder


def test_the_unhealed_accuracy_is_averaged_over_the_tasks_scored_after_healing():
    unhealed = StudyResult.from_json({"model": {}, "num_blocks": 4, "rls": None, "k": None, "config": {},
                                      "dense": {"perplexity": {"a": 1.0}, "mean_perplexity": 1.0, "parameters": 1},
                                      "cells": [{"method": "m", "budget": 1, "pruned": [1], "perplexity": {"a": 2.0},
                                                 "mean_perplexity": 2.0, "parameters": 1,
                                                 "zero_shot": {"arc_easy": 0.5, "hellaswag": 0.3, "copa": 0.6},
                                                 "zero_shot_average": 1.4 / 3},
                                                {"method": "m", "budget": 1, "pruned": [1], "perplexity": {"a": 2.0},
                                                 "mean_perplexity": 2.0, "parameters": 1,
                                                 "zero_shot": {"arc_easy": 0.4, "copa": 0.7},
                                                 "zero_shot_average": 0.55}]}).cells
    assert same_tasks_average(unhealed[0], unhealed[1]) == pytest.approx((0.5 + 0.6) / 2)
    assert same_tasks_average(None, unhealed[1]) is None
    assert same_tasks_average(unhealed[1], unhealed[0]) is None  # hellaswag was not scored unhealed: no pairing


def test_healed_zero_shot_tasks_are_among_the_study_s():
    study = "arc_easy,hellaswag,copa"
    assert healed_zero_shot_tasks("", study) == ("arc_easy", "hellaswag", "copa")
    assert healed_zero_shot_tasks("copa, arc_easy", study) == ("arc_easy", "copa")  # the study's order
    assert healed_zero_shot_tasks("None", study) == ()
    with pytest.raises(ConfigError, match="healed_zero_shot_tasks piqa not among zero_shot_tasks"):
        healed_zero_shot_tasks("arc_easy,piqa", study)
    assert evidence_settings({"healed_zero_shot_tasks": "copa"})["healed_zero_shot_tasks"] == ("copa",)


def test_gap_closed_by_hand():
    assert gap_closed(10.0, 1000.0, 100.0) == pytest.approx(0.5)  # log 10 of a log 100 gap
    assert gap_closed(10.0, 1000.0, 10.0) == pytest.approx(1.0)
    assert gap_closed(10.0, 100.0, 200.0) == pytest.approx(-math.log(2) / math.log(10))
    assert math.isnan(gap_closed(10.0, 10.0, 5.0))


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=8, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False)
    config = SweepConfig(base=base, methods=("lorp", "shortgpt", "last"), budgets=(2,))
    registry = load_registry(PluginSettings(autoload=False, plugin_dirs=()))
    execute_sweep(config, tmp_path / "sweep", registry)
    return config, registry, tmp_path / "sweep"


def test_heal_sets_caches_each_set_and_healer_once(tiny_study, monkeypatch):
    config, registry, work = tiny_study
    first = heal_sets(config, work, [(1, 2), (2, 1), (3, 4)], ["linear"], registry)
    assert set(first) == {((1, 2), "linear"), ((3, 4), "linear")}  # (2, 1) is the same set as (1, 2)
    ev = first[(1, 2), "linear"]
    assert ev.healing["healer"] == "linear" and ev.healing["calibration_seed"] == 0 and "heal_fit" in ev.stage_seconds
    assert len(list((work / "healing").glob("*.json"))) == 2

    def refuse(*_a, **_k):
        raise AssertionError("a cached healed set was computed again")
    monkeypatch.setattr(lorp.run.worker.CellWorker, "evaluate_healed", refuse)
    again = heal_sets(config, work, [(1, 2)], ["linear"], registry)
    assert again[(1, 2), "linear"] == ev


def test_the_grid_answers_with_paired_intervals(tiny_study):
    config, registry, work = tiny_study
    meta, cells = load_sweep(work, config=config)
    results = summarize(meta, cells, "lorp")
    assert add_healing(results, config, work, "none", registry) is None and results.healing is None
    record = add_healing(results, config, work, "none,linear,sequential", registry)
    assert record["budget"] == 2 and record["healers"] == ["linear", "sequential"]
    assert {(e["role"], e["healer"]) for e in record["cells"]} == {(role, h) for role in ("lorp", "best baseline")
                                                                   for h in ("linear", "sequential")}
    back = StudyResult.from_json(results.to_json())
    assert back.healing == results.healing
    rows = healing_rows(back)
    plain = {c.method: c for c in results.cells}
    for row in rows:
        before = plain[row["method"]]
        assert row["unhealed"] == before.mean_perplexity
        assert row["closed"] == pytest.approx(gap_closed(results.dense.mean_perplexity, before.mean_perplexity,
                                                         row["healed"]))
        k = row["vs_unhealed"]
        assert k.ratio == pytest.approx(row["healed"] / row["unhealed"], rel=1e-9)
        assert row["closed_low"] <= row["closed"] <= row["closed_high"]
    lorp_linear = next(r for r in rows if (r["role"], r["healer"]) == ("lorp", "linear"))
    # the best healed baseline: the baseline's form (unhealed or healed) with the lowest held-out calibration NLL
    base_entries = [e for e in record["cells"] if e["role"] == "best baseline"]
    options = [("none", base_entries[0]["holdout_nll_unhealed"])] + [(e["healer"], e["holdout_nll_healed"])
                                                                     for e in base_entries]
    chosen = min(options, key=lambda o: o[1])[0]
    method = base_entries[0]["method"]
    assert lorp_linear["best_healed"] == (f"{method} unhealed" if chosen == "none" else f"{method} + {chosen}")
    reference = plain[method].mean_perplexity if chosen == "none" else next(
        r["healed"] for r in rows if r["role"] == "best baseline" and r["healer"] == chosen)
    assert lorp_linear["vs_best_healed"].ratio == pytest.approx(lorp_linear["healed"] / reference, rel=1e-9)
    for e in record["cells"]:  # a healer never makes a set worse on its held-out calibration rows
        assert e["holdout_nll_healed"] <= e["holdout_nll_unhealed"]
        assert e["kept_maps"] == sum(c != "identity" for c in e["choices"])
    # a healed form worse on calibration than the unhealed one is never the best healed baseline
    worse = StudyResult.from_json(results.to_json())
    for e in worse.healing["cells"]:
        if e["role"] == "best baseline":
            e["holdout_nll_healed"] = e["holdout_nll_unhealed"] + 1.0
    fallback = best_healed_baseline(worse)
    assert fallback["healer"] == "none" and fallback["screening"] == plain[method]
    text = healing_markdown(back)
    assert text.startswith("# Selection × healing at budget 2")
    assert "of lorp's log-perplexity gap to dense" in text and "Ranking with `sequential` on both" in text
    assert "against the best healed baseline" in text and text.count("| lorp | lorp |") == 2
    grid_seconds = stage_seconds(back)["healing grid"]
    assert grid_seconds == pytest.approx(sum(e["evaluation_seconds"] for e in record["cells"])) and grid_seconds > 0
    bare = StudyResult.from_json({**results.to_json(), "healing": None})
    assert "No healing grid" in healing_markdown(bare)
    summary = healing_summary({"tiny": back, "bare": bare})
    row = next(ln for ln in summary.splitlines() if ln.startswith("| tiny | 2 | linear |"))
    assert f"lorp: {lorp_linear['closed']:.2f} [{lorp_linear['closed_low']:.2f}, {lorp_linear['closed_high']:.2f}]" in row
    assert summary.rstrip().endswith("No healing grid: bare.") and "| tiny | 2 | sequential |" in summary


def test_the_healed_verdict_pair_is_scored_on_the_confirmation_windows_with_holm(tiny_study):
    from lorp.evaluate.perplexity_uncertainty import compare_perplexity
    from lorp.evaluate.uncertainty import holm
    from lorp.study.confirmation import ConfirmationRow

    config, registry, work = tiny_study
    meta, cells = load_sweep(work, config=config)
    results = summarize(meta, cells, "lorp")
    confirm_verdict_pairs(results, config, work, 4, registry)
    record = add_healing(results, config, work, "linear,sequential", registry)
    assert record["confirmation_windows"] == 4
    for e in record["cells"]:
        conf = e["confirmation"]
        assert set(conf["window_nll"]) == set(config.base.eval_corpora)
        assert all(len(v) == 4 for v in conf["window_nll"].values())
        if e["kept_maps"] == 0:  # nothing written: the healed model is the unhealed one, on these windows too
            plain = next(c for c in results.confirmation["cells"] if c["method"] == e["method"])
            for corpus, values in conf["window_nll"].items():
                assert values == pytest.approx(plain["window_nll"][corpus], rel=1e-5)
    rows = healing_rows(StudyResult.from_json(results.to_json()))
    best = best_healed_baseline(results)
    mine = [r for r in rows if r["role"] == "lorp"]
    assert [r["healer"] for r in mine] == ["linear", "sequential"]
    for r in mine:
        entry = next(e for e in record["cells"] if e["role"] == "lorp" and e["healer"] == r["healer"])
        by_hand = compare_perplexity(best["confirmation"], ConfirmationRow(entry["confirmation"]))
        assert r["conf_vs_best_healed"].ratio == pytest.approx(by_hand.ratio, rel=1e-12)
        assert r["confirmation_healed"] == entry["confirmation"]["mean_perplexity"]
    assert [r["p_holm"] for r in mine] == pytest.approx(holm([r["conf_vs_best_healed"].p_value for r in mine]))
    assert all(r["decision"] in ("wins", "loses", "undecided") for r in mine)
    text = healing_markdown(results)
    assert text.splitlines()[2].startswith("- On the held-out confirmation windows (4 per corpus), LoRP + `linear`")
    assert "| tiny | 2 | linear |" in healing_summary({"tiny": results}) and "Holm" in healing_summary({"tiny": results})
    # the answer the index and the verdict open with: the Holm-corrected counts over (model, healer) settings
    line = healed_answer({"tiny": results, "twin": results})
    decisions = [r["decision"] for r in mine] * 2
    assert line.startswith("**After healing** (`linear`, `sequential`, fitted on calibration data only)")
    assert (f"worse shown in {decisions.count('loses')} of 4 (model, healer) settings, better shown in "
            f"{decisions.count('wins')}, after Holm's correction") in line
    assert f"{fmt_times(min(r['conf_vs_best_healed'].ratio for r in mine))}×" in line
    assert healed_answer({"bare": StudyResult.from_json({**results.to_json(), "healing": None})}) is None


def test_the_healed_answer_names_where_perplexity_and_accuracy_disagree(monkeypatch):
    import lorp.study.healing as healing
    from lorp.evaluate.perplexity_uncertainty import PerplexityComparison

    k = PerplexityComparison(difference=math.log(1.5), low=math.log(1.2), high=math.log(1.9), ratio=1.5, ratio_low=1.2,
                             ratio_high=1.9, level=0.95, windows=16, df=15.0, p_value=0.01)
    rows = [{"role": "lorp", "healer": "linear", "method": "lorp", "unhealed": 90.0, "healed": 80.0,
             "accuracy_unhealed": 0.40, "accuracy_healed": 0.42, "conf_vs_best_healed": k, "decision": "loses"},
            {"role": "best baseline", "healer": "linear", "method": "shortgpt", "unhealed": 60.0, "healed": 50.0,
             "accuracy_unhealed": 0.483, "accuracy_healed": 0.413, "conf_vs_best_healed": None, "decision": None}]
    monkeypatch.setattr(healing, "healing_rows", lambda r: rows)
    line = healing.healed_answer({"m": object()})
    assert "LoRP's perplexity is 1.50× that baseline's (95 % intervals from 1.20 to 1.90)" in line
    assert "worse shown in 1 of 1 (model, healer) settings, better shown in 0" in line
    assert line.endswith("Perplexity and accuracy can disagree after healing: `linear` lowers shortgpt's perplexity "
                         "on m (60.0 → 50.0) but its zero-shot accuracy falls from 48.3 % to 41.3 %.")


def test_foldable_vs_residual_gives_each_set_s_ratio_with_paired_intervals_and_the_ranking(tiny_study):
    """The grid with linear (foldable) and residual (not): per set, residual-healed over linear-healed with its
    paired interval on both window sets, and the ranking under each healer on the confirmation windows."""
    from lorp.evaluate.perplexity_uncertainty import compare_perplexity
    from lorp.study.confirmation import ConfirmationRow
    from lorp.study.foldability import foldability_markdown, foldability_rows, foldability_summary, healer_kinds
    from lorp.study.healing import healed_cell

    config, registry, work = tiny_study
    meta, cells = load_sweep(work, config=config)
    results = summarize(meta, cells, "lorp")
    confirm_verdict_pairs(results, config, work, 4, registry)
    record = add_healing(results, config, work, "linear,residual", registry)
    assert record["foldable"] == {"linear": True, "residual": False}
    back = StudyResult.from_json(results.to_json())
    assert healer_kinds(back) == (["linear"], ["residual"])
    found = foldability_rows(back)
    entries = {(e["method"], e["healer"]): e for e in record["cells"]}
    assert [x["role"] for x in found["sets"]] == ["lorp", "best baseline"]
    for x in found["sets"]:
        a, b = entries[(x["method"], "linear")], entries[(x["method"], "residual")]
        assert x["screening"].ratio == pytest.approx(b["mean_perplexity"] / a["mean_perplexity"], rel=1e-9)
        assert x["screening"].ratio_low <= x["screening"].ratio <= x["screening"].ratio_high
        by_hand = compare_perplexity(ConfirmationRow(a["confirmation"]), ConfirmationRow(b["confirmation"]))
        assert x["confirmation"].ratio == pytest.approx(by_hand.ratio, rel=1e-12)
        assert x["row_stream"]["healer"] == "residual" and x["row_foldable"]["healer"] == "linear"
    (rank,) = found["ranking"]
    assert rank["windows"] == "confirmation"
    lorp_method = next(x["method"] for x in found["sets"] if x["role"] == "lorp")
    for healer, key in (("linear", "under_foldable"), ("residual", "under_stream")):
        mine = ConfirmationRow(entries[(lorp_method, healer)]["confirmation"])
        base = ConfirmationRow(entries[(rank["baseline"], healer)]["confirmation"])
        assert rank[key].ratio == pytest.approx(mine.mean_perplexity / base.mean_perplexity, rel=1e-9)
    assert rank["changes"] == ((rank["under_foldable"].ratio < 1) != (rank["under_stream"].ratio < 1))
    text = foldability_markdown(back)
    assert text.startswith("\n## Foldable vs residual: what foldability costs")
    assert f"`residual` closes {found['sets'][0]['row_stream']['closed']:.2f}" in text
    assert ("the ranking changes" if rank["changes"] else "the ranking does not change") in text
    summary = foldability_summary({"tiny": back})
    assert "| tiny | confirmation | linear: " in summary and "## Foldable vs residual, per model" in summary
    # a grid of foldable healers only, or one recorded before issue 46, has no such section
    only = StudyResult.from_json({**results.to_json(), "healing": {**record, "foldable": {"linear": True,
                                                                                           "residual": True}}})
    assert foldability_markdown(only) == "" and foldability_summary({"x": only}) == ""
    old = StudyResult.from_json({**results.to_json(), "healing": {k: v for k, v in record.items() if k != "foldable"}})
    assert healer_kinds(old) == ([], []) and healed_cell(record["cells"][0]).method == record["cells"][0]["method"]
