"""The linear healer (ReplaceMe's least-squares map): its closed form, its ridge, its exact fold."""

import copy

import numpy as np
import pytest
import torch

import lorp
from lorp.errors import ConfigError
from lorp.heal.fit import apply_healing, fit_healer
from lorp.heal.forward import weights_written
from lorp.heal.holdout import holdout_split
from lorp.heal.linear import RidgeStats, collect_stats, removed_runs, residual_error, ridge_to_identity
from lorp.heal.norm_fold import conjugated_map, folded_branch, switched_on
from lorp.model.blocks import find_blocks
from lorp.model.pruning import remove_blocks
from lorp.testing import plain_nll


def stats_of(m, r):
    s = RidgeStats.zeros(m.shape[1])
    s.add(torch.as_tensor(m), torch.as_tensor(r))
    return s


def test_removed_runs_are_maximal_and_in_depth_order():
    assert removed_runs([10, 3, 4, 7, 9]) == [(3, 4), (7, 7), (9, 10)]
    assert removed_runs([]) == []


def test_one_dimensional_ridge_by_hand():
    # M = [1, 2], R = [2, 4]: MᵀM = 5, MᵀR = 10, λ = α·5, T = (10 + λ) / (5 + λ)
    s = stats_of(np.array([[1.0], [2.0]]), np.array([[2.0], [4.0]]))
    assert ridge_to_identity(s, 0.0)[0, 0] == pytest.approx(2.0)
    assert ridge_to_identity(s, 1.0)[0, 0] == pytest.approx(15 / 10)
    assert ridge_to_identity(s, 3.0)[0, 0] == pytest.approx(25 / 20)
    # error of T = 1: R − M = [1, 2], mean square 5 / 2
    assert residual_error(s, np.eye(1)) == pytest.approx(2.5)
    with pytest.raises(ConfigError, match="alpha must be a finite number >= 0"):
        ridge_to_identity(s, -1.0)


def test_closed_form_recovers_a_known_map_and_the_ridge_pulls_toward_identity():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(400, 6))
    true = rng.normal(size=(6, 6))
    s = stats_of(m, m @ true)
    assert np.allclose(ridge_to_identity(s, 0.0), true, atol=1e-8)
    assert residual_error(s, ridge_to_identity(s, 0.0)) == pytest.approx(0.0, abs=1e-10)
    distances = [np.linalg.norm(ridge_to_identity(s, a) - np.eye(6)) for a in (0.0, 0.01, 0.1, 1.0, 10.0, 1e6)]
    assert all(x > y for x, y in zip(distances, distances[1:]))
    assert distances[-1] < 1e-4
    r = m @ true + 0.1 * rng.normal(size=(400, 6))
    direct = np.mean(np.sum((r - m @ np.eye(6)) ** 2, axis=1))
    assert residual_error(stats_of(m, r), np.eye(6)) == pytest.approx(direct, rel=1e-10)


def calibration(rows=8, tokens=12):
    ids = torch.randint(0, 128, (rows, tokens), generator=torch.Generator().manual_seed(1))
    return ids, torch.ones_like(ids)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_the_folded_model_equals_the_map_applied_explicitly(lorp_registry, tiny_model, arch):
    dense = tiny_model(arch, 6)
    removed = (2, 3, 5)  # runs (2, 3) folded into block 1, (5, 5), the last block, into block 4
    ids, mask = calibration()
    request = lorp.HealRequest(model=dense, removed=removed, calibration=ids, attention_mask=mask,
                               settings={"alpha": 0.01}, registry=lorp_registry)
    fit = fit_healer(lorp_registry.healer("linear"), request)
    assert [m["run"] for m in fit.record["maps"]] == [[2, 3], [5, 5]]
    assert set(fit.weights) == {"model.layers.1.mlp.down_proj.weight", "model.layers.4.mlp.down_proj.weight"}

    stats = collect_stats(dense, ids, mask, [(2, 3), (5, 5)], registry=lorp_registry)
    maps = {a - 1: torch.from_numpy(ridge_to_identity(stats[(a, b)], 0.01)).float() for a, b in [(2, 3), (5, 5)]}
    explicit = copy.deepcopy(dense)
    blocks = find_blocks(explicit, lorp_registry)[1]
    for p, t in maps.items():
        blocks[p].mlp.register_forward_hook(lambda _m, _i, out, t=t: out @ t)
    remove_blocks(explicit, list(removed), lorp_registry)

    folded = copy.deepcopy(dense)
    apply_healing(folded, fit)
    remove_blocks(folded, list(removed), lorp_registry)
    probe = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = explicit(input_ids=probe).logits, folded(input_ids=probe).logits
        plain = remove_blocks(copy.deepcopy(dense), list(removed), lorp_registry)(input_ids=probe).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, plain, atol=1e-3)  # the map does change the pruned model


