"""Removing blocks leaves a real, consistent model: same function, generate, save/reload."""

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from lorp.errors import ConfigError
from lorp.model.blocks import find_blocks
from lorp.model.pruning import remove_blocks
from lorp.testing import TINY_ARCHITECTURES

IDS = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(0))


def skip_blocks(model, removed):
    """Make ``removed`` blocks identities on the dense model (what pruning must equal)."""
    def identity(_module, args, kwargs, _output):
        return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    _, blocks = find_blocks(model)
    return [blocks[i].register_forward_hook(identity, with_kwargs=True) for i in removed]


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen2"])
def test_pruned_model_equals_dense_model_with_blocks_skipped(tiny_model, arch):
    dense = tiny_model(arch, num_blocks=6)
    pruned = remove_blocks(copy.deepcopy(dense), [1, 4])
    skip_blocks(dense, [1, 4])
    with torch.no_grad():
        torch.testing.assert_close(pruned(input_ids=IDS).logits, dense(input_ids=IDS).logits, rtol=1e-5, atol=1e-5)


def test_config_and_layer_indices_follow_the_kept_blocks(tiny_model):
    model = tiny_model("gemma3_text", num_blocks=6)
    types = list(model.config.layer_types)
    remove_blocks(model, [0, 2, 3])
    assert model.config.num_hidden_layers == 3
    assert model.config.layer_types == [types[1], types[4], types[5]]
    assert [blk.self_attn.layer_idx for blk in model.model.layers] == [0, 1, 2]
    assert [blk.self_attn.layer_type for blk in model.model.layers] == model.config.layer_types


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_generate_and_save_reload_identical_logits(tiny_model, tmp_path, arch):
    model = remove_blocks(tiny_model(arch, num_blocks=5), [1, 3])
    assert len(find_blocks(model)[1]) == 3
    out = model.generate(input_ids=IDS[:1, :4], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 10)
    # with and without the KV cache, greedy decoding agrees
    out_nocache = model.generate(input_ids=IDS[:1, :4], max_new_tokens=6, do_sample=False, use_cache=False, pad_token_id=0)
    assert out.tolist() == out_nocache.tolist()
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 3
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=IDS).logits, model(input_ids=IDS).logits, rtol=0, atol=0)


@pytest.mark.parametrize("bad, match", [([7], "do not exist"), ([1, 1], "repeat"), ([0, 1, 2, 3], "all 4")])
def test_bad_block_lists(tiny_model, bad, match):
    with pytest.raises(ConfigError, match=match):
        remove_blocks(tiny_model("llama", num_blocks=4), bad)


def test_unknown_layout_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot find the transformer blocks of Linear: no model adapter recognises it"):
        remove_blocks(torch.nn.Linear(2, 2), [0])
