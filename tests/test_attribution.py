"""Which removed block does the damage: the single-block removal profile, its record, report and figure.

The profile is checked by hand on tiny models (a plain forward with the block removed),
its cost by counting CalibrationNLL's passes, the report on a hand-made study.
"""

import json

import matplotlib
import numpy as np
import pytest
import torch

import lorp.model.models
from lorp.errors import ConfigError
from lorp.evaluate.perplexity import CalibrationNLL, single_removal_nll
from lorp.method.allocation import redundancy
from lorp.run.worker import CellWorker
from lorp.run.pipeline import PruneConfig
from lorp.run.records import CellSpec, EvalSettings
from lorp.run.study_records import Attribution, StudyResult, SweepRecord
from lorp.run.sweep import SweepConfig, execute_sweep
from lorp.store.cache import read_checked_json, write_checked_json
from lorp.study.attribution import compared_cells, detail_budget, rank_of, signals, spearman
from lorp.study.figures import attribution_profile
from lorp.study.explain import NO_ATTRIBUTION, attribution_markdown
from lorp.study.load import summarize
from lorp.study.parameters import study_config
from lorp.testing import make_tiny_model_folder, plain_nll

matplotlib.use("Agg")


# -- the profile --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch, scored", [("llama", None), ("llama", 4), ("gpt2", None)])
def test_profile_is_the_nll_with_each_one_block_removed(tiny_model, arch, scored):
    model = tiny_model(arch, num_blocks=5)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    nll = CalibrationNLL(model, ids, scored_tokens=scored)
    dense, profile = single_removal_nll(nll)
    assert sorted(profile) == [0, 1, 2, 3, 4]
    fresh = CalibrationNLL(model, ids, scored_tokens=scored, reuse=False)  # no prefix reuse, no memo shared
    for b, value in profile.items():
        assert value == nll(frozenset({b}))  # the memo answers: the same number
        assert value == pytest.approx(fresh(frozenset({b})), rel=1e-5)
        assert value == pytest.approx(plain_nll(model, ids, {b}, scored), rel=1e-5)
    assert dense == pytest.approx(plain_nll(model, ids, set(), scored), rel=1e-5)
    assert nll.reuse == (arch != "gpt2")
    with pytest.raises(ValueError, match="blocks \\[5\\] do not exist"):
        single_removal_nll(nll, [5])


def test_dense_nll_comes_from_the_probe_base_pass_and_sleb_is_unchanged(tiny_model):
    from lorp.builtins.baselines import sleb
    from lorp.plugins.components import AllocationRequest

    model = tiny_model("llama", num_blocks=6)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(2))
    nll = CalibrationNLL(model, ids)
    passes = (nll.forward_passes, nll.partial_passes)
    assert nll(frozenset()) == pytest.approx(plain_nll(model, ids, set()), rel=1e-6)
    assert (nll.forward_passes, nll.partial_passes) == passes  # memoised by the construction's base pass
    request = AllocationRequest(np.eye(6), None, 3, frozenset({0, 5}), {}, nll=nll)
    slow = CalibrationNLL(model, ids, reuse=False)
    fast_blocks = [r.block for r in sleb(request)]
    assert fast_blocks == [r.block for r in sleb(AllocationRequest(np.eye(6), None, 3, frozenset({0, 5}), {},
                                                                  nll=slow))]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    return PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False, sleb_samples=2)


def _spec(method, budget=1):
    return CellSpec(method, budget, 0, EvalSettings(corpora=("x",), seq_len=8, tokens=64))


