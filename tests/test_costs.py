"""Study time per stage (lorp.study.costs) from hand-made records."""

import pytest

from lorp.run.study_records import StudyCell, StudyDense, StudyResult
from lorp.study.costs import STAGES, stage_floor_seconds, stage_markdown, stage_seconds


def cell(method, budget, seconds, zero_shot=None, nll_passes=None, reused=False):
    return StudyCell(method=method, budget=budget, pruned=[1], perplexity={"ptb": 10.0}, mean_perplexity=10.0,
                     parameters=1, seconds=seconds, zero_shot=zero_shot, nll_passes=nll_passes,
                     evaluation_reused=reused)


def study(cells, compute, wall):
    return StudyResult(model={"name": "m"}, num_blocks=4, config={}, rls=None, k=None,
                       dense=StudyDense(perplexity={"ptb": 5.0}, mean_perplexity=5.0, parameters=2), cells=cells,
                       compute_seconds=compute, wall_time_s=wall)


def test_stages_add_up_to_the_wall_time():
    r = study([cell("lorp", 2, {"selection": 1.0, "evaluation": 10.0, "evaluation_perplexity": 4.0,
                                "evaluation_zero_shot": 5.0, "evaluation_speed": 1.0}, zero_shot={"arc_easy": .5}),
               cell("lorp", 3, {"selection": 0.5, "evaluation": 3.0, "evaluation_perplexity": 3.0}),
               cell("sleb", 2, {"selection": 20.0, "evaluation": 0.0}, nll_passes={"full": 1, "partial": 3})],
              {"load": 2.0, "calibration": 7.0, "dense": 9.0, "attribution": 1.5,
               "dense_stages": {"perplexity": 3.0, "zero_shot": 4.0, "speed": 2.0}}, wall=60.0)
    s = stage_seconds(r)
    assert s["load model"] == 2.0 and s["calibration pass"] == 7.0 and s["attribution profile"] == 1.5
    assert s["selection"] == 1.5 and s["SLEB selection"] == 20.0
    assert s["perplexity (dense)"] == 3.0 and s["perplexity (pruned)"] == 7.0
    assert s["zero-shot"] == 9.0 and s["decode speed"] == 3.0
    assert s["perplexity: lorp"] == 7.0 and s["perplexity: sleb"] == 0.0
    assert sum(s[k] for k in STAGES) == pytest.approx(60.0)
    assert s["other (notebook, figures, reports)"] == pytest.approx(60.0 - 54.0)


def test_old_records_estimate_the_perplexity_share_of_a_detailed_cell():
    r = study([cell("lorp", 2, {"selection": 0.0, "evaluation": 30.0}, zero_shot={"arc_easy": .5}),
               cell("lorp", 3, {"selection": 0.0, "evaluation": 6.0}),
               cell("lorp", 4, {"selection": 0.0, "evaluation": 4.0})],
              {"calibration": 1.0, "dense": 12.0}, wall=100.0)
    s = stage_seconds(r)
    assert s["perplexity: lorp"] == 15.0  # 6 + 4 + their mean 5 for the detailed cell
    assert s["zero-shot"] == 25.0 and s["perplexity (dense)"] == 12.0


def test_a_detailed_cell_that_reused_another_seeds_evaluation_costs_nothing():
    # seed 1 picked seed 0's blocks: its cell carries seed 0's accuracies and no seconds of its own. Counting
    # it as an old record once charged it the method's mean perplexity time (5 s here) a second time.
    detail = {"selection": 0.0, "evaluation": 12.0, "evaluation_perplexity": 5.0, "evaluation_zero_shot": 7.0}
    r = study([cell("lorp", 2, detail, zero_shot={"arc_easy": .5}),
               cell("lorp", 3, {"selection": 0.0, "evaluation": 5.0, "evaluation_perplexity": 5.0}),
               cell("lorp", 2, {"selection": 0.0, "evaluation": 0.0, "total": 0.0}, zero_shot={"arc_easy": .5},
                    reused=True)],
              {"calibration": 1.0, "dense": 2.0}, wall=30.0)
    s = stage_seconds(r)
    assert s["perplexity: lorp"] == 10.0 and s["perplexity (pruned)"] == 10.0 and s["zero-shot"] == 7.0


