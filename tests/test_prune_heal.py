"""`lorp prune --heal`: the healed model saves as a standard model, reloads to the same logits, and bad input
writes nothing."""

import json
import shutil
import textwrap

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import lorp
from lorp.cli import main
from lorp.heal.saved import HEAL_MAPS
from lorp.errors import ConfigError, PluginError, UnknownNameError
from lorp.evaluate.perplexity import perplexity
from lorp.model.data import evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.healing import parse_heal_settings
from lorp.run.pipeline import PruneConfig
from lorp.run.gguf import export_run_folder
from lorp.run.prune import run_prune
from lorp.testing import make_tiny_model_folder


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    """A tiny model folder and the settings of a small healed run on it."""
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))

    def make(arch="llama", **kw):
        folder, text = make_tiny_model_folder(tmp_path / arch, arch=arch, num_blocks=6)
        settings = dict(model=str(folder), budget=2, calibration=str(text), num_samples=8, seq_len=8,
                        eval_corpora=(str(text),), eval_seq_len=8, eval_tokens=64, progress=False, heal="linear")
        return folder, PruneConfig(**{**settings, **kw})
    return make


def test_healed_run_saves_a_standard_model_that_reloads_to_the_same_logits(tiny_run, tmp_path):
    """Tiny Llama (the word-level test tokenizer does not load under a Qwen2 config; the Qwen2 fold is
    tested in test_linear_healer.py, the real model below)."""
    folder, config = tiny_run()
    out = tmp_path / "run"
    run = run_prune(config, out_dir=out)
    results = json.loads((out / "results.json").read_text())
    healing = results["healing"]
    assert healing["healer"] == "linear" and healing["plugin"]["plugin"] == "lorp.builtins.healers"
    assert results["plugins"]["healer"]["name"] == "linear" and results["timings"]["heal_fit_s"] > 0
    maps = healing["record"]["maps"]
    assert maps and all(m["block"] == m["run"][0] - 1 for m in maps)

    reloaded = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    assert reloaded.config.num_hidden_layers == 6 - 2
    ids = torch.tensor([[3, 5, 7, 11, 13, 17, 19, 23]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, run.model(input_ids=ids).logits, rtol=0, atol=1e-6)
    cached = reloaded.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
    plain = reloaded.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False)
    assert cached.shape == (1, 14) and torch.equal(cached, plain)

    # only the folded down_proj weights differ from the dense model's kept blocks
    dense = AutoModelForCausalLM.from_pretrained(folder).eval()
    kept = [b for b in range(6) if b not in results["pruned"]]
    folded = {f"model.layers.{kept.index(m['block'])}.mlp.down_proj.weight" for m in maps if m["alpha"] != "identity"}
    dense_params = dict(dense.named_parameters())
    for name, p in reloaded.named_parameters():
        if name.startswith("model.layers."):
            i, rest = name.split(".", 3)[2:]
            source = dense_params[f"model.layers.{kept[int(i)]}.{rest}"]
        else:
            source = dense_params[name]
        assert torch.equal(p, source) != (name in folded), name

    # the results describe the saved model: after == healed; the unhealed numbers are a plain run's
    plain_run = run_prune(PruneConfig(**{**config.__dict__, "heal": "none", "save_model": False}))
    assert plain_run.results["healing"] is None and plain_run.results["pruned"] == results["pruned"]
    corpus = config.eval_corpora[0]
    assert healing["perplexity"]["unhealed"][corpus]["nll"] == pytest.approx(
        plain_run.results["perplexity"]["after"][corpus]["nll"], abs=1e-6)
    assert results["perplexity"]["after"][corpus] == healing["perplexity"]["healed"][corpus]
    windows = evaluation_windows(load_model(str(folder)).tokenizer, load_corpus(corpus), 8, 64)
    assert perplexity(reloaded, windows, progress=False).nll == pytest.approx(
        healing["perplexity"]["healed"][corpus]["nll"], abs=1e-6)


