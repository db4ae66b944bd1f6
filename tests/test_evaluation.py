"""Perplexity reuse across pruned variants, FLOPs per token and decode speed."""

import pytest
import torch

from lorp.evaluation import SweepPerplexity, perplexities
from lorp.pruning import blocks_removed
from lorp.speed import decode_speed, flops_per_token
from lorp.testing import make_tiny_model

VARIANTS = [[1], [2, 3], [1, 4], [3, 5], [4]]


def windows():
    g = torch.Generator().manual_seed(0)
    return {"a": torch.randint(0, 128, (3, 12), generator=g), "b": torch.randint(0, 128, (2, 12), generator=g)}


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen2"])
def test_reused_states_give_the_plain_perplexity_of_every_variant(arch):
    model, w = make_tiny_model(arch, num_blocks=6), windows()
    scorer = SweepPerplexity(model, w, {min(v) for v in VARIANTS}, batch_size=2)
    assert scorer.reuse and scorer.stored_blocks == [1, 2, 3, 4]
    for name in w:
        assert scorer.dense[name]["nll"] == pytest.approx(
            perplexities(model, w, batch_size=2, progress=False)[name]["nll"], rel=1e-6)
    for removed in VARIANTS:
        fast = scorer(removed)
        with blocks_removed(model, removed):
            plain = perplexities(model, w, batch_size=2, progress=False)
        for name in w:
            assert fast[name]["nll"] == pytest.approx(plain[name]["nll"], rel=1e-5)
            assert fast[name]["tokens"] == plain[name]["tokens"] == w[name].numel() - w[name].shape[0]


def test_learned_positions_switch_reuse_off_and_stay_correct():
    model, w = make_tiny_model("gpt2", num_blocks=4), windows()
    scorer = SweepPerplexity(model, w, {1, 2})
    assert not scorer.reuse and scorer.stored_blocks == []
    with blocks_removed(model, [2]):
        plain = perplexities(model, w, progress=False)
    assert scorer([2])["a"]["nll"] == pytest.approx(plain["a"]["nll"], rel=1e-6)


def test_memory_cap_keeps_the_deepest_first_blocks():
    model, w = make_tiny_model("llama", num_blocks=6), windows()
    per_block = sum(x.numel() for x in w.values()) * 32 * 4
    scorer = SweepPerplexity(model, w, {1, 2, 4}, max_state_bytes=2 * per_block)
    assert scorer.stored_blocks == [2, 4]


def test_flops_per_token_counts_blocks_and_head():
    model = make_tiny_model("llama", num_blocks=4)
    block = sum(p.numel() for p in model.model.layers[0].parameters())
    head = model.lm_head.weight.numel()
    assert flops_per_token(model) == 2 * (4 * block + head)
    with blocks_removed(model, [1]):
        assert flops_per_token(model) == 2 * (3 * block + head)


def test_decode_speed_reports_a_positive_rate_and_rejects_bad_settings():
    model = make_tiny_model("llama", num_blocks=2)
    out = decode_speed(model, torch.tensor([[1, 2, 3]]), new_tokens=4, repeats=2)
    assert out["tokens_per_s"] > 0 and len(out["tokens_per_s_runs"]) == 2 and out["prompt_tokens"] == 3
    with pytest.raises(ValueError, match="new_tokens >= 2"):
        decode_speed(model, torch.tensor([[1]]), new_tokens=1)
