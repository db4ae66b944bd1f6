"""The benchmark scripts' plumbing (their timed figures are measured by running them, not here)."""

import pytest
import torch

from benchmarks import memory
from benchmarks._common import Figure, interleaved, interleaved_pairs, quartiles, ratio_stats
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


def test_interleaved_pairs_run_each_item_back_to_back_in_alternating_order():
    calls = []
    ta, tb = interleaved_pairs(lambda x: calls.append(f"a{x}"), lambda x: calls.append(f"b{x}"), [1, 2, 3], 2)
    assert calls == ["a1", "b1", "b2", "a2", "a3", "b3", "b1", "a1", "a2", "b2", "b3", "a3"]
    assert [len(r) for r in ta] == [len(r) for r in tb] == [3, 3]
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0) and quartiles([7.0]) == (7.0, 7.0, 7.0)


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


def _write_study(root, model, wall, sleb, calib, dense, pruned, ablation=None):
    """A minimal ``results.json`` (and ``ablation.json``) of one model under ``root``, with the given stage seconds."""
    import json

    cells = [{"method": "sleb", "budget": 2, "pruned": [1], "perplexity": {"a": 5.0}, "mean_perplexity": 5.0,
              "parameters": 1, "seconds": {"selection": sleb, "evaluation": pruned, "evaluation_perplexity": pruned},
              "nll_passes": {"full": 1, "partial": 2}}]
    r = {"model": {"name": model}, "num_blocks": 4, "rls": 0.5, "k": 4, "config": {}, "cells": cells,
         "dense": {"perplexity": {"a": 4.0}, "mean_perplexity": 4.0, "parameters": 2},
         "compute_seconds": {"calibration": calib, "dense": dense, "dense_stages": {"perplexity": dense}},
         "wall_time_s": wall}
    (root / model).mkdir(parents=True)
    (root / model / "results.json").write_text(json.dumps(r))
    if ablation:
        (root / model / "ablation.json").write_text(json.dumps({"seconds": ablation}))


def test_study_time_projection_scales_each_stage_by_the_reference_ratio(tmp_path):
    from benchmarks.study_time import projection

    write = _write_study
    ref, run = tmp_path / "ref", tmp_path / "run"
    write(ref, "smollm2-135m", 60.0, 40.0, 10.0, 2.0, 1.0, {"selectors_selection": 6.0, "notebook": 20.0})
    write(ref, "gemma3-270m", 90.0, 40.0, 30.0, 4.0, 5.0, {"selectors_selection": 12.0, "notebook": 20.0})
    write(run, "smollm2-135m", 30.0, 10.0, 5.0, 2.0, 1.0, {"selectors_selection": 3.0, "notebook": 10.0})
    md, total = projection(str(run), str(ref))
    # ratios (both models / smollm2): calibration 40/10 = 4, SLEB 80/40 = 2, perplexity (2+1+4+5)/(2+1) = 4,
    # selectors' scoring 18/6 = 3, untimed rest x 2 models. other = 30 - (5+10+2+1) = 12.
    assert total == pytest.approx(5 * 4 + 10 * 2 + 2 * 4 + 1 * 4 + 12 * 2 + 3 * 3 + (10 - 3) * 2)
    assert "| calibration pass | 5 | 4.00 | 20 |" in md and "| SLEB selection | 10 | 2.00 | 20 |" in md
    with pytest.raises(ValueError, match="every model"):
        projection(str(run), str(run))


def test_study_time_projection_keeps_every_measured_model_and_projects_the_others(tmp_path):
    from benchmarks.study_time import projection

    ref, run = tmp_path / "ref", tmp_path / "run"
    _write_study(ref, "smollm2-135m", 60.0, 40.0, 10.0, 2.0, 1.0)
    _write_study(ref, "gemma3-270m", 90.0, 40.0, 30.0, 4.0, 5.0)
    _write_study(ref, "qwen2.5-0.5b", 90.0, 120.0, 60.0, 6.0, 3.0)
    _write_study(run, "smollm2-135m", 30.0, 10.0, 5.0, 2.0, 1.0)
    _write_study(run, "gemma3-270m", 50.0, 20.0, 15.0, 3.0, 4.0)
    md, total = projection(str(run), str(ref))
    # measured sums x (all three / the two measured) in the reference: calibration 20 x 100/40 = 50,
    # SLEB 30 x 200/80 = 75, perplexity (2+1+3+4) x (3+9+9)/(3+9) = 10 x 1.75 = 17.5;
    # other = wall - the stages: (30 - 18) + (50 - 42) = 20, x 3/2 models.
    assert total == pytest.approx(20 * 2.5 + 30 * 2.5 + 10 * 1.75 + 20 * 1.5)
    assert "| stage | smollm2-135m + gemma3-270m (s) |" in md and "| calibration pass | 20 | 2.50 | 50 |" in md