def test_the_evidence_stages_are_timed_from_their_records():
    r = study([cell("lorp", 2, {"selection": 0.0, "evaluation": 1.0})], {"calibration": 2.0}, wall=100.0)
    r.config = {"calibration": "lambada"}
    r.confirmation = {"dense": {"seconds": 3.0}, "cells": [{"seconds": 2.0}, {"seconds": 1.5}]}
    r.random_floor = {"draws": [{"seconds": {"evaluation": 1.0}}, {"seconds": {"evaluation": 2.0}}]}
    r.sleb_check = {"runs": [{"search_seconds": 50.0, "seconds": {"selection": 50.0}},  # the study's own SLEB cell
                             {"search_seconds": 400.0, "seconds": {"evaluation": 4.0}}]}
    r.calibration_corpora = {"seconds": {"lambada": 9.0, "ptb": 8.0, "wiki-paragraphs": 7.0}}
    s = stage_seconds(r)
    assert (s["confirmation windows"], s["random floor"], s["SLEB at a second token count"]) == (6.5, 3.0, 404.0)
    assert s["calibration-corpus axis"] == 15.0  # lambada is the study's own pass
    assert sum(s[k] for k in STAGES) == pytest.approx(max(100.0, 2.0 + 1.0 + 6.5 + 3.0 + 404.0 + 15.0))


def test_markdown_has_a_row_per_stage_and_totals():
    r = study([cell("lorp", 2, {"selection": 1.0, "evaluation": 2.0, "evaluation_perplexity": 2.0})],
              {"calibration": 3.0, "dense": 1.0, "dense_stages": {"perplexity": 1.0}}, wall=10.0)
    md = stage_markdown({"a": r, "b": r})
    assert "| calibration pass | 3 | 3 | 6 | 30 % | – |" in md  # 6 of the 20 seconds computed; no floor recorded
    assert "|   perplexity: lorp | 2 | 2 | 4 | 20 % | – |" in md
    assert "| **to compute** (the stages above) | **10** | **10** | **20** | 100 % | |" in md  # 3 + 1 + 1 + 2, other 3
    assert md.rstrip().endswith("| wall time of the run that wrote this report (short when it reused finished cells) "
                                "| 10 | 10 | 20 | | |")
    # a rerun that reused every cell: the stages keep their cost, the wall time is the short rerun's
    rerun = stage_markdown({"a": study(r.cells, r.compute_seconds, wall=2.0)})
    assert "| **to compute** (the stages above) | **7** | **7** |" in rerun  # other clipped at 0
    assert rerun.rstrip().endswith("(short when it reused finished cells) | 2 | 2 | | |")


def test_the_perplexity_floor_counts_the_blocks_each_variant_runs():
    # 4 blocks of 10 FLOPs per token, head 6; 2 corpora x 3 windows x 10 tokens = 60 tokens; 100 FLOP/s
    r = study([cell("lorp", 2, {"selection": 0.0, "evaluation_perplexity": 30.0}),  # pruned [1], restarts at 1
               cell("last", 2, {"selection": 0.0, "evaluation_perplexity": 0.0})],  # reused an evaluation: no floor
              {"dense_stages": {"perplexity": 40.0}}, wall=100.0)
    r.cells[1].pruned = [2]
    r.evaluation = {"ptb": {"windows": 3, "window_tokens": 10}, "wiki": {"windows": 3, "window_tokens": 10}}
    r.perplexity_reuse = {"enabled": True, "stored_blocks": [1],
                          "floor": {"block_flops": [10.0] * 4, "head_flops": 6.0, "window_tokens": 10,
                                    "matmul_flops_per_s": 100.0}}
    r.confirmation = {"windows": 2, "seq_len": 10, "dense": {"seconds": 5.0, "perplexity": {"ptb": 1, "wiki": 1}},
                      "cells": [{"pruned": [2, 3], "seconds": 1.0}]}
    f = stage_floor_seconds(r)
    assert f["perplexity (dense)"] == pytest.approx(60 * 46 / 100)
    assert f["perplexity (pruned)"] == pytest.approx(60 * (20 + 6) / 100)  # blocks 2, 3 and the head
    assert f["confirmation windows"] == pytest.approx(40 * 46 / 100 + 40 * 6 / 100)  # dense, then the head alone
    assert "random floor" not in f
    md = stage_markdown({"a": r})
    assert "| perplexity (dense) | 40 | 40 | " in md and f"| {40 / (60 * 46 / 100):.2f} |" in md
    r.perplexity_reuse["stored_blocks"] = []  # block 1's states not kept: lorp's set runs from block 0
    assert stage_floor_seconds(r)["perplexity (pruned)"] == pytest.approx(60 * 36 / 100)
