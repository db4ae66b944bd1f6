"""The sequential healer (our design): ReplaceMe's maps fitted in depth order on the partially pruned, healed
model. Checked against captures of an explicitly pruned and healed copy."""

import copy

import numpy as np
import pytest
import torch

import lorp
from lorp.errors import ConfigError
from lorp.heal.fit import apply_healing, fit_healer
from lorp.heal.linear import RidgeStats, collect_stats, ridge_to_identity
from lorp.heal.forward import forward_until, weights_written
from lorp.heal.sequential import collect_run_stats
from lorp.model.blocks import find_blocks
from lorp.model.pruning import remove_blocks
from lorp.testing import plain_nll


def calibration(rows=8, tokens=12):
    ids = torch.randint(0, 128, (rows, tokens), generator=torch.Generator().manual_seed(2))
    return ids, torch.ones_like(ids)


def request(model, removed, registry, **settings):
    ids, mask = calibration()
    return lorp.HealRequest(model=model, removed=removed, calibration=ids, attention_mask=mask,
                            settings=settings, registry=registry)


def test_with_one_run_sequential_is_linear(lorp_registry, tiny_model):
    dense = tiny_model("llama", 6)
    ids, mask = calibration()
    plain = collect_stats(dense, ids, mask, [(2, 3)], registry=lorp_registry)[(2, 3)]
    staged = collect_run_stats(dense, ids, mask, (2, 3), registry=lorp_registry)
    assert staged.tokens == plain.tokens == 8 * 12
    np.testing.assert_allclose(staged.mm, plain.mm, rtol=1e-10)
    np.testing.assert_allclose(staged.mr, plain.mr, rtol=1e-10)
    for settings in ({"alpha": 0.01}, {}):  # a fixed map, and the choice on held-out rows
        linear = fit_healer(lorp_registry.healer("linear"), request(dense, (2, 3), lorp_registry, **settings))
        sequential = fit_healer(lorp_registry.healer("sequential"), request(dense, (2, 3), lorp_registry, **settings))
        assert linear.weights.keys() == sequential.weights.keys()
        for name, w in linear.weights.items():
            torch.testing.assert_close(sequential.weights[name], w, rtol=0, atol=1e-6)
        assert sequential.record["sequential"] is True
        (a,), (b,) = linear.record["maps"], sequential.record["maps"]
        assert a["alpha"] == b["alpha"] and a["holdout_nll"] == pytest.approx(b["holdout_nll"], rel=1e-6)
    assert set(fit_healer(lorp_registry.healer("linear"), request(dense, (2, 3), lorp_registry, alpha=0.01)).weights) \
        == {"model.layers.1.mlp.down_proj.weight"}