def test_worker_profile_by_hand_and_its_cost_without_sleb(tiny):
    worker = CellWorker(tiny, ("lorp", "shortgpt"))
    a = worker.attribution()
    nll = worker._nll  # built by the profile: the scorer SLEB would use
    assert not a.shared and (a.sequences, a.seq_len, a.scored_tokens, a.tokens) == (2, 8, 7, 14)
    assert a.corpus == tiny.calibration and a.describe().startswith("2 × 8 tokens of text.txt, last 7 scored")
    model = worker.load().model
    for b in range(6):
        assert a.nll[b] == nll(frozenset({b}))
        assert a.nll[b] == pytest.approx(plain_nll(model, nll.ids, {b}), rel=1e-5)
        assert a.delta[b] == pytest.approx(a.nll[b] - a.dense_nll) and a.perplexity[b] == pytest.approx(
            np.exp(a.nll[b]))
    assert a.dense_nll == pytest.approx(plain_nll(model, nll.ids, set()), rel=1e-5)
    # one partial pass per block from the dense states entering it, a full pass for the last block (nothing runs
    # after it), none for the dense NLL (the construction's base pass scored it)
    assert a.passes == {"full": 1, "partial": 5}
    bi = 1 - np.array([worker.matrices["stream-cosine"][i, i + 1] for i in range(6)])
    np.testing.assert_allclose(a.block_influence, bi)


@pytest.mark.parametrize("protected, extra", [((), {"full": 0, "partial": 0}),
                                              ((0, -1), {"full": 2, "partial": 1})])
def test_sharing_with_sleb_costs_no_extra_pass_for_the_blocks_sleb_scored(tiny, protected, extra):
    config = PruneConfig(**{**tiny.__dict__, "protected": protected})
    worker = CellWorker(config, ("sleb",))
    worker.select_one(_spec("sleb", 2))
    before = worker._nll.partial_passes
    a = worker.attribution()
    assert a.shared and a.block_influence is None  # no method needed stream-cosine
    assert worker._nll.partial_passes - before == extra["partial"] and a.passes == extra
    # With the first and last block protected SLEB never tried them: block 0 needs the dense states again (one base
    # pass, one partial pass), the last block one full pass; every other block came from SLEB's memo.
    alone = CellWorker(config, ("sleb",)).attribution()
    assert a.nll == pytest.approx(alone.nll, rel=1e-6) and a.dense_nll == pytest.approx(alone.dense_nll, rel=1e-6)


# -- records ------------------------------------------------------------------------------------------------------
def _attribution(n=4):
    return Attribution(dense_nll=3.0, nll={b: 3.0 + 0.1 * b for b in range(n)}, corpus="lambada", sequences=2,
                       seq_len=8, scored_tokens=7, source="bundled", seed=0, block_influence=[0.1 * b for b in range(n)],
                       passes={"full": 1, "partial": 3}, shared=True, seconds=0.5)


def test_attribution_round_trips_alone_in_the_sweep_record_and_in_the_study():
    from lorp.run.records import Evaluation, RunContext
    from lorp.store.atomic import to_json

    a = _attribution()
    back = Attribution.from_json(json.loads(to_json(a.to_json())))
    assert back == a and list(back.nll) == [0, 1, 2, 3] and back.delta[2] == pytest.approx(0.2)
    ctx = RunContext({"name": "m"}, 4, 100, [10] * 4, {}, "cosine", np.eye(4))
    rec = SweepRecord("id", {}, ctx, Evaluation((), {}, 100), 7, attribution=a)
    again = SweepRecord.from_json(json.loads(to_json(rec.to_json())))
    assert again.attribution == a
    old = rec.to_json()
    del old["attribution"]  # written before the profile existed
    assert SweepRecord.from_json(old).attribution is None
    study = StudyResult.from_json(json.loads(to_json(hand_made_study().to_json())))
    assert study.attribution == hand_made_study().attribution
    legacy = hand_made_study().to_json()
    del legacy["attribution"]
    assert StudyResult.from_json(legacy).attribution is None


