"""lorp.study.ablation: the ablation table, the share of LoRP's gap recovered, the selector's outcomes and win rate."""

import math

import pytest

from lorp.errors import ConfigError
from lorp.evaluate.accuracy_uncertainty import wilson_interval
from lorp.run.study_records import StudyResult
from lorp.study.ablation import (ablation_config, ablation_markdown, ablation_rows, names, recovered_share,
                                 recovers_most, seed_pattern, selector_markdown, selector_outcomes, summary_markdown,
                                 win_rate)

NOISE = [0.3, -0.3, 0.2, -0.2, 0.1, -0.1]  # the same per-window noise everywhere: paired intervals are points


def cell(method, budget, ppl, seed=0, pruned=None, noise=NOISE, tokens=4):
    return {"method": method, "budget": budget, "seed": seed, "pruned": pruned or list(range(1, budget + 1)),
            "perplexity": {"a": ppl, "b": ppl}, "mean_perplexity": ppl, "parameters": 10,
            "window_nll": {k: [(math.log(ppl) + e) * tokens for e in noise] for k in ("a", "b")},
            "window_tokens": {"a": tokens, "b": tokens}}


def study(cells, seed_cells=()):
    return StudyResult.from_json({
        "model": {"name": "m"}, "num_blocks": 12, "rls": .8, "k": 3, "config": {},
        "dense": {"perplexity": {"a": 10.0, "b": 10.0}, "mean_perplexity": 10.0, "parameters": 100},
        "cells": cells, "seed_cells": list(seed_cells)})


def test_recovered_share_by_hand():
    # LoRP 1000, best 10: a variant at 100 closes half the log gap, 10 all of it, 1 one and a half, 10000 -50 %
    assert recovered_share(1000, 100, 10) == pytest.approx(.5)
    assert recovered_share(1000, 10, 10) == pytest.approx(1.0)
    assert recovered_share(1000, 1, 10) == pytest.approx(1.5)
    assert recovered_share(1000, 10000, 10) == pytest.approx(-.5)
    assert recovered_share(10, 5, 20) is None  # LoRP already beats the baseline: no gap
    assert recovered_share(10, 0.0, 5) is None


def test_ablation_rows_and_which_variant_recovers_most():
    r = study([cell("lorp", 2, 1000.0, pruned=[1, 9]), cell("shortgpt", 2, 10.0), cell("streamline", 2, 20.0),
               cell("lorp-k2", 2, 100.0, pruned=[3, 4]), cell("lorp-bi", 2, 1000.0, pruned=[1, 9]),
               cell("lorp", 4, 100.0), cell("shortgpt", 4, 10.0), cell("lorp-k2", 4, 10.0), cell("lorp-bi", 4, 0.1)])
    rows = ablation_rows(r, ["lorp-k2", "lorp-bi"], ["shortgpt", "streamline"])
    assert [(x["method"], x["budget"]) for x in rows] == [("lorp-k2", 2), ("lorp-k2", 4), ("lorp-bi", 2),
                                                          ("lorp-bi", 4)]
    k2 = rows[0]
    assert k2["best_baseline"] == "shortgpt" and k2["recovered"] == pytest.approx(.5)
    assert k2["vs_lorp"]["ratio"] == pytest.approx(.1) and k2["vs_lorp"]["decision"] == "wins"
    assert k2["vs_best"]["ratio"] == pytest.approx(10.0) and k2["vs_best"]["decision"] == "loses"
    assert rows[2]["same_as_lorp"] and rows[2]["recovered"] == pytest.approx(0.0)
    assert rows[2]["vs_lorp"]["decision"] == "undecided"  # identical windows: interval [1, 1]
    assert rows[3]["recovered"] == pytest.approx(3.0)  # (log 100 - log .1) / (log 100 - log 10)
    # pooled over both budgets (gaps log 100 and log 10, in log10 units 2 + 1 = 3): lorp-k2 (1 + 1) / 3,
    # lorp-bi (0 + 3) / 3 -- the mean of per-budget shares would let a tiny gap dominate
    top = recovers_most(rows)
    assert top == {"method": "lorp-bi", "pooled_recovered": pytest.approx(1.0), "budgets": 2, "wins_vs_lorp": 1}
    assert recovers_most(rows[:2])["pooled_recovered"] == pytest.approx(2 / 3)
    assert recovered_share(50.01, 45.0, 50.0) > 100 and recovered_share(100, float("nan"), 10) is None
    text = ablation_markdown(rows, {"lorp-bi": "Block Influence inside clusters"})
    assert "| lorp-k2 | 2 | 100.0 | 0.10× [0.10, 0.10] | 10.0× [" in text and "(shortgpt) | 50 % | 3 4 |" in text
    assert "1 9 (LoRP's)" in text and "**Recovers most: `lorp-bi`**, 100 %" in text
    assert "No share of a gap to recover" in ablation_markdown([{**rows[0], "recovered": None}])
    assert "- `lorp-bi`: Block Influence inside clusters" in text