def test_every_fourth_calibration_sequence_is_held_out_not_a_tail():
    assert holdout_split(9) == ([1, 2, 3, 5, 6, 7], [0, 4, 8])
    assert holdout_split(4) == ([1, 2, 3], [0])
    assert holdout_split(2) == ([1], [0])
    with pytest.raises(ValueError, match="at least 2"):
        holdout_split(8, every=1)


def down_weights(dense, run, t):
    """The fold ``W ← Tᵀ W`` of map ``t`` into the block before ``run``, by hand."""
    name = f"model.layers.{run[0] - 1}.mlp.down_proj.weight"
    w = dict(dense.named_parameters())[name].detach().double()
    return {name: (torch.from_numpy(t).T @ w).float()}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_each_run_keeps_the_map_with_the_lowest_held_out_nll_of_the_model_healed_so_far(lorp_registry, tiny_model,
                                                                                        arch):
    dense = tiny_model(arch, 6)
    removed, runs = (2, 4), [(2, 2), (4, 4)]  # maps into blocks 1 and 3
    ids, mask = calibration(rows=8)
    fit = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=removed, calibration=ids, attention_mask=mask, settings={"alphas": [0.01, 0.1, 1.0]},
        registry=lorp_registry))
    rec = fit.record
    assert rec["holdout_rows"] == 2 and rec["fit_rows"] == 6 and rec["holdout_every"] == 4
    held, fit_rows = ids[[0, 4]], [1, 2, 3, 5, 6, 7]
    assert rec["holdout_nll_unhealed"] == pytest.approx(plain_nll(dense, held, set(removed)), rel=1e-5)
    stats = collect_stats(dense, ids[fit_rows], mask[fit_rows], runs, registry=lorp_registry)  # held rows never fit
    chosen: dict = {}
    for entry, run in zip(rec["maps"], runs):
        assert entry["run"] == list(run)
        assert entry["holdout_nll_identity"] == pytest.approx(
            plain_nll_with(dense, chosen, held, removed), rel=1e-5)
        for alpha, value in entry["holdout_nll"].items():  # each candidate: the healed-so-far model's NLL, by hand
            w = down_weights(dense, run, ridge_to_identity(stats[run], float(alpha)))
            assert value == pytest.approx(plain_nll_with(dense, {**chosen, **w}, held, removed), rel=1e-5)
        best = min(entry["holdout_nll"], key=entry["holdout_nll"].get)
        assert entry["best_alpha"] == float(best)
        if entry["holdout_nll"][best] < entry["holdout_nll_identity"]:
            assert entry["alpha"] == float(best) and entry["holdout_nll_chosen"] == entry["holdout_nll"][best]
            chosen.update(down_weights(dense, run, ridge_to_identity(stats[run], float(best))))
        else:
            assert entry["alpha"] == "identity" and entry["holdout_nll_chosen"] == entry["holdout_nll_identity"]
    assert fit.weights.keys() == chosen.keys()
    for name, value in chosen.items():
        torch.testing.assert_close(fit.weights[name], value, rtol=1e-6, atol=1e-6)
    assert rec["kept_maps"] == len(chosen) >= 1  # on this model the ridge does help somewhere
    assert rec["holdout_nll_healed"] == pytest.approx(plain_nll_with(dense, fit.weights, held, removed), rel=1e-5)
    assert rec["holdout_nll_healed"] <= rec["holdout_nll_unhealed"]


