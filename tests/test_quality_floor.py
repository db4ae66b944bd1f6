"""The floors (last, random draws), SLEB at two token counts and the calibration-corpus axis, on hand-made studies."""

import math

import numpy as np
import pytest

from lorp.errors import ConfigError
from lorp.run.screening import FLOOR_SEED_OFFSET, floor_draws
from lorp.run.study_records import StudyResult
from lorp.study.calibration_corpus import (calibration_corpus_markdown, calibration_corpus_summary, corpus_jaccard,
                                           corpus_verdict, rule_jaccard)
from lorp.study.compare import verdict
from lorp.study.explain import reading
from lorp.study.quality_floor import floor_losses, floor_markdown, floor_summary
from lorp.study.sleb_check import sleb_check_markdown

WOBBLE = [0.3, -0.3, 0.2, -0.2, 0.1, -0.1]  # per-window departures from the mean token NLL (sum 0)


def _cell(method, budget, ppl, pruned, shift=WOBBLE, seed=0):
    """A study row whose window w has mean token NLL log(ppl) + shift[w] on both corpora (4 tokens per window)."""
    return {"method": method, "budget": budget, "pruned": pruned, "perplexity": {"a": ppl, "b": ppl},
            "mean_perplexity": ppl, "parameters": 10, "seed": seed,
            "window_nll": {c: [(math.log(ppl) + e) * 4 for e in shift] for c in ("a", "b")},
            "window_tokens": {"a": 4, "b": 4}}


def _study(cells, **extra):
    return StudyResult.from_json({
        "model": {"name": "m", "model_type": "llama", "checkpoint": "M-1B, Q4 GGUF dequantised to float32"},
        "num_blocks": 12, "rls": 0.8, "k": 3, "config": {"detail_budgets": [2]},
        "dense": {"perplexity": {"a": 10.0, "b": 10.0}, "mean_perplexity": 10.0, "parameters": 1e8},
        "cells": cells, **extra})


# -- the random floor -------------------------------------------------------------------------------------------------

def test_floor_draws_are_seeded_uniform_draws_among_the_unprotected_blocks():
    draws = floor_draws(12, 3, 5, seed=7, protected=(0, -1))
    assert len(draws) == 5 and all(len(d) == 3 and list(d) == sorted(d) and not {0, 11} & set(d) for d in draws)
    eligible = list(range(1, 11))
    for i, d in enumerate(draws):  # draw i is numpy's draw with seed + offset + i, nothing else
        expected = np.random.default_rng(7 + FLOOR_SEED_OFFSET + i).choice(eligible, size=3, replace=False)
        assert d == tuple(sorted(int(b) for b in expected))
    assert floor_draws(12, 3, 5, seed=7, protected=(0, -1)) == draws  # reproducible
    assert floor_draws(12, 3, 5, seed=8, protected=(0, -1)) != draws
    # over many draws every eligible block is removed about equally often (uniform: 3/10 of draws each)
    counts = np.bincount([b for d in floor_draws(12, 3, 2000, seed=0, protected=(0, -1)) for b in d], minlength=12)
    assert counts[0] == counts[11] == 0 and np.all(np.abs(counts[1:11] / 2000 - 0.3) < 0.04)
    with pytest.raises(ConfigError, match="only 2 unprotected blocks, fewer than the budget 3"):
        floor_draws(4, 3, 1, seed=0, protected=(0, -1))
    with pytest.raises(ConfigError, match="draws must be a whole number >= 1"):
        floor_draws(12, 3, 0, seed=0)


def _floor(values, budget=2):
    return {"budget": budget, "draws": [{**_cell("random draw", budget, v, [i, i + 1], seed=1000 + i), "draw": i}
                                        for i, v in enumerate(values)]}


def test_every_method_is_placed_against_the_random_draws_and_losses_are_said_in_words():
    cells = [_cell("lorp", 2, 30.0, [1, 2]), _cell("shortgpt", 2, 12.0, [3, 4]), _cell("last", 2, 20.0, [9, 10]),
             _cell("lorp", 4, 50.0, [1, 2, 3, 4]), _cell("last", 4, 60.0, [7, 8, 9, 10])]
    r = _study(cells, random_floor=_floor([10.0, 40.0, 25.0, 50.0, 20.0]))
    assert floor_summary(r) == {"budget": 2, "draws": 5, "median": 25.0, "low": 10.0, "high": 50.0}
    # LoRP (30) sits above the median draw (25) at budget 2; it loses to last at budget 2 (every window 1.5x worse)
    # and beats it at budget 4 (every window 50/60 of last's)
    assert floor_losses(r) == {"`last`": [2], "the random median": [2]}
    md = floor_markdown(r)
    assert "**median 25.0**, range 10.0 to 50.0" in md
    assert "| lorp | 30.0 | 2 of 5 | 1.20× |" in md and "| shortgpt | 12.0 | 4 of 5 | 0.48× |" in md
    assert "| 2 | lorp | 1.50× [1.50, 1.50] | loses |" in md and "| 4 | lorp | 0.83× [0.83, 0.83] | wins |" in md
    assert "**LoRP loses to `last` at budget 2.** **LoRP loses to the random median at budget 2.**" in md
    assert "LoRP loses even to `last` at budget 2 and to the random median at budget 2" in reading(r)
    back = StudyResult.from_json(r.to_json())
    assert floor_summary(back) == floor_summary(r) and back.to_json()["version"] == 6