def test_a_residual_healed_run_saves_its_maps_beside_the_model_and_load_healed_rebuilds_it(tiny_run, tmp_path):
    """``--heal residual`` (a fixed alpha, so a map is always kept): the maps are in heal_maps.safetensors, a plain
    from_pretrained is refused saying why, ``lorp.load_healed`` gives the evaluated model's logits and perplexity,
    and a GGUF export is refused."""
    folder, config = tiny_run(heal="residual", heal_settings={"alpha": 0.1})
    out = tmp_path / "run"
    run = run_prune(config, out_dir=out)
    results = json.loads((out / "results.json").read_text())
    healing = results["healing"]
    runs = [m["run"] for m in healing["record"]["maps"]]
    assert healing["weights"] == [] and healing["stream_maps"] == runs and runs
    assert (out / "model" / HEAL_MAPS).is_file() and results["plugins"]["healer"]["name"] == "residual"
    reloaded_params = sum(p.numel() for p in lorp.load_healed(out).parameters())
    assert results["parameters"]["after"] == reloaded_params + len(runs) * 32 * 32  # the maps' values count
    with pytest.raises(ValueError, match="fold into no weight.*lorp.load_healed"):
        AutoModelForCausalLM.from_pretrained(out / "model")
    reloaded = lorp.load_healed(out)
    assert "StreamMap(d=32, replaces removed blocks" in str(reloaded) and reloaded.config.num_hidden_layers == 4
    ids = torch.tensor([[3, 5, 7, 11, 13, 17, 19, 23]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, run.model(input_ids=ids).logits, rtol=0, atol=0)
    cached = reloaded.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
    assert torch.equal(cached, reloaded.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False))
    corpus = config.eval_corpora[0]
    windows = evaluation_windows(load_model(str(folder)).tokenizer, load_corpus(corpus), 8, 64)
    assert perplexity(reloaded, windows, progress=False).nll == pytest.approx(
        healing["perplexity"]["healed"][corpus]["nll"], abs=1e-6)
    assert healing["perplexity"]["healed"][corpus]["nll"] != healing["perplexity"]["unhealed"][corpus]["nll"]
    with pytest.raises(ConfigError, match="residual-stream maps .* fold into no weight"):
        export_run_folder(out, tmp_path / "x.gguf")
    with pytest.raises(ConfigError, match="fold into no weight"):
        run_prune(config, out_dir=tmp_path / "run2", gguf_path=tmp_path / "y.gguf")
    assert not (tmp_path / "run2").exists() and not (tmp_path / "y.gguf").exists()
    with pytest.raises(ConfigError, match="holds no saved model"):
        lorp.load_healed(tmp_path)
    damaged_folders_are_refused_in_one_line(out, tmp_path, ids, reloaded)


def damaged_folders_are_refused_in_one_line(out, tmp_path, ids, healed):
    """``load_healed`` on a changed or lost maps file, an unmarked config, a plain save_pretrained of the healed
    model: one ConfigError naming what is wrong; ``lorp.save_healed`` re-saves it faithfully."""
    def copy(name):
        target = tmp_path / name
        shutil.copytree(out / "model", target)
        return target

    with pytest.raises(ConfigError, match="does not exist"):
        lorp.load_healed(tmp_path / "nowhere")
    lost = copy("lost")
    (lost / HEAL_MAPS).unlink()
    with pytest.raises(ConfigError, match="marked as a residual-healed model, but heal_maps.safetensors is missing"):
        lorp.load_healed(lost)
    truncated = copy("truncated")
    (truncated / HEAL_MAPS).write_bytes((out / "model" / HEAL_MAPS).read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"heal_maps.safetensors cannot be read"):
        lorp.load_healed(truncated)
    tensors = load_file(out / "model" / HEAL_MAPS)
    key = next(iter(tensors))
    with safe_open(str(out / "model" / HEAL_MAPS), framework="pt") as f:
        meta = f.metadata()
    cases = [({**tensors, key: torch.eye(5)}, meta, r"must be a finite float \[32, 32\]"),
             ({**tensors, key: torch.full((32, 32), float("nan"))}, meta, "must be a finite float"),
             ({**tensors, "abc": tensors[key].clone()}, meta, r"entry 'abc' \(block missing\)"),
             (tensors, {**meta, key: "99"}, "block 99"),
             (tensors, {**meta, "version": "2"}, "not a maps file this lorp wrote"),
             ({**tensors, "0-0": tensors[key].clone()}, {**meta, "0-0": meta[key]}, "two maps precede block")]
    for i, (values, metadata, message) in enumerate(cases):
        changed = copy(f"changed{i}")
        save_file(values, str(changed / HEAL_MAPS), metadata=metadata)
        with pytest.raises(ConfigError, match=message):
            lorp.load_healed(changed)
    unmarked = copy("unmarked")  # config.json set back by hand: the maps are still applied
    config = json.loads((unmarked / "config.json").read_text())
    config["model_type"] = config.pop("lorp_model_type")
    (unmarked / "config.json").write_text(json.dumps(config))
    with torch.no_grad():
        reference = healed(input_ids=ids).logits
        assert torch.equal(lorp.load_healed(unmarked)(input_ids=ids).logits, reference)
        healed.save_pretrained(tmp_path / "plain")  # what a user might do: names of the wrappers, no maps file
        with pytest.raises(ConfigError, match="plain save_pretrained of a model carrying residual-stream maps"):
            lorp.load_healed(tmp_path / "plain")
        assert lorp.save_healed(healed, tmp_path / "again") == sorted(tensors)
        assert torch.equal(lorp.load_healed(tmp_path / "again")(input_ids=ids).logits, reference)