def test_selector_wins_only_beyond_intervals_at_every_seed_and_the_seed_spread():
    # budget 2: the selector (5, 6, 7 over seeds) beats shortgpt (10, 11, 12) and sleb (20, seed 0 only) everywhere
    # budget 4: it beats them at seeds 0 and 1 but not at seed 2 (equal to shortgpt): undecided
    # budget 6: shortgpt beats it at every seed: a loss
    first = [cell("span-bi-nll", 2, 5.0), cell("shortgpt", 2, 10.0), cell("sleb", 2, 20.0),
             cell("span-bi-nll", 4, 5.0), cell("shortgpt", 4, 10.0), cell("sleb", 4, 20.0),
             cell("span-bi-nll", 6, 50.0), cell("shortgpt", 6, 10.0), cell("sleb", 6, 60.0)]
    more = [cell("span-bi-nll", 2, 6.0, 1), cell("shortgpt", 2, 11.0, 1), cell("span-bi-nll", 2, 7.0, 2),
            cell("shortgpt", 2, 12.0, 2),
            cell("span-bi-nll", 4, 6.0, 1), cell("shortgpt", 4, 11.0, 1), cell("span-bi-nll", 4, 12.0, 2),
            cell("shortgpt", 4, 12.0, 2),
            cell("span-bi-nll", 6, 50.0, 1), cell("shortgpt", 6, 10.0, 1), cell("span-bi-nll", 6, 50.0, 2),
            cell("shortgpt", 6, 10.0, 2)]
    out = selector_outcomes(study(first, more), "span-bi-nll", ["shortgpt", "sleb"])
    assert [(o["budget"], o["outcome"]) for o in out] == [(2, "wins"), (4, "undecided"), (6, "loses")]
    b2 = out[0]
    assert [s["seed"] for s in b2["seeds"]] == [0, 1, 2] and all(s["beats_all"] for s in b2["seeds"])
    assert b2["spread"] == {"selector_worst": 7.0, "baselines_best": {"shortgpt": 10.0, "sleb": 20.0}}
    assert b2["seeds"][2]["best_baseline"] == "shortgpt" and b2["seeds"][2]["vs_best"]["ratio"] == pytest.approx(7 / 12)
    assert [s["beats_all"] for s in out[1]["seeds"]] == [True, True, False] and not out[1]["beyond_spread"]
    w = win_rate(out)
    assert (w["wins"], w["losses"], w["undecided"], w["settings"]) == (1, 1, 1, 3)
    assert (w["low"], w["high"]) == pytest.approx(wilson_interval(1, 3)) and w["rate"] == pytest.approx(1 / 3)
    assert seed_pattern(out[0]) == "beats every baseline at seeds 0, 1, 2"
    assert seed_pattern(out[1]) == "beats every baseline at seeds 0, 1; same perplexity as the best baseline at seed 2"
    text = selector_markdown("span-bi-nll", out)
    assert "| 2 | **wins** | 7.0 | 10.0 (shortgpt) | yes |" in text and "Wins in 1 of 3 budget(s)" in text


def test_summary_across_models_counts_every_setting():
    rec = {"recovers_most": {"method": "lorp-bi", "pooled_recovered": .4, "budgets": 3, "wins_vs_lorp": 2},
           "selectors": {"span-bi-nll": {"outcomes": [{"outcome": "wins"}, {"outcome": "loses"}]}}}
    text = summary_markdown({"a": rec, "b": {**rec, "recovers_most": None}})
    assert "| a | `lorp-bi` | 40 % | 2 of 3 |" in text and "| b | – | – | – |" in text
    assert "| **all** | **2** | 2 | 0 | **50 %**" in text and "misses it (2 of 4)" in text