def test_no_floor_and_no_loss_say_so():
    r = _study([_cell("lorp", 2, 10.0, [1, 2]), _cell("last", 2, 20.0, [9, 10]), _cell("shortgpt", 2, 9.0, [3, 4]),
                _cell("streamline", 2, 9.5, [4, 5])])
    assert floor_summary(r) is None and floor_losses(r) == {"`last`": [], "the random median": []}
    md = floor_markdown(r)
    assert "No random floor in this run" in md and "LoRP loses to neither `last` nor the random median" in md
    assert "- **Floors**: LoRP loses to neither" in verdict({"m": r})


# -- SLEB at two token counts ----------------------------------------------------------------------------------------

def test_sleb_check_shows_both_picks_how_far_they_move_and_which_the_tables_use():
    at_1 = {**_cell("sleb", 2, 20.0, [3, 4]), "samples": 1, "tokens": 128, "search_seconds": 10.0}
    at_8 = {**_cell("sleb", 2, 16.0, [3, 5]), "samples": 8, "tokens": 1024, "search_seconds": 75.0}
    r = _study([_cell("lorp", 2, 30.0, [1, 2]), at_1], sleb_check={"budget": 2, "factor": 8, "used": 1,
                                                                    "runs": [at_1, at_8]})
    md = sleb_check_markdown(r)
    assert "| 1 | 128 | {3, 4} | 20.0 | 10 |" in md and "| 8 | 1,024 | {3, 5} | 16.0 | 75 |" in md
    # Jaccard {3,4} vs {3,5} = 1/3; every window's ratio is 16/20
    assert "With 8× the tokens SLEB picks Jaccard 0.33 between the two removed sets" in md
    assert "is 0.80× [0.80, 0.80] (lower)" in md and "The tables use 128 tokens (1 sequence(s))" in md
    assert "No SLEB check" in sleb_check_markdown(_study([_cell("lorp", 2, 30.0, [1, 2])]))


# -- the calibration corpus as an axis ------------------------------------------------------------------------------

def _corpora():
    picks = {"lambada": {"lorp": {"2": [1, 2], "4": [1, 2, 3, 4]}, "shortgpt": {"2": [1, 2], "4": [1, 2, 3, 4]}},
             "ptb": {"lorp": {"2": [5, 6], "4": [1, 2, 3, 4]}, "shortgpt": {"2": [5, 6], "4": [1, 2, 3, 5]}},
             "wiki-paragraphs": {"lorp": {"2": [1, 2], "4": [1, 2, 3, 4]}, "shortgpt": {"2": [1, 2], "4": [1, 2, 3, 4]}}}
    return {"corpora": list(picks), "num_samples": 4, "seq_len": 8, "seed": 0, "picks": picks,
            "rls": {c: 0.8 for c in picks}, "k": {c: 3 for c in picks}, "seconds": {c: 1.0 for c in picks},
            "skipped": ["sleb", "last"]}


def test_the_corpus_moves_the_picks_more_than_the_rule_when_its_jaccard_is_lower():
    rec = _corpora()
    # lorp, budget 2: pairs (lambada, ptb) 0, (lambada, wiki) 1, (ptb, wiki) 0 -> 1/3; budget 4: all equal -> 1
    # shortgpt, budget 4: {1,2,3,4} vs {1,2,3,5}: 3/5 twice, and 1 -> 11/15
    assert corpus_jaccard(rec) == pytest.approx({"lorp": (1 / 3 + 1) / 2, "shortgpt": (1 / 3 + 11 / 15) / 2})
    # on each corpus the two methods agree except shortgpt on ptb at budget 4 (3/5)
    assert rule_jaccard(rec) == pytest.approx({"lambada": 1.0, "ptb": (1 + 3 / 5) / 2, "wiki-paragraphs": 1.0})
    c, rule, more = corpus_verdict(rec)
    assert c == pytest.approx(((1 / 3 + 1) / 2 + (1 / 3 + 11 / 15) / 2) / 2) and rule == pytest.approx(0.9333333)
    assert more
    seeds = [_cell("lorp", 2, 30.0, [1, 2], seed=0), _cell("lorp", 2, 30.0, [1, 3], seed=1)]
    r = _study(seeds[:1], seed_cells=seeds[1:], seeds={"0": {}, "1": {}}, calibration_corpora=rec)
    md = calibration_corpus_markdown(r)
    assert "| lorp | 2 | 1 2 | 5 6 | 1 2 | 0.33 |" in md and "| lorp | 0.67 | 0.33 |" in md  # seeds: {1,2} vs {1,3}
    assert "**The corpus moves the picks more than the rule does**" in md and "sleb, last" in md
    assert "| m | 0.60 | 0.33 | 0.93 | yes |" in calibration_corpus_summary({"m": r})
    assert "No calibration-corpus axis" in calibration_corpus_markdown(_study([]))
