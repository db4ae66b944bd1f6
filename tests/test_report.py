"""Study report helpers: tables, winners and the verdict, on hand-made results."""

import json

import pytest

from lorp.errors import ConfigError
from lorp.report import load_studies, perplexity_markdown, verdict, winners


def cell(method, budget, ppl, acc=None):
    c = {"method": method, "budget": budget, "pruned": list(range(1, budget + 1)), "perplexity": {"a": ppl, "b": ppl},
         "mean_perplexity": ppl, "parameters": 10}
    if acc is not None:
        c["zero_shot"], c["zero_shot_average"] = {"t": acc}, acc
    return c


def study(name, cells, rls=0.8):
    return {"model": {"name": name, "model_type": "llama"}, "num_blocks": 12, "rls": rls, "k": 3, "config": {},
            "dense": {"perplexity": {"a": 10.0, "b": 10.0}, "mean_perplexity": 10.0, "zero_shot": {"t": 0.6}, "parameters": 1e8,
                      "zero_shot_average": 0.6}, "cells": cells}


def test_winners_pick_lowest_perplexity_and_highest_accuracy_per_budget():
    r = study("m", [cell("lorp", 2, 20.0, 0.5), cell("shortgpt", 2, 15.0, 0.55), cell("streamline", 2, 30.0, 0.4),
                    cell("lorp", 4, 40.0), cell("shortgpt", 4, 50.0), cell("angular", 4, 40.0)])
    w = winners(r)
    assert [x["budget"] for x in w] == [2, 4]
    assert (w[0]["perplexity_winner"], w[0]["perplexity"], w[0]["lorp_perplexity"]) == ("shortgpt", 15.0, 20.0)
    assert (w[0]["accuracy_winner"], w[0]["accuracy"], w[0]["lorp_accuracy"]) == ("shortgpt", 0.55, 0.5)
    assert w[1]["perplexity_winner"] == "lorp, angular" and w[1]["accuracy_winner"] is None  # ties: all named
    table = perplexity_markdown(r)
    assert "| shortgpt | 2 | 15.0 | 15.0 | **15.0** |" in table and "| lorp | 4 | 40.0 | 40.0 | **40.0** |" in table


@pytest.mark.parametrize("lorp_ppl, lorp_acc, expected", [
    (5.0, 0.9, "claim holds on these models"),
    (50.0, 0.1, "claim does not hold"),
    (5.0, 0.1, "holds only in part"),
])
def test_verdict_states_the_outcome_whichever_way_it_falls(lorp_ppl, lorp_acc, expected):
    r = study("m", [cell("lorp", 2, lorp_ppl, lorp_acc), cell("shortgpt", 2, 10.0, 0.5),
                    cell("streamline", 2, 12.0, 0.4), cell("random", 2, 1.0, 0.2)])
    text = verdict({"m": r})
    assert expected in text
    assert f"in {int(lorp_ppl < 10)} of 1 (model, budget) settings" in text
    assert "best of all methods compared in 0" in text  # random is best on perplexity here


def test_verdict_without_baselines_says_it_cannot_test():
    assert "cannot be tested" in verdict({"m": study("m", [cell("lorp", 2, 5.0)])})


def test_load_studies_reads_study_reports_and_refuses_missing_ones(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(study("a", [])))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text("{}")  # not a study report: skipped
    assert list(load_studies(tmp_path)) == ["a"]
    with pytest.raises(ConfigError, match=r"no study report for \['b'\]"):
        load_studies(tmp_path, ["b"])
    with pytest.raises(ConfigError, match="no study reports under"):
        load_studies(tmp_path / "old")