def test_names_and_config_checks():
    assert names(" lorp-k2, ,lorp-bi,lorp-k2") == ("lorp-k2", "lorp-bi")
    params = {"model": "smollm2-135m", "methods": "lorp,shortgpt,sleb", "budgets": "2,4", "detail_budget": 0,
              "detail_methods": "", "calibration": "lambada", "num_samples": 4, "seq_len": 16, "eval_corpora": "ptb",
              "eval_seq_len": 16, "eval_tokens": 64, "zero_shot_tasks": "", "zero_shot_limit": 4, "decode_tokens": 0,
              "similarity": "cosine", "clustering": "spectral", "allocation": "lorp", "k": 0, "sleb_samples": 1,
              "seed": 0, "seeds": "0,1", "seed_methods": "lorp,shortgpt", "device": "cpu"}
    from lorp.run.sweep import plan_cells
    from lorp.study.parameters import study_config

    config = ablation_config(params, ["lorp-k2"], ["span-bi-nll"])
    assert config.methods == ("lorp", "shortgpt", "sleb", "lorp-k2", "span-bi-nll")
    assert config.seeds_of("span-bi-nll") == (0, 1) and config.seeds_of("lorp-k2") == (0,)
    assert config.seeds_of("sleb") == (0,) and config.seeds_of("shortgpt") == (0, 1)
    assert config.identity() == study_config(params).identity()  # the study's own sweep folder
    # no detail budget: the ablations run at every budget; with one, at it alone; 'all' or a list as asked
    assert config.budgets_of("lorp-k2") == (2, 4) and config.method_budgets == ()
    detail = ablation_config({**params, "detail_budget": 4}, ["lorp-k2"], ["span-bi-nll"])
    assert detail.budgets_of("lorp-k2") == (4,) and detail.budgets_of("span-bi-nll") == (2, 4)
    assert [(c.method, c.budget) for c in plan_cells(detail) if c.method == "lorp-k2"] == [("lorp-k2", 4)]
    assert ablation_config({**params, "detail_budget": 4, "ablation_budgets": "all"}, ["lorp-k2"], []
                           ).budgets_of("lorp-k2") == (2, 4)
    assert ablation_config({**params, "ablation_budgets": "2"}, ["lorp-k2"], []).budgets_of("lorp-k2") == (2,)
    with pytest.raises(ConfigError, match=r"ablation_budgets '3': each must be one of the budgets \[2, 4\]"):
        ablation_config({**params, "ablation_budgets": "3"}, ["lorp-k2"], [])
    assert detail.identity() == config.identity()  # the same sweep folder whatever the ablations' budgets
    with pytest.raises(ConfigError, match="already among the study's methods"):
        ablation_config(params, ["shortgpt"], [])
    with pytest.raises(ConfigError, match="at least one ablation or selector"):
        ablation_config(params, [], [])
    # the default preset's time cut: our selector at the first run seed only, the study's seeds untouched
    first = ablation_config({**params, "selector_seeds": "first"}, ["lorp-k2"], ["span-bi-nll"])
    assert first.seeds_of("span-bi-nll") == (0,) and first.seeds_of("shortgpt") == (0, 1)
    assert first.identity() == config.identity()
    with pytest.raises(ConfigError, match="selector_seeds must be 'all' .* or 'first' .*, got 'some'"):
        ablation_config({**params, "selector_seeds": "some"}, [], ["span-bi-nll"])


def test_time_of_the_ablation_notebook_per_model():
    from lorp.study.ablation import time_markdown

    text = time_markdown({"a": {"seconds": {"selection": 10.4, "perplexity": 20, "more_data": None, "notebook": 40}},
                          "b": {"seconds": {"selection": 1, "perplexity": 2, "more_data": 3, "notebook": 4}}})
    assert "| selection (ablations and selectors) | 10 | 1 | 11 |" in text
    assert "| larger calibration pass and picks | 0 | 3 | 3 |" in text
    assert "| wall time of the run that wrote this report | 40 | 4 | 44 |" in text
    split = time_markdown({"a": {"seconds": {"ablations_selection": 0.2, "selectors_selection": 9, "ablations_perplexity": 5,
                                             "selectors_perplexity": 1, "notebook": 20}}})
    assert "| selection: selectors (calibration scoring) | 9 | 9 |" in split and "| perplexity: ablations' removed sets | 5 |" in split
    assert time_markdown({}) == ""
