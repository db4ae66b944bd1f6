"""Baselines on hand-made residual streams whose answers are worked out by hand."""

import math

import numpy as np
import pytest
import torch

from lorp.builtins.baselines import block_influence
from lorp.builtins.similarity import AngularDistanceAccumulator, stream_cosine
from lorp.errors import ConfigError
from lorp.evaluate.perplexity import CalibrationNLL
from lorp.method.capture import _last_tokens
from lorp.method.selection import select_blocks
from lorp.model.pruning import blocks_removed


def stream_from_angles(thetas, tokens=1):
    """States [N + 1, 1, tokens, 2]: state i is the unit vector at angle thetas[i] (every token)."""
    t = torch.tensor(thetas, dtype=torch.float32)
    v = torch.stack([torch.cos(t), torch.sin(t)], dim=-1)  # [N+1, 2]
    return v[:, None, None, :].expand(-1, 1, tokens, -1).clone()


def statistics(hidden):
    n = hidden.shape[0] - 1
    mask = torch.ones(hidden.shape[1:3], dtype=torch.bool)
    cos, ang = stream_cosine(n), AngularDistanceAccumulator(n)
    cos.update(hidden, mask)
    ang.update(_last_tokens(hidden, mask), torch.ones(hidden.shape[1], 1, dtype=torch.bool))
    c = cos.result()
    return {"stream-cosine": c, "angular-distance": ang.result(), "cosine": c[:n, :n]}


def choose(method, stats, budget, protected=(0, -1), **kw):
    return select_blocks(stats["cosine"], budget, allocation=method, statistics=stats, protected=protected, **kw)


# theta increments per block: 0.5, 0.1, 0.0, 0.9, 0.1 -> BI = 1 - cos(increment)
THETAS = [0.0, 0.5, 0.6, 0.6, 1.5, 1.6]


def test_block_influence_by_hand():
    bi = block_influence(statistics(stream_from_angles(THETAS))["stream-cosine"])
    np.testing.assert_allclose(bi, [1 - math.cos(d) for d in (0.5, 0.1, 0.0, 0.9, 0.1)], atol=1e-6)


def test_shortgpt_lowest_block_influence_respecting_protection():
    stats = statistics(stream_from_angles(THETAS))
    sel = choose("shortgpt", stats, 2)
    assert [r.block for r in sel.removals] == [2, 1]
    # original ShortGPT (nothing protected): blocks 1 and 4 tie at BI = 1 - cos 0.1; the shallower goes first
    assert [r.block for r in choose("shortgpt", stats, 2, protected=()).removals] == [2, 1]
    assert choose("shortgpt", stats, 3, protected=()).pruned == [1, 2, 4]
    assert sel.k is None and sel.labels is None


def test_streamline_picks_the_most_similar_span():
    stats = statistics(stream_from_angles(THETAS))
    # spans of 2 avoiding blocks 0 and 4: s=1 (h1 vs h3: 0.1 rad) beats s=2 (h2 vs h4: 0.9 rad)
    assert choose("streamline", stats, 2).pruned == [1, 2]


def test_streamline_final_span_compares_with_the_last_output():
    stats = statistics(stream_from_angles([0.0, 1.0, 2.0, 3.0, 3.05, 3.1]))
    # s=3 covers blocks 3, 4 and compares h3 with the last block's output h5 (0.1 rad)
    assert choose("streamline", stats, 2, protected=()).pruned == [3, 4]


def test_angular_uses_the_last_token_only():
    hidden = stream_from_angles(THETAS, tokens=3)
    # earlier tokens would favour span 2..3 (all identical there); the last token favours 1..2
    hidden[:, 0, :2] = stream_from_angles([0.0, 1.0, 2.0, 2.0, 2.0, 3.0], tokens=2)[:, 0]
    stats = statistics(hidden)
    d = stats["angular-distance"]
    assert d[1, 3] == pytest.approx(0.1 / math.pi, abs=1e-6)
    assert choose("angular", stats, 2).pruned == [1, 2]
    assert choose("streamline", stats, 2).pruned == [2, 3]  # all-token cosine disagrees


def test_contiguous_methods_return_runs_and_skip_protected():
    rng = np.random.default_rng(0)
    hidden = torch.tensor(rng.normal(size=(13, 2, 6, 8)), dtype=torch.float32).cumsum(0)
    stats = statistics(hidden)
    for method in ("streamline", "angular"):
        for budget in range(1, 11):
            pruned = choose(method, stats, budget).pruned
            assert pruned == list(range(pruned[0], pruned[0] + budget))
            assert 0 not in pruned and 11 not in pruned


def test_no_contiguous_span_is_a_clear_error():
    stats = statistics(stream_from_angles([0.1 * i for i in range(9)]))  # N = 8; eligible 1, 2, 4, 5
    with pytest.raises(ConfigError, match="no run of 3 consecutive unprotected blocks"):
        choose("streamline", stats, 3, protected=(0, 3, 6, 7))


