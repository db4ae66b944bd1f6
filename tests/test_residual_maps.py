"""The residual-stream map of issue 46 (step 1): fitted on the stream entering and leaving a run of removed blocks,
applied by a visible wrapper module, recovering a known map exactly."""

import numpy as np
import pytest
import torch
from torch import nn

import lorp
from lorp.errors import ConfigError
from lorp.heal.fit import apply_healing, fit_healer, healing_applied
from lorp.heal.holdout import token_nll
from lorp.heal.linear import RidgeStats, ridge_to_identity
from lorp.heal.residual import (MappedBlock, StreamMap, collect_stream_stats, fit_stream_maps, insert_stream_maps,
                                 stream_maps_inserted)
from lorp.model.blocks import find_blocks
from lorp.model.pruning import blocks_removed, remove_blocks


class LinearBlock(nn.Module):
    """A block that is exactly a linear map of the stream: ``x ↦ x A``."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.register_buffer("a", a)

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states @ self.a


def test_ridge_to_identity_on_stream_statistics_recovers_a_known_map_and_tends_to_identity():
    rng = np.random.default_rng(0)
    x, a = rng.standard_normal((200, 6)), rng.standard_normal((6, 6))
    stats = RidgeStats.zeros(6)
    stats.add(torch.from_numpy(x), torch.from_numpy(x @ a))
    assert np.allclose(ridge_to_identity(stats, 0.0), a, atol=1e-10)
    assert np.allclose(ridge_to_identity(stats, 1e9), np.eye(6), atol=1e-6)  # an infinite ridge is no repair


def test_a_run_that_is_a_linear_map_is_replaced_exactly(tiny_model):
    """Block 1 of the dense model is exactly x ↦ x A: the fitted map is A, and the pruned model with the map gives
    the dense model's logits (KV cache included)."""
    model = tiny_model("llama", 4)
    torch.manual_seed(1)
    a = torch.eye(32) + 0.1 * torch.randn(32, 32)
    path, blocks = find_blocks(model)
    blocks[1] = LinearBlock(a)
    ids = torch.randint(0, 128, (6, 12))
    mask = torch.ones_like(ids)
    stats = collect_stream_stats(model, ids, mask, [(1, 1)])
    assert stats[(1, 1)].tokens == 6 * 12
    t = ridge_to_identity(stats[(1, 1)], 0.0)
    assert np.allclose(t, a.double().numpy(), atol=1e-5)
    with torch.no_grad():
        dense = model(ids[:2]).logits
        dense_greedy = model.generate(ids[:1, :4], max_new_tokens=5, do_sample=False, use_cache=True)
    remove_blocks(insert_stream_maps(model, {(1, 1): torch.from_numpy(t)}), [1])
    _, kept = find_blocks(model)
    assert len(kept) == 3 and isinstance(kept[1], MappedBlock)
    assert "StreamMap(d=32, replaces removed blocks 1..1)" in str(model)  # visible, not a hidden hook
    with torch.no_grad():
        healed = model(ids[:2]).logits
        healed_greedy = model.generate(ids[:1, :4], max_new_tokens=5, do_sample=False, use_cache=True)
    assert torch.allclose(healed, dense, atol=1e-4), (healed - dense).abs().max()
    assert healed_greedy.tolist() == dense_greedy.tolist()