def plain_nll_with(dense, weights, ids, removed):
    with weights_written(dense, weights):
        return plain_nll(dense, ids, set(removed))


def test_a_map_that_does_not_beat_no_map_on_held_out_rows_is_not_written(lorp_registry, tiny_model):
    """Plain least squares on fewer fit tokens than dimensions (18 < 32) zeroes the MLP branch outside the fit
    rows' span: on the held-out rows it is worse than no map, so the run stays unhealed."""
    dense = tiny_model("llama", 5)
    ids, mask = calibration(rows=4, tokens=7)
    fit = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings={"alphas": [0.0]},
        registry=lorp_registry))
    (entry,) = fit.record["maps"]
    assert entry["alpha"] == "identity" and entry["best_alpha"] == 0.0
    assert entry["holdout_nll"]["0.0"] > entry["holdout_nll_identity"]
    assert fit.weights == {} and fit.record["kept_maps"] == 0
    assert fit.record["holdout_nll_healed"] == fit.record["holdout_nll_unhealed"] == pytest.approx(
        plain_nll(dense, ids[[0]], {2}), rel=1e-5)


def test_a_fixed_alpha_is_fitted_on_every_row_and_always_written(lorp_registry, tiny_model):
    dense = tiny_model("llama", 5)
    ids, mask = calibration(rows=8)
    fit = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings={"alpha": 0.0},
        registry=lorp_registry))
    (entry,) = fit.record["maps"]
    assert entry["alpha"] == 0.0 and entry["tokens"] == 8 * 12 and fit.record["holdout_rows"] == 0
    stats = collect_stats(dense, ids, mask, [(2, 2)], registry=lorp_registry)[(2, 2)]
    d = stats.mm.shape[0]
    assert residual_error(stats, ridge_to_identity(stats, 0.0)) <= residual_error(stats, np.eye(d))
    for bad, message in [({"alpha": 0.1, "alphas": [0.1]}, "not both"), ({"alphas": []}, "non-empty list"),
                         ({"alpha": -1}, "number >= 0"), ({"alphas": ["x"]}, "non-empty list")]:
        with pytest.raises(ConfigError, match=message):
            fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
                model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings=bad,
                registry=lorp_registry))


def test_a_run_from_block_0_stays_unhealed(lorp_registry, tiny_model):
    dense = tiny_model("llama", 5)
    ids, mask = calibration()
    fit = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=(0, 1, 3), calibration=ids, attention_mask=mask, settings={"alpha": 0.1},
        registry=lorp_registry))
    assert fit.record["unhealed_runs"] == [[0, 1]]
    assert [m["run"] for m in fit.record["maps"]] == [[3, 3]]
    assert fit.record["maps"][0]["fold"] == {"kind": "exact"}
    with pytest.raises(ConfigError, match="unknown \\['ridge'\\]"):
        fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
            model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings={"ridge": 1},
            registry=lorp_registry))


def rms(x, eps):
    return torch.sqrt(x.double().pow(2).mean(-1, keepdim=True) + eps)