# -- the sweep ------------------------------------------------------------------------------------------------------
def test_sweep_keeps_the_profile_and_a_rerun_reuses_cells_and_profile(tiny, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    config = SweepConfig(base=tiny, methods=("lorp", "sleb"), budgets=(1, 2), attribution=True)
    assert SweepConfig(base=tiny).attribution is False  # off unless asked for (the study notebook asks)
    run = execute_sweep(config, out)
    a = run.record.attribution
    assert a is not None and a.shared and sorted(a.nll) == list(range(6))  # the same worker ran SLEB first
    assert summarize(run.record, run.cells).attribution == a
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although nothing was left to compute")

    with monkeypatch.context() as m:
        m.setattr(lorp.model.models, "load_model", no_model)
        again = execute_sweep(config, out)
        assert again.record.attribution == a and again.stats is None
        # a sweep written before the profile existed, rerun without asking for it: nothing is computed
        raw = read_checked_json(out / "sweep.json", "sweep record")
        raw.pop("attribution")
        write_checked_json(out / "sweep.json", raw)
        off = execute_sweep(SweepConfig(base=tiny, methods=("lorp", "sleb"), budgets=(1, 2)), out)
        assert off.stats is None and off.record.attribution is None
        assert summarize(off.record, off.cells).attribution is None
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps

    # ... and asking for it computes only the profile: cells and the dense evaluation stay
    dense = SweepRecord.from_json(raw).dense
    calls = []
    real = CellWorker.dense
    monkeypatch.setattr(CellWorker, "dense", lambda self, *a_: calls.append(1) or real(self, *a_))
    third = execute_sweep(config, out)
    assert not calls and third.record.dense == dense and third.stats.cells_written == 0
    assert not third.record.attribution.shared  # no SLEB ran this time: its own passes
    assert third.record.attribution.nll == pytest.approx(a.nll, rel=1e-6)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps


def test_study_parameter_turns_it_on_by_default():
    from lorp.study.runner import notebook_defaults, notebook_parameters

    values = notebook_defaults(notebook_parameters())
    assert values["attribution"] is True and study_config(values).attribution is True
    assert study_config({**values, "attribution": False}).attribution is False
    assert study_config({**values, "attribution": "false"}).attribution is False
    with pytest.raises(ConfigError, match="attribution takes True or False"):
        study_config({**values, "attribution": 1})


# -- report and figure on a hand-made study -------------------------------------------------------------------------
#: ΔNLL per block (nats/token); blocks 0 and 7 are protected. Ranks among blocks 1..6 by ΔNLL:
#: 4 (0.01) 1st, 2 (0.05) 2nd, 6 (0.1) 3rd, 3 (0.2) 4th, 1 (0.5) 5th, 5 (0.8) 6th.
DELTA = [3.0, 0.5, 0.05, 0.2, 0.01, 0.8, 0.1, 2.0]


def hand_made_study(attribution=True):
    n = len(DELTA)
    a = np.array([0.95 - 0.1 * d for d in DELTA])  # one cluster, S[i, j] = a_i a_j: r(l) falls as ΔNLL grows
    s = np.outer(a, a)
    np.fill_diagonal(s, 1.0)

    def cell(method, pruned, ppl):
        return {"method": method, "budget": 3, "pruned": pruned, "perplexity": {"x": ppl}, "mean_perplexity": ppl,
                "parameters": 10}

    data = {"model": {"name": "m"}, "num_blocks": n, "rls": 0.5, "k": 1, "labels": [0] * n, "similarity": s.tolist(),
            "config": {"protected": [0, -1], "detail_budgets": [3], "budgets": [2, 3]},
            "dense": {"perplexity": {"x": 10.0}, "mean_perplexity": 10.0, "parameters": 100},
            "cells": [cell("lorp", [1, 5, 6], 30.0), cell("streamline", [3, 4, 5], 20.0),
                      cell("shortgpt", [2, 4, 6], 15.0), {**cell("lorp", [1, 2], 12.0), "budget": 2}]}
    if attribution:
        data["attribution"] = Attribution(
            dense_nll=3.0, nll={b: 3.0 + d for b, d in enumerate(DELTA)}, corpus="lambada", sequences=2, seq_len=8,
            scored_tokens=7, block_influence=[0.1 + d for d in DELTA]).to_json()  # BI grows with ΔNLL
    return StudyResult.from_json(data)


def test_markdown_ranks_each_set_by_single_removal_damage():
    r = hand_made_study()
    assert detail_budget(r) == 3
    lorp, rival = compared_cells(r)
    assert (lorp.pruned, rival.method) == ([1, 5, 6], "shortgpt")  # the baseline of lowest perplexity
    sig = signals(r)
    assert list(sig.eligible) == [False] + [True] * 6 + [False]
    assert rank_of(sig.delta, sig.eligible) == {4: 1, 2: 2, 6: 3, 3: 4, 1: 5, 5: 6}
    np.testing.assert_allclose(sig.redundancy, redundancy(np.asarray(r.similarity), np.asarray(r.labels)))
    md = attribution_markdown(r)
    rows = [ln for ln in md.splitlines() if ln.startswith(("| lorp |", "| shortgpt |"))]
    assert [ln.split(" | ")[1] for ln in rows] == ["5", "1", "6", "6", "2", "4"]  # most damaging first, per set
    assert rows[0].endswith("| 0.800 | 6 of 6 |") and rows[-1].endswith("| 0.010 | 1 of 6 |")
    assert ("lorp {1, 5, 6}: 1.400; shortgpt {2, 4, 6}: 0.160; first-order optimum {2, 4, 6}: 0.160" in md)
    assert "Only LoRP removes {1, 5} (ΔNLL sum 1.300); only shortgpt removes {2, 4} (ΔNLL sum 0.060)" in md
    assert "LoRP's most damaging removal is block 5 (ΔNLL 0.800, rank 6 of 6)" in md
    assert "first-order account" in md and "2 × 8 tokens of lambada" in md
    # Spearman over the six removable blocks: redundancy falls exactly as ΔNLL grows, BI rises with it
    assert "| LoRP redundancy r (eq. 8) | high r (within its cluster) | -1.00 |" in md
    assert "| ShortGPT Block Influence | low BI | 1.00 |" in md
    assert [ln.rsplit(" | ", 1)[-1] for ln in md.splitlines() if ln.startswith(("| LoRP redundancy", "| ShortGPT"))] \
        == ["6 |", "6 |"]
    k = spearman(sig.delta, sig.redundancy, sig.eligible)
    assert (k.rho, k.blocks) == (pytest.approx(-1.0), 6)
    # another budget: the lorp cell of budget 2 against no baseline
    assert "| lorp | 2 |" in attribution_markdown(r, budget=2)
    assert attribution_markdown(hand_made_study(attribution=False)) == NO_ATTRIBUTION + "\n"


def test_spearman_is_undefined_for_constant_or_too_few_blocks():
    k = spearman(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 5.0]), np.ones(3, bool))
    assert np.isnan(k.rho) and k.blocks == 3
    assert spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.ones(2, bool)).blocks == 2


