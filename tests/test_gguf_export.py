"""GGUF export of a pruned model: kept blocks bit for bit and renumbered, per-layer metadata subset, Gemma 3's
index-patterned attention guarded (issue 45, first step), on tiny GGUF files the tests write themselves."""

import json
import re

import gguf
import numpy as np
import pytest

from lorp.errors import ConfigError
from lorp.model.gguf_export import (attention_type, encode_tensor, export_pruned_gguf, gguf_tensor_name,
                                    to_gguf_layout)


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


def test_healed_tensors_are_written_in_their_type_and_the_rest_stays_bit_for_bit(tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    src = gguf.GGUFReader(source)
    healed = np.arange(8 * 32, dtype=np.float32).reshape(8, 32) / 100.0
    gain = np.linspace(-1.0, 1.0, 32, dtype=np.float32)
    for kind, tolerance in (("F32", 0.0), ("F16", 1e-3), ("Q8_0", 0.02)):
        out = export_pruned_gguf(source, tmp_path / f"{kind}.gguf", [1], healed_type=kind,
                                 replaced={"blk.2.ffn_down.weight": healed, "blk.3.attn_norm.weight": gain})
        got = gguf.GGUFReader(out)
        by_name = {t.name: t for t in got.tensors}
        down, norm = by_name["blk.1.ffn_down.weight"], by_name["blk.2.attn_norm.weight"]  # old 2 and 3, renumbered
        assert down.tensor_type == gguf.GGMLQuantizationType[kind]
        assert norm.tensor_type == gguf.GGMLQuantizationType.F32  # a 1-D gain stays F32 whatever the type
        values = gguf.quants.dequantize(down.data, down.tensor_type).reshape(8, 32)
        assert np.max(np.abs(values - healed)) <= tolerance
        assert np.array_equal(np.asarray(norm.data), gain)
        assert got.get_field("general.lorp.healed_tensors").contents() == ["blk.1.ffn_down.weight",
                                                                            "blk.2.attn_norm.weight"]
        assert got.get_field("general.lorp.healed_type").contents() == kind
        originals = {t.name: t for t in src.tensors}
        for new, old in (("blk.0.ffn_down.weight", "blk.0.ffn_down.weight"), ("blk.2.ffn_down.weight",
                                                                              "blk.3.ffn_down.weight")):
            assert bytes(by_name[new].data) == bytes(originals[old].data)
    # the Q8_0 bytes are gguf-py's quantiser's, so a reader dequantises exactly what it would
    assert np.array_equal(encode_tensor(healed, "Q8_0")[0], gguf.quants.quantize(healed, gguf.GGMLQuantizationType.Q8_0))


def test_bad_healed_tensors_are_refused_before_anything_is_written(tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    cases = (({"blk.1.ffn_down.weight": np.zeros((8, 32))}, "belongs to removed block 1"),
             ({"blk.0.ffn_gate.weight": np.zeros((8, 32))}, "is not in"),
             ({"blk.0.ffn_down.weight": np.zeros((32, 8))}, r"has shape \(32, 8\), the source's is \(8, 32\)"))
    for replaced, match in cases:
        with pytest.raises(ConfigError, match=match):
            export_pruned_gguf(source, tmp_path / "x.gguf", [1], replaced=replaced)
    with pytest.raises(ConfigError, match="one of F16, Q8_0, F32, not 'Q4_K'"):
        export_pruned_gguf(source, tmp_path / "x.gguf", [1], replaced={"blk.0.ffn_down.weight": np.zeros((8, 32))},
                           healed_type="Q4_K")
    with pytest.raises(ConfigError, match="multiple of 32"):
        encode_tensor(np.zeros((4, 20), dtype=np.float32), "Q8_0")
    assert not (tmp_path / "x.gguf").exists() and not list(tmp_path.glob("*.partial"))


def test_hugging_face_names_and_layouts_map_to_the_gguf_s():
    assert gguf_tensor_name("llama", "model.layers.12.mlp.down_proj.weight", 30) == "blk.12.ffn_down.weight"
    assert gguf_tensor_name("gemma3", "model.layers.3.post_feedforward_layernorm.weight", 18) == "blk.3.post_ffw_norm.weight"
    with pytest.raises(ConfigError, match="has no GGUF tensor name"):
        gguf_tensor_name("llama", "model.layers.1.mlp.nonsense.weight", 30)
    w = np.array([0.5, -1.0], dtype=np.float32)
    assert to_gguf_layout("gemma3", "blk.3.post_ffw_norm.weight", w).tolist() == [1.5, 0.0]  # Gemma stores 1 + w
    assert to_gguf_layout("llama", "blk.3.ffn_norm.weight", w).tolist() == [0.5, -1.0]
    assert to_gguf_layout("qwen2", "blk.0.ffn_down.weight", np.eye(2)).dtype == np.float32
    with pytest.raises(ConfigError, match="stored permuted"):
        to_gguf_layout("llama", "blk.0.attn_q.weight", np.eye(2))
    with pytest.raises(ConfigError, match="not phi3"):
        to_gguf_layout("phi3", "blk.0.ffn_down.weight", np.eye(2))


def write_run_folder(folder, *, weights=("model.layers.2.mlp.down_proj.weight",), save=True, spec="smollm2-135m"):
    """A lorp prune run folder of the tiny 4-block model without block 1, healed at dense block 2 (saved as block 1)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    results = {"schema": "lorp.prune", "model": {"spec": spec}, "config": {"allocation": "shortgpt"}, "budget": 1,
               "pruned": [1], "kept": [0, 2, 3], "git_commit": "abc123", "model_dir": "model",
               "healing": {"healer": "linear", "weights": list(weights)}}
    (folder / "results.json").write_text(json.dumps(results))
    healed = (np.arange(8 * 32, dtype=np.float32).reshape(8, 32) - 128) / 64.0
    if save:
        (folder / "model").mkdir()
        save_file({"model.layers.1.mlp.down_proj.weight": healed,
                   "model.layers.0.mlp.down_proj.weight": np.zeros((8, 32), dtype=np.float32)},
                  str(folder / "model" / "model.safetensors"))
    return healed


def test_export_gguf_takes_a_run_folder_s_healed_weights_from_its_saved_model(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import lorp.run.gguf as run_gguf
    from lorp.cli import main

    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    monkeypatch.setattr(run_gguf, "bundled_gguf", lambda key: source)
    healed = write_run_folder(tmp_path / "run")
    res = CliRunner().invoke(main, ["export-gguf", str(tmp_path / "run"), str(tmp_path / "out.gguf"), "--gguf-type", "Q8_0"])
    assert res.exit_code == 0, res.output
    got = gguf.GGUFReader(tmp_path / "out.gguf")
    by_name, originals = {t.name: t for t in got.tensors}, {t.name: t for t in gguf.GGUFReader(source).tensors}
    down = by_name["blk.1.ffn_down.weight"]  # dense block 2, healed, read from the saved block 1
    assert down.tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert np.array_equal(down.data, gguf.quants.quantize(healed, gguf.GGMLQuantizationType.Q8_0))
    for new, old in ((0, 0), (2, 3)):  # the unhealed blocks' tensors as in the source, not the saved zeros
        assert bytes(by_name[f"blk.{new}.ffn_down.weight"].data) == bytes(originals[f"blk.{old}.ffn_down.weight"].data)
    assert got.get_field("general.lorp.healer").contents() == "linear"
    assert got.get_field("general.lorp.method").contents() == "shortgpt"
    assert got.get_field("general.lorp.lorp_commit").contents() == "abc123"
    assert got.get_field("general.lorp.healed_tensors").contents() == ["blk.1.ffn_down.weight"]


def test_export_gguf_refuses_what_it_cannot_export_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import lorp.run.gguf as run_gguf
    from lorp.cli import main
    from lorp.run.gguf import check_gguf_export

    monkeypatch.setattr(run_gguf, "bundled_gguf", lambda key: write_tiny_gguf(tmp_path / "tiny.gguf"))
    (tmp_path / "nothing").mkdir()
    old = tmp_path / "old"
    write_run_folder(old)
    record = json.loads((old / "results.json").read_text())
    del record["healing"]["weights"]  # a run folder of a lorp before export-gguf
    (old / "results.json").write_text(json.dumps(record))
    write_run_folder(tmp_path / "unsaved", save=False)
    cases = {"nothing": "holds no results.json", "old": "did not record which weights its healer changed",
             "unsaved": "holds no saved model"}
    for name, match in cases.items():
        res = CliRunner().invoke(main, ["export-gguf", str(tmp_path / name), str(tmp_path / "x.gguf")])
        assert res.exit_code != 0 and match in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "x.gguf").exists()
    local = tmp_path / "local-model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a local model. Convert it with llama.cpp"):
        check_gguf_export(str(local), tmp_path / "x.gguf")
    with pytest.raises(ConfigError, match="is a hub model"):
        check_gguf_export("org/some-model", tmp_path / "x.gguf")
    with pytest.raises(ConfigError, match="is a folder; give a file path"):
        check_gguf_export("smollm2-135m", tmp_path)
    res = CliRunner().invoke(main, ["prune", "--model", str(local), "--budget", "1", "--gguf", str(tmp_path / "x.gguf")])
    assert res.exit_code != 0 and "is a local model" in res.output, res.output  # before the model loads


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


@pytest.mark.real_model
def test_lorp_prune_heal_linear_gguf_on_smollm2_writes_a_file_transformers_runs(tmp_path):
    """Issue 45's command: `lorp prune --model smollm2-135m --budget 4 --heal linear --gguf out.gguf` writes 26
    blocks; every tensor the healer did not change is the source's, byte for byte; the healed ones are F16; and
    transformers' model of the file gives the saved healed model's logits within F16 rounding of the healed
    tensors, and the same greedy KV-cache decode."""
    import torch
    from click.testing import CliRunner
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorp.cli import main
    from lorp.model.models import bundled_gguf

    res = CliRunner().invoke(main, ["prune", "--model", "smollm2-135m", "--budget", "4", "--heal", "linear",
                                    "--gguf", str(tmp_path / "out.gguf"), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["gguf"] == {"path": str(tmp_path / "out.gguf"), "healed_type": "F16"}
    got, src = gguf.GGUFReader(tmp_path / "out.gguf"), gguf.GGUFReader(bundled_gguf("smollm2-135m"))
    assert got.get_field("llama.block_count").contents() == 26
    healed = set(got.get_field("general.lorp.healed_tensors").contents())
    kept, originals = results["kept"], {t.name: t for t in src.tensors}
    assert healed and len(healed) == len(results["healing"]["weights"])
    for t in got.tensors:
        m = re.match(r"blk\.(\d+)\.(.+)", t.name)
        old = originals[f"blk.{kept[int(m.group(1))]}.{m.group(2)}" if m else t.name]
        if t.name in healed:
            assert t.tensor_type == gguf.GGMLQuantizationType.F16 and t.name.endswith("ffn_down.weight")
        else:
            assert t.tensor_type == old.tensor_type and bytes(t.data) == bytes(old.data), t.name
    exported = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="out.gguf", dtype=torch.float32).eval()
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    ids = tokenizer("The capital of France is Paris. The river that runs through it is the", return_tensors="pt").input_ids
    with torch.no_grad():
        mine, reference = exported(ids).logits, saved(ids).logits
        decoded = exported.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
        greedy = saved.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
    # F16 keeps ~3 significant digits of each healed weight; on this prompt that moved logits by 7e-3 (of 28)
    assert (mine - reference).abs().max() < 0.05, (mine - reference).abs().max()
    assert decoded.tolist() == greedy.tolist()