def test_gemma3_fold_is_the_map_times_the_stated_per_token_scalar(lorp_registry, tiny_model):
    """Gemma 3 normalises after its MLP: the folded branch is c · (m T) · rms(u) / rms(u A) (lorp.heal.norm_fold)."""
    dense = tiny_model("gemma3_text", 5)
    with torch.no_grad():  # a gain that is not all ones, so that A = diag(γ) T diag(γ)⁻¹ differs from T
        gen = torch.Generator().manual_seed(3)
        for p in dense.parameters():
            if p.ndim == 1:
                p.normal_(0, 0.3, generator=gen)
    ids, mask = calibration()
    fit = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings={"alpha": 0.01},
        registry=lorp_registry))
    (entry,) = fit.record["maps"]
    fold = entry["fold"]
    assert fold["kind"] == "post-norm, scaled" and fold["scale"] > 0
    assert set(fit.weights) == {"model.layers.1.mlp.down_proj.weight", "model.layers.1.post_feedforward_layernorm.weight"}
    # the fitted folded branch is at least as close to the target as no repair, and its cost is recorded
    assert fold["mse_folded"] <= fold["mse_identity"] and fold["mse_explicit"] <= fold["mse_identity"]

    stats = collect_stats(dense, ids, mask, [(2, 2)], registry=lorp_registry)[(2, 2)]
    t = torch.from_numpy(ridge_to_identity(stats, 0.01))
    block = find_blocks(dense, lorp_registry)[1][1]
    gamma = 1 + block.post_feedforward_layernorm.weight.detach().double()
    a = gamma[:, None] * t / gamma[None, :]
    eps = block.post_feedforward_layernorm.eps
    stated = copy.deepcopy(dense)
    grabbed = {}
    sb = find_blocks(stated, lorp_registry)[1][1]
    sb.mlp.register_forward_hook(lambda _m, _i, out: grabbed.__setitem__("u", out))

    def scaled_map(_m, _i, out):
        u = grabbed["u"].double()
        return (fold["scale"] * (out.double() @ t) * rms(u, eps) / rms(u @ a, eps)).to(out.dtype)
    sb.post_feedforward_layernorm.register_forward_hook(scaled_map)
    remove_blocks(stated, [2], lorp_registry)
    folded = copy.deepcopy(dense)
    apply_healing(folded, fit)
    remove_blocks(folded, [2], lorp_registry)
    test_ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(4))
    explicit = copy.deepcopy(dense)  # the map itself, m ↦ m T, which no weight of this block can hold
    find_blocks(explicit, lorp_registry)[1][1].post_feedforward_layernorm.register_forward_hook(
        lambda _m, _i, out: (out.double() @ t).to(out.dtype))
    remove_blocks(explicit, [2], lorp_registry)
    with torch.no_grad():
        got = folded(input_ids=test_ids).logits
        torch.testing.assert_close(got, stated(input_ids=test_ids).logits, rtol=1e-5, atol=1e-5)
        assert (got - explicit(input_ids=test_ids).logits).abs().max() > 1e-4  # the approximation is real


