"""Perplexity reuse across pruned variants, FLOPs per token and decode speed."""

import math

import pytest
import torch

from lorp.evaluate.perplexity import SweepPerplexity, perplexities
from lorp.evaluate.speed import decode_speed, flops_per_token
from lorp.model.pruning import blocks_removed
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


def _old_windows_perplexity(windows, batch_size, logits_of):
    """The total as computed before per-window NLL was kept (one float32 sum per batch, added in a Python float)."""
    import math

    import torch.nn.functional as F

    total, count = 0.0, 0
    for i, lo in enumerate(range(0, windows.shape[0], batch_size)):
        ids = windows[lo:lo + batch_size]
        logits = logits_of(i, ids)[:, :-1].float()
        targets = ids[:, 1:]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum").item()
        count += targets.numel()
    return math.exp(total / count), total / count, count


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_window_nll_is_kept_per_window_and_leaves_the_totals_bit_identical(batch_size):
    from lorp.evaluate.perplexity import _windows_perplexity

    model = make_tiny_model("llama", num_blocks=2)
    w = torch.randint(0, 128, (5, 12), generator=torch.Generator().manual_seed(1))

    def logits_of(_i, ids):
        with torch.inference_mode():
            return model(input_ids=ids, use_cache=False).logits

    p = _windows_perplexity(w, batch_size, torch.device("cpu"), logits_of)
    assert (p.perplexity, p.nll, p.tokens) == _old_windows_perplexity(w, batch_size, logits_of)  # exactly
    assert len(p.window_nll) == p.windows == 5
    one = _windows_perplexity(w, 1, torch.device("cpu"), logits_of)
    if batch_size == 1:  # the window sums are the very terms of the total, added in the same order
        assert sum(p.window_nll) / p.tokens == p.nll
    assert p.window_nll == pytest.approx(one.window_nll, rel=1e-5)  # per window, whatever the batch
    assert math.fsum(p.window_nll) / p.tokens == pytest.approx(p.nll, rel=1e-6)


def test_perplexities_and_sweep_scorer_carry_window_nll():
    model, w = make_tiny_model("llama", num_blocks=4), windows()
    plain = perplexities(model, w, batch_size=2, progress=False)
    scorer = SweepPerplexity(model, w, {1}, batch_size=2)
    for name in w:
        assert len(plain[name]["window_nll"]) == w[name].shape[0]
        assert scorer.dense[name]["window_nll"] == pytest.approx(plain[name]["window_nll"], rel=1e-5)
        assert len(scorer([1, 2])[name]["window_nll"]) == w[name].shape[0]
