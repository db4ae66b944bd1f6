"""The residual-stream map of issue 46 (step 1): fitted on the stream entering and leaving a run of removed blocks,
applied by a visible wrapper module, recovering a known map exactly."""

import numpy as np
import pytest
import torch
from torch import nn

from lorp.errors import ConfigError
from lorp.heal.linear import RidgeStats, ridge_to_identity
from lorp.heal.residual import MappedBlock, StreamMap, collect_stream_stats, insert_stream_maps
from lorp.model.blocks import find_blocks
from lorp.model.pruning import remove_blocks


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
