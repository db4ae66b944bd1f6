"""The benchmark scripts' plumbing (their figures are measured by running them, not here)."""

from benchmarks._common import Figure, interleaved, ratio_stats
from benchmarks.capture_overhead import budgets_for
from benchmarks.run_all import render


def test_five_budgets_between_ten_and_forty_percent():
    assert budgets_for(30) == [3, 5, 8, 10, 12]
    assert all(1 <= b <= 0.4 * 18 for b in budgets_for(18)) and len(budgets_for(18)) == 5


def test_interleaved_timing_alternates_and_pairs_ratios():
    calls = []
    ta, tb = interleaved(lambda: calls.append("a"), lambda: calls.append("b"), 3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"] and len(ta) == len(tb) == 3
    assert ratio_stats([2.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == (2.0, (2.0, 3.0))


def test_report_shows_each_figure_next_to_its_goal_and_explains_misses():
    figures = [Figure(1, "capture / plain", "m", 1.02, (1.0, 1.05), "<= 1.10", True),
               Figure(4, "decode / ideal", "m", 0.7, (0.6, 0.8), ">= 0.9", False, note="measured x1.1")]
    text = render(figures, "python -m benchmarks.run_all", 60.0)
    assert "| 1 | capture / plain | m | 1.020 | 1.000–1.050 | <= 1.10 | met |" in text
    assert "| 4 | decode / ideal | m | 0.700 | 0.600–0.800 | >= 0.9 | **missed** |" in text
    assert "Figure 4 misses its goal" in text and "`python -m benchmarks.run_all`" in text


def test_study_time_table_compares_stages_and_sleb_cost(tmp_path):
    import json

    from benchmarks.study_time import load, table

    def write(root, wall, sleb, calib):
        cells = [{"method": "sleb", "budget": 2, "pruned": [1], "perplexity": {"a": 5.0}, "mean_perplexity": 5.0,
                  "parameters": 1, "seconds": {"selection": sleb, "evaluation": 1.0, "evaluation_perplexity": 1.0},
                  "nll_passes": {"full": 1, "partial": 2}}]
        r = {"model": {"name": "smollm2-135m"}, "num_blocks": 4, "rls": 0.5, "k": 4, "config": {}, "cells": cells,
             "dense": {"perplexity": {"a": 4.0}, "mean_perplexity": 4.0, "parameters": 2},
             "compute_seconds": {"calibration": calib, "dense": 2.0, "dense_stages": {"perplexity": 2.0}},
             "wall_time_s": wall}
        (root / "smollm2-135m").mkdir(parents=True)
        (root / "smollm2-135m" / "results.json").write_text(json.dumps(r))
        return root

    before, after = write(tmp_path / "b", 100.0, 40.0, 10.0), write(tmp_path / "a", 50.0, 10.0, 5.0)
    md = table(load(str(before)), load(str(after)))
    assert "| SLEB selection | 40 | 10 | 0.25 |" in md
    assert "| **wall time, all models** | **100** (1.7 min) | **50** (0.8 min) | **0.50** |" in md
    assert "| smollm2-135m | 100 | 50 | 4.0 | 2.0 |" in md