def test_the_identity_map_is_the_unhealed_pruned_model(tiny_model):
    model, reference = tiny_model("llama", 4), tiny_model("llama", 4)
    ids = torch.randint(0, 128, (2, 10))
    remove_blocks(insert_stream_maps(model, {(1, 2): torch.eye(32)}), [1, 2])
    remove_blocks(reference, [1, 2])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_runs_without_a_kept_block_after_them_are_refused(tiny_model):
    model = tiny_model("llama", 4)
    ids = torch.randint(0, 128, (1, 8))
    with pytest.raises(ConfigError, match="ending at the last block"):
        collect_stream_stats(model, ids, torch.ones_like(ids), [(2, 3)])
    with pytest.raises(ConfigError, match="no kept block after them"):
        insert_stream_maps(model, {(3, 3): torch.eye(32)})
    insert_stream_maps(model, {(1, 1): torch.eye(32)})
    with pytest.raises(ConfigError, match="already carries a stream map"):
        insert_stream_maps(model, {(1, 1): torch.eye(32)})
    assert StreamMap(np.eye(2), (4, 5))(torch.ones(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_stream_maps_inserted_is_undone_and_changes_only_inside(tiny_model):
    model = tiny_model("llama", 4)
    ids = torch.randint(0, 128, (2, 10))
    _, before = find_blocks(model)
    with torch.no_grad():
        dense = model(ids).logits
        with stream_maps_inserted(model, {(1, 1): 2.0 * torch.eye(32)}):
            assert isinstance(find_blocks(model)[1][2], MappedBlock)
            assert not torch.allclose(model(ids).logits, dense)
        assert find_blocks(model)[1] is before and torch.equal(model(ids).logits, dense)


def test_a_map_is_kept_on_held_out_rows_when_it_helps_and_the_model_is_left_unchanged(tiny_model):
    model = tiny_model("llama", 5)
    torch.manual_seed(2)
    path, blocks = find_blocks(model)
    blocks[2] = LinearBlock(torch.eye(32) + 0.3 * torch.randn(32, 32))  # a removed block no identity replaces
    ids = torch.randint(0, 128, (8, 16))
    maps, record = fit_stream_maps(model, ids, torch.ones_like(ids), [2, 4])
    assert record["holdout_rows"] == 2 and record["fit_rows"] == 6 and record["unhealed_runs"] == [[4, 4]]
    (entry,) = record["maps"]
    assert entry["run"] == [2, 2] and entry["block"] == 3 and entry["alpha"] != "identity"
    assert record["holdout_nll_healed"] < record["holdout_nll_unhealed"] == entry["holdout_nll_identity"]
    assert entry["mse_chosen"] < entry["mse_identity"] and set(maps) == {(2, 2)}
    assert entry["holdout_nll_chosen"] == min(entry["holdout_nll"].values())
    assert not any(isinstance(b, MappedBlock) for b in find_blocks(model)[1])  # the dense model is as it was
    fixed, rec = fit_stream_maps(model, ids, torch.ones_like(ids), [2], alphas=[0.0], fixed=True)
    assert np.allclose(fixed[(2, 2)], blocks[2].a.double().numpy(), atol=1e-5) and rec["holdout_rows"] == 0


def test_the_identity_is_kept_when_no_map_helps(tiny_model):
    """The removed block is the identity, so every candidate map is I up to rounding and none lowers the held-out
    NLL: no map is written."""
    model = tiny_model("llama", 4)
    path, blocks = find_blocks(model)
    blocks[1] = LinearBlock(torch.eye(32))
    ids = torch.randint(0, 128, (8, 16))
    maps, record = fit_stream_maps(model, ids, torch.ones_like(ids), [1])
    assert maps == {} and record["maps"][0]["alpha"] == "identity" and record["kept_maps"] == 0
    assert record["holdout_nll_healed"] == record["holdout_nll_unhealed"]
    with pytest.raises(ConfigError, match="needs at least 2"):
        fit_stream_maps(model, ids[:1], torch.ones_like(ids[:1]), [1])


def test_the_residual_healer_is_registered_and_its_fit_is_applied_and_undone(lorp_registry, tiny_model):
    """Through the healer hook: the fit holds the map ``fit_stream_maps`` keeps (float32), no weights; inside
    ``healing_applied`` the pruned model is healed, outside it the dense model is back bit for bit."""
    model = tiny_model("llama", 5)
    torch.manual_seed(2)
    _, blocks = find_blocks(model)
    blocks[2] = LinearBlock(torch.eye(32) + 0.3 * torch.randn(32, 32))
    ids = torch.randint(0, 128, (8, 16))
    healer = lorp_registry.healer("residual")
    assert "residual stream" in healer.description and "Ghosted Layers" in healer.source
    fit = fit_healer(healer, lorp.HealRequest(model=model, removed=(2,), calibration=ids,
                                              attention_mask=torch.ones_like(ids), registry=lorp_registry))
    maps, record = fit_stream_maps(model, ids, torch.ones_like(ids), [2])
    seconds = lambda r: [{k: v for k, v in m.items() if k != "solve_seconds"} for m in r["maps"]]  # noqa: E731
    assert fit.weights == {} and not fit.foldable and seconds(fit.record) == seconds(record)
    assert set(fit.stream_maps) == {(2, 2)} and fit.stream_maps[(2, 2)].dtype == torch.float32
    assert torch.equal(fit.stream_maps[(2, 2)], torch.from_numpy(maps[(2, 2)]).float())
    with torch.no_grad():
        dense = model(ids).logits
        with healing_applied(model, fit, lorp_registry), blocks_removed(model, [2], lorp_registry) as pruned:
            held = ids[0::4]  # holdout_split's rows
            healed = pruned(held).logits
            assert isinstance(find_blocks(pruned)[1][2], MappedBlock)
            nll, count = token_nll(healed, held, torch.ones_like(held))
            assert nll / count == pytest.approx(record["holdout_nll_healed"], rel=1e-5)  # the model the choice judged
        assert torch.equal(model(ids).logits, dense)
        apply_healing(model, fit, lorp_registry)
        remove_blocks(model, [2])
        assert torch.equal(model(held).logits, healed)  # for good: the same model as inside the with
    with pytest.raises(ConfigError, match="takes the settings alpha and alphas"):
        healer.check_settings({"ridge": 1})
    for bad in ({"alpha": True}, {"alphas": [0.1, False]}, {"alphas": ["0.1"]}, {"alpha": -1}, {"alphas": []}):
        with pytest.raises(ConfigError, match="alpha must be a number >= 0"):
            healer.check_settings(bad)