def test_the_norm_fold_is_exact_for_a_scaled_identity():
    gamma = torch.tensor([0.5, 2.0, -1.5, 1.0], dtype=torch.float64)
    u = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    m = u * torch.rsqrt(u.pow(2).mean(-1, keepdim=True) + 1e-6) * gamma
    a, g = conjugated_map(3.0 * np.eye(4), gamma - 1)
    np.testing.assert_allclose(a, 3.0 * np.eye(4))
    # T = 3 I: the fold with c = 3 gives 3 m up to the norm's epsilon
    torch.testing.assert_close(3.0 * folded_branch(u, torch.from_numpy(a), torch.from_numpy(g), 1e-6), 3.0 * m,
                               rtol=1e-5, atol=1e-6)
    # a switched-off channel (γ = 0, Gemma 3 270M has some): its column of A is dropped, the rest is diag(γ) T diag(γ)⁻¹
    t = np.arange(16.0).reshape(4, 4) / 10
    a, g = conjugated_map(t, torch.tensor([0.0, -1.0, 1.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(g, [1.0, 0.0, 2.0, 1.0])
    np.testing.assert_allclose(a[:, 1], 0.0)
    on = [0, 2, 3]
    np.testing.assert_allclose(a[:, on], (g[:, None] * t)[:, on] / g[on][None, :])
    # the folded branch matches the explicit map's (u diag(γ) T) up to one scalar per token in the live channels
    u = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    folded = folded_branch(u, torch.from_numpy(a), torch.from_numpy(g), 0.0)
    target = (u * torch.from_numpy(g)) @ torch.from_numpy(t)
    assert torch.equal(folded[:, 1], torch.zeros(6, dtype=torch.float64))
    ratio = folded[:, on] / target[:, on]
    torch.testing.assert_close(ratio, ratio[:, :1].expand(-1, 3), rtol=1e-9, atol=0)


def test_a_gemma3_block_with_a_switched_off_channel_still_heals(lorp_registry, tiny_model):
    """Gemma 3 270M's post-MLP gain is exactly 0 in some channels (weight −1); the fold drops the map there."""
    dense = tiny_model("gemma3_text", 5)
    with torch.no_grad():
        find_blocks(dense, lorp_registry)[1][1].post_feedforward_layernorm.weight[[3, 7]] = -1.0
    ids, mask = calibration()
    fit = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings={"alpha": 0.01},
        registry=lorp_registry))
    fold = fit.record["maps"][0]["fold"]
    assert fold["zero_gain_channels"] == 2 and fold["mse_folded"] <= fold["mse_identity"]
    down = fit.weights["model.layers.1.mlp.down_proj.weight"]
    assert torch.isfinite(down).all() and torch.equal(down[[3, 7]], torch.zeros(2, down.shape[1]))


def test_a_gain_is_switched_off_relative_to_the_largest_gain():
    """A gain 1e-5 of the largest is off (its 1/γ would amplify the map 1e5-fold), though above any tiny absolute
    cut-off; the same gain beside gains of its own size is on."""
    t = np.eye(3) + 0.1
    a, g = conjugated_map(t, torch.tensor([2.0, 1e-5 * 3 - 1, 0.0], dtype=torch.float64))  # γ = 3, 3e-5, 1
    np.testing.assert_allclose(g, [3.0, 3e-5, 1.0])
    np.testing.assert_allclose(a[:, 1], 0.0)
    assert np.abs(a).max() < 10
    assert switched_on(np.array([3e-5 + 1, 1e-5, 2e-5])).tolist() == [True, False, False]
    assert switched_on(np.array([3e-5, 1e-5, 2e-5])).tolist() == [True, True, True]
    assert switched_on(np.zeros(3)).tolist() == [False, False, False]


def test_a_gemma3_fold_worse_than_no_map_on_held_out_rows_is_not_written(lorp_registry, tiny_model):
    """The held-out NLL is the folded model's: a run keeps its fold only if the folded pruned model beats the
    unhealed one on the held-out rows, and the record says which."""
    dense = tiny_model("gemma3_text", 5)
    ids, mask = calibration(rows=8)
    fit = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings={"alphas": [0.0, 0.01, 1.0]},
        registry=lorp_registry))
    (entry,) = fit.record["maps"]
    assert entry["fold"]["kind"] == "post-norm, scaled"
    held = ids[[0, 4]]
    unhealed = plain_nll(dense, held, {2})
    assert entry["holdout_nll_identity"] == pytest.approx(unhealed, rel=1e-5)
    # on this seeded tiny model every folded candidate is worse than no map on the held-out rows
    assert min(entry["holdout_nll"].values()) > entry["holdout_nll_identity"]
    assert entry["alpha"] == "identity" and fit.weights == {} and fit.record["kept_maps"] == 0
    some = {"alpha": 0.01}  # the fixed alpha writes the fold anyway: the held-out check is what kept it out
    forced = fit_healer(lorp_registry.healer("linear"), lorp.HealRequest(
        model=dense, removed=(2,), calibration=ids, attention_mask=mask, settings=some, registry=lorp_registry))
    assert set(forced.weights) == {"model.layers.1.mlp.down_proj.weight",
                                   "model.layers.1.post_feedforward_layernorm.weight"}