def test_a_healed_gemma3_saves_and_reloads_with_its_layer_types_and_norm_gains(tiny_run, tmp_path):
    """Gemma 3's fold also writes the post-MLP norm's gain, and its config keeps one layer type per kept block: a
    plain AutoModelForCausalLM reloads the saved folder to the same logits (alpha fixed, so the fold is written)."""
    folder, config = tiny_run("gemma3_text", heal_settings={"alpha": 0.01}, budget=2)
    out = tmp_path / "gemma-run"
    run = run_prune(config, out_dir=out)
    results = json.loads((out / "results.json").read_text())
    maps = results["healing"]["record"]["maps"]
    assert maps and all(m["fold"]["kind"] == "post-norm, scaled" and m["alpha"] == 0.01 for m in maps)
    dense = AutoModelForCausalLM.from_pretrained(folder).eval()
    reloaded = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    kept = [b for b in range(6) if b not in results["pruned"]]
    assert reloaded.config.num_hidden_layers == 4
    assert list(reloaded.config.layer_types) == [dense.config.layer_types[b] for b in kept]
    for m in maps:  # the folded block's norm gain and down_proj are the healed ones, saved and reloaded
        i = kept.index(m["block"])
        gain = reloaded.model.layers[i].post_feedforward_layernorm.weight
        assert not torch.equal(gain, dense.model.layers[m["block"]].post_feedforward_layernorm.weight)
        torch.testing.assert_close(gain, run.model.model.layers[i].post_feedforward_layernorm.weight, rtol=0, atol=0)
    ids = torch.tensor([[3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 2, 4]])  # longer than the sliding window (8)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, run.model(input_ids=ids).logits, rtol=0, atol=1e-6)
    corpus = config.eval_corpora[0]
    windows = evaluation_windows(load_model(str(folder)).tokenizer, load_corpus(corpus), 8, 64)
    assert perplexity(reloaded, windows, progress=False).nll == pytest.approx(
        results["healing"]["perplexity"]["healed"][corpus]["nll"], abs=1e-6)


def test_cli_heal_settings_reach_the_healer_and_are_recorded(tiny_run, tmp_path):
    folder, config = tiny_run()
    out = tmp_path / "cli-run"
    res = CliRunner().invoke(main, [
        "--no-plugin-autoload", "prune", "--budget", "2", "--model", str(folder), "--calibration", config.calibration,
        "--eval", config.calibration, "--samples", "8", "--seq-len", "8", "--eval-seq-len", "8", "--eval-tokens", "64",
        "--heal", "linear", "--heal-setting", "alpha=0.01", "--out", str(out), "--no-save-model"])
    assert res.exit_code == 0, res.output
    assert "healer linear (fitted in" in res.output and "perplexity unhealed -> healed" in res.output
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["heal"] == "linear" and results["config"]["heal_settings"] == {"alpha": 0.01}
    assert results["healing"]["settings"] == {"alpha": 0.01}
    assert [m["alpha"] for m in results["healing"]["record"]["maps"]] == [0.01] * len(results["healing"]["record"]["maps"])
    refused = CliRunner().invoke(main, ["eval", "--pruned-from", str(out / "results.json"), "--tasks", "arc_easy"])
    assert refused.exit_code != 0 and "is a healed run" in refused.output


