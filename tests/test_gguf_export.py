"""GGUF export of a pruned model: kept blocks bit for bit and renumbered, per-layer metadata subset, Gemma 3's
index-patterned attention guarded (issue 45, first step), on tiny GGUF files the tests write themselves."""

import gguf
import numpy as np
import pytest

from lorp.errors import ConfigError
from lorp.model.gguf_export import attention_type, export_pruned_gguf


def write_tiny_gguf(path, arch="llama", blocks=4):
    """A GGUF with ``blocks`` blocks: per block an F32 norm and a Q8_0 matrix with distinct values, a per-layer
    metadata array, and embedding / output tensors."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(blocks)
    w.add_name("tiny")
    w.add_key_value(f"{arch}.attention.head_count", list(range(1, blocks + 1)), gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.UINT32)
    w.add_key_value(f"{arch}.context_length", 64, gguf.GGUFValueType.UINT32)
    w.add_tensor("token_embd.weight", rng.standard_normal((16, 32)).astype(np.float32))
    for b in range(blocks):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.full(32, b, dtype=np.float32))
        data = rng.standard_normal((8, 32)).astype(np.float32)
        w.add_tensor(f"blk.{b}.ffn_down.weight", gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_kept_blocks_are_copied_bit_for_bit_and_renumbered(tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    out = export_pruned_gguf(source, tmp_path / "out" / "pruned.gguf", [2, 1], note={"healer": "none"})
    src, got = gguf.GGUFReader(source), gguf.GGUFReader(out)
    assert got.get_field("llama.block_count").contents() == 2
    assert got.get_field("llama.attention.head_count").contents() == [1, 4]  # subset by the kept blocks 0 and 3
    assert got.get_field("llama.context_length").contents() == 64 and got.get_field("general.name").contents() == "tiny"
    assert got.get_field("general.lorp.removed_blocks").contents() == [1, 2]
    assert got.get_field("general.lorp.source_block_count").contents() == 4
    assert got.get_field("general.lorp.healer").contents() == "none"
    by_name = {t.name: t for t in src.tensors}
    expected = {"token_embd.weight": "token_embd.weight", "output_norm.weight": "output_norm.weight",
                **{f"blk.{new}.{part}": f"blk.{old}.{part}" for new, old in ((0, 0), (1, 3))
                   for part in ("attn_norm.weight", "ffn_down.weight")}}
    assert sorted(t.name for t in got.tensors) == sorted(expected)
    for t in got.tensors:
        original = by_name[expected[t.name]]
        assert t.tensor_type == original.tensor_type and bytes(t.data) == bytes(original.data), t.name
    assert got.get_field("general.lorp.source_sha256").contents() != ""
    assert not list((tmp_path / "out").glob("*.partial"))


def test_bad_removals_and_files_are_refused_and_leave_nothing(tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    for removed, match in (([4], r"distinct indices in 0\.\.3"), ([0, 1, 2, 3], "leaving at least one block")):
        with pytest.raises(ConfigError, match=match):
            export_pruned_gguf(source, tmp_path / "x.gguf", removed)
    (tmp_path / "not.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(ConfigError, match="is not a readable GGUF file"):
        export_pruned_gguf(tmp_path / "not.gguf", tmp_path / "x.gguf", [1])
    assert not (tmp_path / "x.gguf").exists() and not list(tmp_path.glob("*.partial"))


def test_gemma3_blocks_may_not_change_attention_type():
    assert [attention_type("gemma3", i) for i in range(7)] == ["sliding"] * 5 + ["global", "sliding"]
    assert attention_type("llama", 5) is None


def test_a_gemma3_removal_that_moves_a_global_block_is_refused(tmp_path):
    source = write_tiny_gguf(tmp_path / "g.gguf", arch="gemma3", blocks=12)
    with pytest.raises(ConfigError, match=r"block 5 \(global\) would become block 4 \(sliding\)"):
        export_pruned_gguf(source, tmp_path / "x.gguf", [0])
    out = export_pruned_gguf(source, tmp_path / "ok.gguf", [0, 1, 2, 3, 4, 5])  # a whole period: types kept
    assert gguf.GGUFReader(out).get_field("gemma3.block_count").contents() == 6


@pytest.mark.real_model
def test_smollm2_s_exported_gguf_gives_lorp_s_pruned_logits_and_generates(tmp_path, smollm2):
    """The real model: transformers loads the exported 26-block GGUF, its logits equal lorp's pruned model's
    (both dequantise the same tensors to float32), and it decodes greedily with the KV cache as lorp's does."""
    import torch
    from transformers import AutoModelForCausalLM

    from lorp.model.models import bundled_gguf
    from lorp.model.pruning import blocks_removed

    removed = [13, 14, 17, 25]
    out = export_pruned_gguf(bundled_gguf("smollm2-135m"), tmp_path / "pruned.gguf", removed)
    src, got = gguf.GGUFReader(bundled_gguf("smollm2-135m")), gguf.GGUFReader(out)
    assert got.get_field("llama.block_count").contents() == 26
    assert len(got.tensors) == len(src.tensors) - 4 * 9  # nine tensors per llama block
    exported = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="pruned.gguf", dtype=torch.float32).eval()
    assert exported.config.num_hidden_layers == 26
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad(), blocks_removed(smollm2.model, removed):
        reference = smollm2.model(ids).logits
        greedy = smollm2.model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
        mine = exported(ids).logits
        decoded = exported.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
    assert torch.allclose(mine, reference, atol=1e-4, rtol=0), (mine - reference).abs().max()
    assert decoded.tolist() == greedy.tolist()