@pytest.mark.parametrize("from_trace", [False, True])
def test_allocator_growth_counts_live_tensor_bytes_exactly(from_trace):
    def transient():
        x = torch.empty(2 ** 18)  # 1 MiB of float32
        y = torch.empty(2 ** 17)  # 0.5 MiB, live together with x
        del x, y

    _, stats = memory.allocator_growth(transient, from_trace=from_trace)
    assert stats["peak_bytes"] == 3 * 2 ** 19 and stats["end_bytes"] == 0 and stats["events"] == 4
    kept, stats = memory.allocator_growth(lambda: torch.empty(2 ** 18), from_trace=from_trace)
    assert stats["peak_bytes"] == stats["end_bytes"] == 2 ** 20 and kept.numel() == 2 ** 18


def test_streaming_capture_does_not_grow_with_the_calibration_set_but_a_keeping_one_would(tiny_model, lorp_registry):
    model = tiny_model("llama", num_blocks=4)
    ids = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
    few, many = (memory.measure_capture(model, ids[:k], lorp_registry) for k in (2, 8))
    assert many["stacked_bytes"] == memory.stacked_state_bytes(4, 1, 32, 32) == 5 * 32 * 32 * 4
    # one batch: at least its stacked states, and the same with 8 sequences as with 2
    assert few["stacked_bytes"] <= few["peak_bytes"] and many["peak_bytes"] / few["peak_bytes"] <= 1.05
    assert few["end_bytes"] == many["end_bytes"] == 0
    assert many["rss_method"] in ("VmHWM", "sampled") and many["rss_growth_bytes"] >= 0 and many["samples"] == 8

    @torch.inference_mode()
    def keeping(rows):  # what a non-streaming capture would do: keep every sequence's states
        return [torch.stack(model.model(input_ids=r[None], output_hidden_states=True).hidden_states) for r in rows]

    (_, a), (_, b) = (memory.allocator_growth(lambda k=k: keeping(ids[:k])) for k in (2, 8))
    stacked = many["stacked_bytes"]
    assert b["end_bytes"] == 8 * stacked and b["peak_bytes"] - a["peak_bytes"] == 6 * stacked  # exact, every run
    assert b["peak_bytes"] / a["peak_bytes"] > 2  # would miss the goal of 1.05


def _measured(peak_mib, rss_mib):
    return {"peak_bytes": int(peak_mib * memory.MIB), "end_bytes": 0, "events": 10,
            "rss_growth_bytes": int(rss_mib * memory.MIB), "rss_before_bytes": 900 * memory.MIB, "rss_method": "VmHWM",
            "num_blocks": 30, "hidden": 576, "samples": 8, "seq_len": 256,
            "stacked_bytes": memory.stacked_state_bytes(30, 1, 256, 576), "seconds": 1.0, "profiled_seconds": 1.2}


def test_figure_3_is_the_growth_ratio_with_both_growths_in_mib():
    runs = [{"large": _measured(52.4, 80), "small": _measured(52.3, 70)},
            {"large": _measured(52.5, 90), "small": _measured(52.3, 60)},
            {"large": _measured(52.3, 85), "small": _measured(52.3, 75)}]
    f = memory.figure("m", runs, small=8, large=64, seq_len=256)
    assert f.number == 3 and f.goal == "<= 1.05" and f.met
    assert f.ratio == pytest.approx(52.4 / 52.3) and f.spread == pytest.approx((1.0, 52.5 / 52.3))
    assert "64 / 8 calibration sequences of 256 tokens" in f.name and f.details["unit"] == "bytes"
    assert "52.4 MiB with 64 sequences vs 52.3 MiB with 8" in f.note
    assert "3.01x one batch's stacked states [31, 1, 256, 576] float32 (17.4 MiB;" in f.note
    assert "RSS growth" in f.note and "80 MiB vs 70 MiB; 90 MiB vs 60 MiB; 85 MiB vs 75 MiB" in f.note
    grown = memory.figure("m", [{"large": _measured(400, 500), "small": _measured(52.3, 70)}], 8, 64, 256)
    assert not grown.met and grown.ratio > 7
    assert "| 3 | capture memory growth with 64 / 8" in render([f], "python -m benchmarks.run_all", 1.0)


def test_rss_growth_uses_the_kernel_peak_or_falls_back_to_sampling(monkeypatch):
    result, stats = memory.rss_growth(lambda: torch.ones(2 ** 22).sum())  # 16 MiB, touched
    assert result == 2 ** 22 and stats["rss_growth_bytes"] >= 0 and stats["rss_before_bytes"] > 0
    monkeypatch.setattr(memory, "_proc_status_kib", lambda key: None)  # no /proc: psutil, or nothing
    _, stats = memory.rss_growth(lambda: None)
    assert stats["rss_method"] in ("sampled", "unavailable")
