"""``span-heal-nll``: the candidate set a linear map repairs best, scored on held-out calibration rows.

Checked: the per-run memo gives linear's weights exactly; the healed scorer equals a plain forward of the
healed, pruned model on the scored rows and shares one capture between candidates; the strategy picks the
lowest healed NLL among span-bi-nll's candidates plus LoRP's set; the worker builds the scorer from the
calibration draw with the scored rows apart from the fitting rows.
"""

import numpy as np
import pytest
import torch

import lorp
from lorp.builtins.heal_selector import heal_candidates, span_heal_nll
from lorp.builtins.healers import LinearRunMemo, linear_healing, linear_healing_memo
from lorp.builtins.selectors import candidates
from lorp.errors import ConfigError
from lorp.heal.forward import weights_written
from lorp.method.selection import select_blocks
from lorp.plugins.components import AllocationRequest
from lorp.run.healed_nll import HealedCalibrationNLL, split_rows
from lorp.run.pipeline import PruneConfig
from lorp.run.records import CellSpec, EvalSettings
from lorp.run.worker import CellWorker
from lorp.testing import make_tiny_model_folder, plain_nll


def rows(n=12, tokens=10, seed=3):
    return torch.randint(0, 128, (n, tokens), generator=torch.Generator().manual_seed(seed))


def heal_request(model, removed, ids, registry):
    return lorp.HealRequest(model=model, removed=removed, calibration=ids, attention_mask=torch.ones_like(ids),
                            registry=registry)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_the_memo_gives_linear_weights_exactly_and_one_capture_for_all_runs(lorp_registry, tiny_model, arch):
    model = tiny_model(arch, 7)
    ids = rows()
    sets = [(2, 3), (2, 3, 5), (1, 4, 5)]  # runs (2,3), (2,3)+(5,5), (1,1)+(4,5)
    memo = LinearRunMemo(pending={(2, 3), (5, 5), (1, 1), (4, 5)})
    for removed in sets:
        plain_w, plain_r = linear_healing(heal_request(model, removed, ids, lorp_registry))
        memo_w, memo_r = linear_healing_memo(heal_request(model, removed, ids, lorp_registry), memo)
        assert memo_w.keys() == plain_w.keys()
        for name, w in plain_w.items():
            torch.testing.assert_close(memo_w[name], w, rtol=0, atol=0)
        assert [m["run"] for m in memo_r["maps"]] == [m["run"] for m in plain_r["maps"]]
        assert [m["alpha"] for m in memo_r["maps"]] == [m["alpha"] for m in plain_r["maps"]]
        assert memo_r["holdout_nll_healed"] == plain_r["holdout_nll_healed"]
    # the first call collected every pending run in one pass over the fit rows, the others none
    assert memo.passes == 1 and set(memo.solved) == {(2, 3), (5, 5), (1, 1), (4, 5)}


def test_the_healed_scorer_is_the_plain_nll_of_the_healed_pruned_model(lorp_registry, tiny_model):
    model = tiny_model("llama", 7)
    score, fit = split_rows(rows(), 3)
    assert score.shape[0] == 3 and fit.shape[0] == 9
    scorer = HealedCalibrationNLL(model, score, fit, scored_tokens=6, registry=lorp_registry)
    sets = [(2, 3), (3, 4, 5), (0, 4)]  # (0, 4): the run at block 0 stays unhealed, the map of (4,4) into block 3
    got = scorer(sets)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kept = []
    for removed, value in zip(sets, got):
        weights, record = linear_healing(heal_request(model, removed, fit, lorp_registry))
        with weights_written(model, weights):
            assert value == pytest.approx(plain_nll(model, score, set(removed), scored=6), rel=1e-5)
        unhealed = plain_nll(model, score, set(removed), scored=6)
        kept.append(record["kept_maps"])
        if record["kept_maps"]:
            assert value != pytest.approx(unhealed, rel=1e-6)  # the repair changed the score
        else:
            assert weights == {} and value == pytest.approx(unhealed, rel=1e-6)
    assert any(kept)  # some set is repaired here
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # every written weight restored
    assert scorer.passes["capture"] == 1  # one dense pass over the fit rows for every run
    assert scorer(sets[:1]) == got[:1] and scorer.passes["capture"] == 1  # memoised
    assert set(scorer.records) == set(sets)


def test_the_healed_scorer_needs_rows_to_fit_and_to_score(lorp_registry, tiny_model):
    model = tiny_model("llama", 4)
    with pytest.raises(ConfigError, match="at least 1 scored and 2 fitting"):
        HealedCalibrationNLL(model, rows(3), rows(1), registry=lorp_registry)


def _request(budget=3, healed_nll=None):
    n = 8
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n + 1, 4)).cumsum(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    c = x @ x.T  # cosine of slowly drifting states: neighbours agree
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    return AllocationRequest(c[:n, :n], labels, budget, frozenset({0, n - 1}), {"stream-cosine": c},
                             healed_nll=healed_nll)


def test_candidates_are_span_bi_nlls_plus_lorps_set_and_the_lowest_healed_nll_wins():
    seen = []

    def healed(sets):
        seen.append([tuple(s) for s in sets])
        return [float(sum(s)) if s != (2, 3, 4) else float("nan") for s in sets]  # NaN never wins

    request = _request(healed_nll=healed)
    family = heal_candidates(request)
    base = candidates(request)
    assert family[: len(base)] == base
    lorp_set = tuple(sorted(r.block for r in lorp.builtins.allocation.lorp_allocate(request)))
    assert lorp_set in {b for _, b in family} and len({b for _, b in family}) == len(family)
    removals = span_heal_nll(request)
    assert len(seen) == 1 and seen[0] == [b for _, b in family]  # one call: the candidates share one capture
    finite = [b for _, b in family if b != (2, 3, 4)]
    best = min(finite, key=sum)
    assert sorted(r.block for r in removals) == list(best)
    assert all(r.score == float(sum(best)) and "after a linear repair" in r.reason for r in removals)


def test_without_a_healed_scorer_or_a_finite_score_it_says_so(lorp_registry):
    with pytest.raises(ConfigError, match="request.healed_nll"):
        span_heal_nll(_request())
    with pytest.raises(ConfigError, match="not finite"):
        span_heal_nll(_request(healed_nll=lambda sets: [float("inf")] * len(sets)))
    request = _request()
    with pytest.raises(ConfigError, match="'linear' healer repaired them"):
        select_blocks(request.similarity, 3, allocation="span-heal-nll", statistics=request.statistics,
                      registry=lorp_registry)


def test_the_worker_scores_the_first_rows_healed_by_maps_fitted_on_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    config = PruneConfig(model=str(folder), calibration=str(text), num_samples=8, seq_len=8,
                         eval_corpora=(str(text),), eval_seq_len=8, eval_tokens=64, progress=False, sleb_samples=2,
                         sleb_tokens=4)
    worker = CellWorker(config, ("span-heal-nll",))
    chosen = worker.select_one(CellSpec("span-heal-nll", 2, 0, EvalSettings(corpora=("x",), seq_len=8, tokens=64)))
    scorer = worker._healed_nll[(0, 4)]  # span-heal-nll scores 4 sequences; the other 4 fit the maps
    assert scorer.nll.ids.shape == (4, 8) and scorer.fit_ids.shape == (4, 8)
    pruned = tuple(chosen.selection.pruned)
    assert len(pruned) == 2 and pruned in scorer._scores
    assert chosen.selection.removals[0].score == pytest.approx(min(scorer._scores.values()))
    assert chosen.nll_passes["capture"] == 1 and chosen.nll_passes["partial"] >= 1