def test_a_later_map_is_fitted_on_the_pruned_healed_stream(lorp_registry, tiny_model):
    dense = tiny_model("llama", 7)
    removed = (0, 2, 4, 5)  # runs (0, 0) unhealed, (2, 2) into block 1, (4, 5) into block 3
    fit = fit_healer(lorp_registry.healer("sequential"), request(dense, removed, lorp_registry, alpha=0.01))
    assert fit.record["unhealed_runs"] == [[0, 0]]
    assert [m["run"] for m in fit.record["maps"]] == [[2, 2], [4, 5]]

    # by hand: block 0 deleted, map 1 folded, then block 3's MLP output and output against dense block 5's output
    ids, mask = calibration()
    first = {"model.layers.1.mlp.down_proj.weight": fit.weights["model.layers.1.mlp.down_proj.weight"]}
    stats = RidgeStats.zeros(dense.config.hidden_size)
    pruned = copy.deepcopy(dense)
    apply_healing(pruned, lorp.heal.fit.HealFit("by-hand", first))
    kept_block = find_blocks(pruned, lorp_registry)[1][3]
    remove_blocks(pruned, [0, 2], lorp_registry)
    got = {}
    kept_block.mlp.register_forward_hook(lambda _m, _i, out: got.__setitem__("m", out))
    kept_block.register_forward_hook(lambda _m, _i, out: got.__setitem__("o", out[0] if isinstance(out, tuple) else out))
    find_blocks(dense, lorp_registry)[1][5].register_forward_hook(
        lambda _m, _i, out: got.__setitem__("y", out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        for row in range(ids.shape[0]):
            pruned(input_ids=ids[row:row + 1], use_cache=False)
            dense(input_ids=ids[row:row + 1], use_cache=False)
            m = got["m"][0]
            stats.add(m, got["y"][0] - (got["o"][0] - m))
    by_hand = torch.from_numpy(ridge_to_identity(stats, 0.01).T
                               @ dense.model.layers[3].mlp.down_proj.weight.detach().double().numpy()).float()
    torch.testing.assert_close(fit.weights["model.layers.3.mlp.down_proj.weight"], by_hand, rtol=1e-4, atol=1e-6)
    # and it differs from linear's map for that run, which assumes the dense stream
    linear = fit_healer(lorp_registry.healer("linear"), request(dense, removed, lorp_registry, alpha=0.01))
    assert not torch.allclose(linear.weights["model.layers.3.mlp.down_proj.weight"], by_hand, atol=1e-4)


def test_helpers_leave_the_model_as_it_was(lorp_registry, tiny_model):
    dense = tiny_model("llama", 4)
    before = {n: p.detach().clone() for n, p in dense.named_parameters()}
    ids, mask = calibration(rows=2)
    with pytest.raises(RuntimeError, match="boom"):
        with weights_written(dense, {"model.layers.0.mlp.down_proj.weight": torch.zeros_like(
                before["model.layers.0.mlp.down_proj.weight"])}):
            raise RuntimeError("boom")
    seen = []
    blocks = find_blocks(dense, lorp_registry)[1]
    hooks = [b.register_forward_hook(lambda _m, _i, _o, i=i: seen.append(i)) for i, b in enumerate(blocks)]
    forward_until(dense, ids[:1], mask[:1], blocks[1])
    assert seen == [0, 1]  # stopped after block 1
    for h in hooks:
        h.remove()
    collect_run_stats(dense, ids, mask, (3, 3), earlier=[0, 1], healed={}, registry=lorp_registry)
    assert all(torch.equal(p, before[n]) for n, p in dense.named_parameters())
    assert len(find_blocks(dense, lorp_registry)[1]) == 4
    with pytest.raises(ConfigError, match="must all lie before block"):
        collect_run_stats(dense, ids, mask, (2, 2), earlier=[1], registry=lorp_registry)
    gemma = fit_healer(lorp_registry.healer("sequential"), request(tiny_model("gemma3_text", 6), (2, 4),
                                                                   lorp_registry, alpha=0.01))
    assert [m["fold"]["kind"] for m in gemma.record["maps"]] == ["post-norm, scaled"] * 2


def test_the_held_out_rows_stay_out_of_every_map_the_earlier_ones_included(lorp_registry, tiny_model):
    """Run 2's candidates are fitted on the fit rows of the model with run 1 deleted and its chosen map written,
    where that map was itself fitted on the fit rows only; each candidate's recorded held-out NLL is that of the
    pruned model with both maps, by hand."""
    dense = tiny_model("llama", 7)
    removed, runs = (2, 4, 5), [(2, 2), (4, 5)]
    ids, mask = calibration(rows=8)
    fit = fit_healer(lorp_registry.healer("sequential"), request(dense, removed, lorp_registry, alphas=[0.01, 1.0]))
    first, second = fit.record["maps"]
    fit_rows, held = [1, 2, 3, 5, 6, 7], ids[[0, 4]]
    one = collect_stats(dense, ids[fit_rows], mask[fit_rows], [runs[0]], registry=lorp_registry)[runs[0]]
    chosen = {} if first["alpha"] == "identity" else down_weights(dense, runs[0], ridge_to_identity(one, first["alpha"]))
    two = collect_run_stats(dense, ids[fit_rows], mask[fit_rows], runs[1], earlier=[2], healed=chosen,
                            registry=lorp_registry)
    assert two.tokens == 6 * 12
    for alpha, value in second["holdout_nll"].items():
        w = down_weights(dense, runs[1], ridge_to_identity(two, float(alpha)))
        with weights_written(dense, {**chosen, **w}):
            assert value == pytest.approx(plain_nll(dense, held, set(removed)), rel=1e-5)
    with weights_written(dense, fit.weights):
        assert fit.record["holdout_nll_healed"] == pytest.approx(plain_nll(dense, held, set(removed)), rel=1e-5)
    assert fit.record["holdout_nll_healed"] <= fit.record["holdout_nll_unhealed"]


def down_weights(dense, run, t):
    name = f"model.layers.{run[0] - 1}.mlp.down_proj.weight"
    w = dict(dense.named_parameters())[name].detach().double()
    return {name: (torch.from_numpy(t).T @ w).float()}