def test_figure_writes_a_file_and_marks_both_sets(tmp_path):
    path = tmp_path / "attribution.png"
    fig = attribution_profile(hand_made_study(), path=path)
    assert path.stat().st_size > 0 and len(fig.axes) == 3
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == [str(b) for b in range(8)]
    assert fig.axes[0].get_yscale() == "log"  # every ΔNLL is positive
    marked = {ln.get_label(): list(ln.get_xdata()) for ln in fig.axes[0].get_lines() if "removes" in ln.get_label()}
    assert marked == {"lorp removes (budget 3)": pytest.approx([0.82, 4.82, 5.82]),
                      "shortgpt removes (budget 3)": pytest.approx([2.18, 4.18, 6.18])}
    assert attribution_profile(hand_made_study(attribution=False)) is None


def test_why_names_the_blocks_only_lorp_removes_and_their_share_of_the_gap():
    from lorp.study.explain import why_markdown

    md = why_markdown({"m": hand_made_study(), "old": hand_made_study(attribution=False)})
    # LoRP {1, 5, 6} (1.4) vs shortgpt {2, 4, 6} (0.16): gap 1.24; only LoRP removes 5 (0.8) then 1 (0.5)
    assert ("LoRP (30.0 geometric mean perplexity) loses to shortgpt (15.0). Blocks only LoRP removes, most damaging first: "
            "block 5 (ΔNLL 0.800, cluster 0), block 1 (ΔNLL 0.500, cluster 0); the worst of them alone is 65 % of the "
            "first-order gap of 1.240 nats/token") in md
    assert "Spearman ρ -1.00 with LoRP's redundancy" in md and "+1.00 with Block Influence" in md
    assert "- **old**: no single-block removal profile" in md