def test_parse_heal_settings_reads_json_values():
    assert parse_heal_settings(["alpha=0.1", "alphas=[0, 0.01]", "mode=per-cluster"]) == {
        "alpha": 0.1, "alphas": [0, 0.01], "mode": "per-cluster"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_heal_settings(["alpha"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_heal_settings(["alpha=1", "alpha=2"])


WRONG_SHAPE = '''
import torch
import lorp


def wrong(request):
    name = "model.layers.0.mlp.down_proj.weight"
    return {name: torch.zeros(3, 3)}, {}


@lorp.hookimpl
def lorp_register_healers(register):
    register(lorp.Healer(name="wrong-shape", heal=wrong, description="returns a wrong shape (test)"))
'''


def test_bad_heal_input_gives_one_clear_error_and_writes_nothing(tiny_run, tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "wrong_shape_healer.py").write_text(textwrap.dedent(WRONG_SHAPE))
    registry = load_registry(PluginSettings(autoload=True, plugin_dirs=(tmp_path / "plugins",)))
    assert "wrong-shape" in registry.components["healer"]
    cases = [
        ({"heal": "linaer"}, UnknownNameError, "known healers: linear, none, residual, sequential, wrong-shape"),
        ({"heal": "none", "heal_settings": {"alpha": 1}}, ConfigError, "no healer was chosen"),
        ({"heal_settings": {"alpha": -1.0}}, ConfigError, "alpha"),
        ({"heal_settings": {"ridge": 1.0}}, ConfigError, "unknown"),
        ({"heal": "wrong-shape"}, PluginError, r"healer 'wrong-shape': weight .* has shape \(3, 3\)"),
    ]
    for i, (change, error, message) in enumerate(cases):
        _, config = tiny_run(**change)
        out = tmp_path / f"out{i}"
        with pytest.raises(error, match=message):
            run_prune(config, out_dir=out, registry=registry)
        assert not out.exists(), change


@pytest.mark.real_model
def test_healed_smollm2_saves_reloads_and_generates(tmp_path):
    config = PruneConfig(budget=2, num_samples=8, seq_len=64, eval_corpora=("ptb",), eval_tokens=512, progress=False,
                         heal="linear")
    out = tmp_path / "run"
    run = run_prune(config, out_dir=out)
    results = json.loads((out / "results.json").read_text())
    assert results["healing"]["record"]["maps"] and results["healing"]["fit_seconds"] > 0
    reloaded = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    assert reloaded.config.num_hidden_layers == 28
    ids = run.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, run.model(input_ids=ids).logits, rtol=0, atol=1e-5)
    cached = reloaded.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
    assert cached.shape[1] == ids.shape[1] + 8
    assert torch.equal(cached, reloaded.generate(ids, max_new_tokens=8, do_sample=False, use_cache=False))
    windows = evaluation_windows(run.tokenizer, load_corpus("ptb"), 256, 512)
    assert perplexity(reloaded, windows, progress=False).nll == pytest.approx(
        results["healing"]["perplexity"]["healed"]["ptb"]["nll"], abs=1e-5)


@pytest.mark.real_model
def test_residual_healed_smollm2_reloads_with_load_healed_and_generates(tmp_path):
    """The issue's path on the real model: ``lorp prune --heal residual`` saves the maps, a plain from_pretrained is
    refused, and ``lorp.load_healed`` gives the evaluated model: its logits, its perplexity, the same greedy text."""
    config = PruneConfig(budget=4, allocation="shortgpt", num_samples=8, seq_len=64, eval_corpora=("ptb",),
                         eval_tokens=512, progress=False, heal="residual", heal_settings={"alpha": 0.01})
    out = tmp_path / "run"  # a fixed alpha: every run's map is kept, so the save and load paths are exercised
    run = run_prune(config, out_dir=out)
    results = json.loads((out / "results.json").read_text())
    healing = results["healing"]
    assert healing["stream_maps"] == [m["run"] for m in healing["record"]["maps"]] and healing["stream_maps"]
    with pytest.raises(ValueError, match="lorp.load_healed"):
        AutoModelForCausalLM.from_pretrained(out / "model")
    reloaded = lorp.load_healed(out)
    ids = run.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, run.model(input_ids=ids).logits, rtol=0, atol=1e-5)
    cached = reloaded.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True)
    assert torch.equal(cached, run.model.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True))
    windows = evaluation_windows(run.tokenizer, load_corpus("ptb"), 256, 512)
    assert perplexity(reloaded, windows, progress=False).nll == pytest.approx(
        healing["perplexity"]["healed"]["ptb"]["nll"], abs=1e-5)