def test_naive_references():
    stats = statistics(stream_from_angles([0.1 * i for i in range(9)]))  # N = 8
    assert choose("last", stats, 3).pruned == [4, 5, 6]
    a, b = choose("random", stats, 4, seed=1).pruned, choose("random", stats, 4, seed=1).pruned
    assert a == b and not {0, 7} & set(a)
    assert {tuple(choose("random", stats, 4, seed=s).pruned) for s in range(5)} != {tuple(a)}


def test_sleb_rescoring_by_hand():
    cost = {1: .5, 2: .1, 3: .3}

    def nll(removed):
        return sum(cost[b] for b in removed) + (1.0 if {2, 3} <= removed else 0.0)

    stats = statistics(stream_from_angles(THETAS))
    sel = choose("sleb", stats, 2, nll=nll)
    # step 1: 2 (0.1); step 2: {2,1} = 0.6 beats {2,3} = 1.4, though 3 alone is cheaper than 1
    assert [r.block for r in sel.removals] == [2, 1]
    assert [r.score for r in sel.removals] == pytest.approx([0.1, 0.6])


def test_sleb_without_a_model_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs forward passes"):
        choose("sleb", statistics(stream_from_angles(THETAS)), 1)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_sleb_prefix_reuse_changes_nothing(tiny_model, arch):
    model = tiny_model(arch, num_blocks=6)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    stats = statistics(stream_from_angles([0.1 * i for i in range(7)]))
    fast, slow = CalibrationNLL(model, ids), CalibrationNLL(model, ids, reuse=False)
    a, b = choose("sleb", stats, 3, nll=fast), choose("sleb", stats, 3, nll=slow)
    assert [r.block for r in a.removals] == [r.block for r in b.removals]
    np.testing.assert_allclose([r.score for r in a.removals], [r.score for r in b.removals], rtol=1e-5)
    assert fast.reuse == (arch != "gpt2")  # learned absolute positions cannot restart mid-model
    if fast.reuse:
        assert fast.partial_passes > fast.forward_passes


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_sleb_scored_tokens_are_the_last_ones(tiny_model, arch):
    """scored_tokens=k scores exactly the last k tokens of each sequence, by hand from a plain forward."""
    model = tiny_model(arch, num_blocks=6)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    k = 4
    nll = CalibrationNLL(model, ids, scored_tokens=k)
    for removed in (frozenset(), frozenset({2}), frozenset({2, 4})):
        with torch.inference_mode(), blocks_removed(model, sorted(removed)):
            logits = model(input_ids=ids, use_cache=False).logits.float()
        logp = torch.log_softmax(logits[:, -k - 1:-1], dim=-1)
        by_hand = -logp.gather(-1, ids[:, -k:, None]).mean().item()
        assert nll(removed) == pytest.approx(by_hand, rel=1e-5)
    full = CalibrationNLL(model, ids)
    assert full(frozenset({2})) != pytest.approx(nll(frozenset({2})), rel=1e-6)  # a different average
    with pytest.raises(ValueError, match="scored_tokens must be in 1..11"):
        CalibrationNLL(model, ids, scored_tokens=12)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen2", "gpt2"])
def test_dense_prefix_reuse_gives_the_plain_nll_of_unrelated_sets_in_one_partial_pass_each(tiny_model, arch):
    """span-bi-nll's candidates share no greedy prefix: each runs from the dense states entering its first
    removed block, and its NLL is the plain forward's (to 1e-5), scored tokens included."""
    model = tiny_model(arch, num_blocks=6)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(2))
    sets = [frozenset(s) for s in ({2, 3}, {1, 4}, {3, 4}, {1, 2, 3}, {4, 5}, {2, 5}, {1})]
    for scored in (None, 4):
        dense = CalibrationNLL(model, ids, prefix="dense", scored_tokens=scored)
        plain = CalibrationNLL(model, ids, reuse=False, scored_tokens=scored)
        greedy = CalibrationNLL(model, ids, scored_tokens=scored)
        got = [dense(s) for s in sets]
        np.testing.assert_allclose(got, [plain(s) for s in sets], rtol=1e-5)
        np.testing.assert_allclose(got, [greedy(s) for s in sets], rtol=1e-5)
        if dense.reuse:  # after the probe's two full passes, one partial pass per set ({4, 5} runs to the end: full)
            assert (dense.forward_passes, dense.partial_passes) == (3, 1 + len(sets) - 1)
            assert greedy.forward_passes > dense.forward_passes
        else:
            assert arch == "gpt2" and dense.partial_passes == 1  # the probe's, which failed: every set plain
    with pytest.raises(ValueError, match="prefix must be 'greedy' or 'dense'"):
        CalibrationNLL(model, ids, prefix="tree")
