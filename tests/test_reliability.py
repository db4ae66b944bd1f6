"""Reliability: plugins cannot end or hijack a run, the cache cannot lie, inputs are checked before the work.

Each test is one case of a class of failure found by trying lorp with bad input
(issue "Reliability"); the class is fixed, the case stays as a test.
"""

import json
import multiprocessing
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import lorp.run.pipeline
import lorp.run.sweep  # noqa: F401  (patched through lorp.run.sweep below)
from lorp.cli import main
from lorp.errors import ConfigError, PluginError, StorageError
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.pipeline import PruneConfig
from lorp.run.prune import run_prune
from lorp.run.sweep import SweepConfig, run_sweep
from lorp.store import cache
from lorp.store.atomic import staged_dir
from lorp.testing import make_tiny_model_folder
from lorp.testing import symmetric_matrix as sym

S30 = sym(30, {}, fill=0.5)


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny(tmp_path, private_cache):
    """A tiny random local model with a text file: a complete offline run in about a second."""
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    config = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8,
                         eval_corpora=(str(text),), eval_seq_len=8, eval_tokens=64, progress=False, sleb_samples=2,
                         budget=2, save_model=False)
    return config, folder, text


def one_error_line(res) -> str:
    """The CLI's answer to bad input: exit status 2 and exactly one line, no traceback."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


# -- 1. plugins --------------------------------------------------------------------------------------------------

def test_plugin_that_calls_sys_exit_at_import_stops_with_one_line_naming_it(runner, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "quits.py").write_text("import sys\nsys.exit(0)\n")
    np.save(tmp_path / "S.npy", S30)
    res = runner.invoke(main, ["--plugins-dir", str(d), "select", "--similarity", str(tmp_path / "S.npy"),
                               "--budget", "2"])
    line = one_error_line(res)
    assert "quits.py" in line and "sys.exit(0)" in line and "--deny-plugin quits" in line
    assert "quits" not in sys.modules  # nothing half-imported is left behind


def test_denied_plugin_that_quits_is_not_imported(runner, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "quits.py").write_text("import sys\nsys.exit(0)\n")
    np.save(tmp_path / "S.npy", S30)
    res = runner.invoke(main, ["--plugins-dir", str(d), "--deny-plugin", "quits", "select", "--similarity",
                               str(tmp_path / "S.npy"), "--budget", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)["pruned"]) == 2


def test_plugin_that_ends_the_process_at_import_is_named(runner, tmp_path, private_cache):
    d = tmp_path / "d"
    d.mkdir()
    (d / "hard_exit.py").write_text("import os\nos._exit(0)\n")
    res = runner.invoke(main, ["--plugins-dir", str(d), "plugins"])
    line = one_error_line(res)
    assert f"local plugin {d.resolve()}/hard_exit.py ended the process at import (exit status 0" in line
    assert "--deny-plugin hard_exit" in line
    (d / "hard_exit.py").write_text("X = 1\n")  # fixed: probed again (the content changed), then loaded
    os.environ.pop("LORP_PLUGINS_DIR", None)  # the first call set it in this process
    res = runner.invoke(main, ["--plugins-dir", str(d), "plugins"])
    assert res.exit_code == 0 and "hard_exit" in res.output
    assert len(list((private_cache / "plugin-probes").iterdir())) == 1  # only the clean probe is remembered


def test_plugin_file_named_like_an_importable_module_is_refused(tmp_path):
    # `antigravity` is a standard-library module that nothing imports: loading the file
    # under that name would shadow it for the rest of the process.
    (tmp_path / "antigravity.py").write_text("x = 1\n")
    with pytest.raises(PluginError, match="would shadow it; rename the file"):
        load_registry(PluginSettings(plugin_dirs=(tmp_path,)))
    assert "antigravity" not in sys.modules or "lorp" not in str(sys.modules["antigravity"].__file__)


@pytest.mark.slow  # starts several Python processes
def test_hook_and_component_that_call_sys_exit_become_plugin_errors(tmp_path):
    (tmp_path / "exit_in_hook.py").write_text(
        "import sys, lorp\n@lorp.hookimpl\ndef lorp_register_allocation_strategies(register):\n    sys.exit(3)\n")
    with pytest.raises(PluginError, match=r"exit_in_hook.*sys.exit\(3\)"):
        load_registry(PluginSettings(plugin_dirs=(tmp_path,)))
    (tmp_path / "exit_in_hook.py").unlink()
    (tmp_path / "exit_in_allocate.py").write_text(
        "import sys, lorp\n"
        "@lorp.hookimpl\ndef lorp_register_allocation_strategies(register):\n"
        "    register(lorp.AllocationStrategy('quitter', lambda request: sys.exit(0), uses_clusters=False))\n")
    registry = load_registry(PluginSettings(plugin_dirs=(tmp_path,)))
    from lorp.method.selection import select_blocks

    with pytest.raises(PluginError, match="allocation strategy 'quitter' .*sys.exit"):
        select_blocks(S30, 2, allocation="quitter", registry=registry)


def test_metric_that_exits_while_streaming_is_a_plugin_error(tiny, tmp_path):
    config, _, _ = tiny
    plugins = tmp_path / "metric_plugins"
    plugins.mkdir()
    (plugins / "exiting_metric.py").write_text(
        "import sys, numpy as np, lorp\n"
        "class Acc:\n    def __init__(self, n): self.n = n\n"
        "    def update(self, hidden, mask): sys.exit(0)\n"
        "    def result(self): return np.eye(self.n)\n"
        "class Asym(Acc):\n    def update(self, hidden, mask): pass\n"
        "    def result(self):\n        m = np.eye(self.n); m[0, 1] = 0.5; return m\n"
        "@lorp.hookimpl\ndef lorp_register_similarity_metrics(register):\n"
        "    register(lorp.SimilarityMetric('exits', Acc))\n    register(lorp.SimilarityMetric('asym', Asym))\n")
    registry = load_registry(PluginSettings(plugin_dirs=(plugins,)))
    with pytest.raises(PluginError, match=r"similarity metric 'exits' it called sys.exit\(0\)"):
        run_prune(PruneConfig(**{**config.__dict__, "similarity": "exits"}), registry=registry)
    with pytest.raises(PluginError, match="similarity metric 'asym' returned a matrix that is not symmetric"):
        run_prune(PruneConfig(**{**config.__dict__, "similarity": "asym"}), registry=registry)


def test_wrapper_hooks_and_unprintable_errors_are_named(tmp_path):
    (tmp_path / "wrapping.py").write_text(
        "import lorp\n@lorp.hookimpl(wrapper=True)\ndef lorp_register_clustering_algorithms(register):\n"
        "    return (yield)\n")
    with pytest.raises(PluginError, match="'wrapping' declares lorp_register_clustering_algorithms as a hook wrapper"):
        load_registry(PluginSettings(plugin_dirs=(tmp_path,)))
    (tmp_path / "wrapping.py").unlink()
    (tmp_path / "unprintable.py").write_text(
        "class E(Exception):\n    def __repr__(self): raise RuntimeError('no repr')\nraise E()\n")
    with pytest.raises(PluginError, match=r"unprintable.py failed to import: E \(unprintable\)"):
        load_registry(PluginSettings(plugin_dirs=(tmp_path,)))


def test_components_that_break_their_hook_contract_are_named(tmp_path):
    (tmp_path / "bad_components.py").write_text(
        "import numpy as np, lorp\n"
        "@lorp.hookimpl\ndef lorp_register_clustering_algorithms(register):\n"
        "    register(lorp.ClusteringAlgorithm('offbyone', lambda s, k, seed: np.arange(len(s)) % k + 1))\n"
        "@lorp.hookimpl\ndef lorp_register_allocation_strategies(register):\n"
        "    register(lorp.AllocationStrategy('plain-ints', lambda r: list(range(1, r.budget + 1)),"
        " uses_clusters=False))\n")
    registry = load_registry(PluginSettings(plugin_dirs=(tmp_path,)))
    from lorp.method.selection import select_blocks

    with pytest.raises(PluginError, match=r"'offbyone' must return integer labels in 0..1"):
        select_blocks(S30, 2, k=2, clustering="offbyone", registry=registry)
    with pytest.raises(PluginError, match="'plain-ints' must return lorp.Removal entries"):
        select_blocks(S30, 2, allocation="plain-ints", registry=registry)


# -- 2. the cache ------------------------------------------------------------------------------------------------

def test_truncated_similarity_entry_is_recomputed_with_a_notice(tiny, capsys):
    config, _, _ = tiny
    first = run_prune(config)
    entries = list((cache.cache_dir() / "similarity").glob("*.npz"))
    assert entries
    for entry in entries:
        os.truncate(entry, 100)
    capsys.readouterr()
    again = run_prune(config)
    err = capsys.readouterr().err
    assert "is unreadable (BadZipFile" in err and "recomputing it" in err
    assert again.results["calibration"]["forward_passes"] == 4  # really recomputed
    np.testing.assert_array_equal(again.similarity, first.similarity)
    third = run_prune(config)  # and the rewritten entry is whole again
    assert third.results["calibration"]["forward_passes"] == 0


def test_cached_matrix_of_another_shape_or_with_changed_values_is_not_used(tiny, capsys):
    config, _, _ = tiny
    first = run_prune(config)
    (entry,) = [e for e in (cache.cache_dir() / "similarity").glob("*.npz")
                if "cosine" in np.load(e).files]
    key = entry.stem
    with np.load(entry) as data:
        meta = json.loads(str(data["__meta__"]))
    np.savez(entry, __meta__=np.array(json.dumps(meta)), cosine=first.similarity * 0.5)  # values changed
    capsys.readouterr()
    again = run_prune(config)
    assert "checksum does not match" in capsys.readouterr().err
    np.testing.assert_array_equal(again.similarity, first.similarity)
    cache.save_matrices(key, {"cosine": np.eye(3)}, {"num_tokens": 1})  # a whole entry, but not for a 6-block model
    again = run_prune(config)
    assert "does not fit this 6-block model; recomputing it" in capsys.readouterr().err
    np.testing.assert_array_equal(again.similarity, first.similarity)


def test_edited_sweep_cell_is_recomputed(tiny, tmp_path, capsys):
    config, _, _ = tiny
    sweep = SweepConfig(base=config, methods=("shortgpt",), budgets=(1,))
    first = run_sweep(sweep, tmp_path / "sweep")
    (cell,) = (tmp_path / "sweep" / "cells").glob("shortgpt-b1*.json")
    (evaluation,) = (tmp_path / "sweep" / "evaluations").glob("*.json")
    data = json.loads(cell.read_text())
    data["pruned"] = [99, 100, 101]
    data["evaluation"]["perplexity"] = {k: {**v, "perplexity": 1.0} for k, v in data["evaluation"]["perplexity"].items()}
    cell.write_text(json.dumps(data))
    ev = json.loads(evaluation.read_text())
    ev["perplexity"] = {k: {**v, "perplexity": 1.0} for k, v in ev["perplexity"].items()}
    evaluation.write_text(json.dumps(ev))
    again = run_sweep(sweep, tmp_path / "sweep")
    err = capsys.readouterr().err
    assert f"sweep cell {cell} is unusable (its checksum does not match its content)" in err
    assert f"sweep evaluation {evaluation} is unusable" in err
    assert again == first
    data.pop("evaluation")
    data.pop("sha256")
    cell.write_text(json.dumps(data))
    assert run_sweep(sweep, tmp_path / "sweep") == first


def test_model_folder_whose_config_does_not_match_its_weights_is_refused(tiny, tmp_path):
    _, folder, _ = tiny
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 9  # the weights hold 6 blocks
    (folder / "config.json").write_text(json.dumps(config))
    from lorp.model.models import load_model

    with pytest.raises(ConfigError, match="lack .* parameter.* that its config.json asks for .*randomly initialised"):
        load_model(str(folder))


def test_calibration_text_file_is_keyed_by_content_not_path(tiny):
    config, _, text = tiny
    first = run_prune(config)
    words = text.read_text().split()
    text.write_text("\n\n".join(" ".join(reversed(words[i:i + 30])) for i in range(0, len(words), 30)))
    second = run_prune(config)
    assert second.results["calibration"]["forward_passes"] == 4  # not served from the old entry
    assert not np.array_equal(second.similarity, first.similarity)
    fresh = run_prune(PruneConfig(**{**config.__dict__, "use_cache": False}))
    np.testing.assert_array_equal(second.similarity, fresh.similarity)


def test_local_model_folder_is_keyed_by_content_not_path(tiny):
    config, folder, _ = tiny
    first = run_prune(config)
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    state = load_file(weights)
    name = next(k for k in state if "layers.2." in k and k.endswith("weight") and state[k].ndim == 2)
    state[name] = state[name] * 3
    save_file(state, weights, metadata={"format": "pt"})
    second = run_prune(config)
    assert second.results["calibration"]["forward_passes"] == 4
    assert not np.array_equal(second.similarity, first.similarity)


def test_damaged_sweep_cell_and_record_are_recomputed(tiny, tmp_path, capsys):
    config, _, _ = tiny
    sweep = SweepConfig(base=config, methods=("lorp", "shortgpt"), budgets=(1, 2))
    first = run_sweep(sweep, tmp_path / "sweep")
    (cell,) = (tmp_path / "sweep" / "cells").glob("lorp-b2*.json")
    cell.write_text(cell.read_text()[:40])
    record = tmp_path / "sweep" / "sweep.json"
    record.write_text("{")
    capsys.readouterr()
    again = run_sweep(sweep, tmp_path / "sweep")
    err = capsys.readouterr().err
    assert f"sweep cell {cell} is unreadable" in err and f"sweep record {record} is unreadable" in err
    assert again == first
    lorp_b2 = next(r["pruned"] for r in first if r["method"] == "lorp" and r["budget"] == 2)
    assert " ".join(map(str, json.loads(cell.read_text())["pruned"])) == lorp_b2


def test_sweep_folder_with_a_changed_local_input_says_so(tiny, tmp_path):
    config, _, text = tiny
    sweep = SweepConfig(base=config, methods=("lorp",), budgets=(1,))
    run_sweep(sweep, tmp_path / "sweep")
    text.write_text(text.read_text() + "\n\nw1 w2 w3 w4 w5 w6 w7 w8 w9")
    with pytest.raises(ConfigError, match=f"differing: content of {text}"):
        run_sweep(sweep, tmp_path / "sweep")


def _publish(args):
    target, value = args
    from lorp.store.cache import new_build_dir, publish_folder

    tmp = new_build_dir(Path(target))
    (tmp / "weights.bin").write_bytes(bytes([value % 7]) * 200_000)
    (tmp / "config.json").write_text('{"n": 1}')
    publish_folder(tmp, Path(target), {"source": "same"})
    return True


def _save(args):
    cache_root, key, seed = args
    os.environ["LORP_CACHE_DIR"] = cache_root
    from lorp.store.cache import save_matrices

    m = np.full((5, 5), 0.25)
    for _ in range(20):
        save_matrices(key, {"cosine": m}, {"writer": seed})
    return True


@pytest.mark.slow  # starts several Python processes
def test_concurrent_writers_of_one_key_leave_a_whole_entry(tmp_path, private_cache):
    ctx = multiprocessing.get_context("spawn")
    target = tmp_path / "built"
    with ctx.Pool(4) as pool:
        assert all(pool.map(_publish, [(str(target), 0)] * 8))
        assert all(pool.map(_save, [(str(private_cache), "k" * 24, i) for i in range(4)]))
    assert cache.folder_is_sealed(target, {"source": "same"})
    assert sorted(p.name for p in target.iterdir()) == [cache.MANIFEST, "config.json", "weights.bin"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".built.")]  # no build folder left
    matrices, meta = cache.load_matrices("k" * 24)
    np.testing.assert_array_equal(matrices["cosine"], np.full((5, 5), 0.25))
    assert meta["writer"] in range(4)
    assert not [p for p in (private_cache / "similarity").iterdir() if p.suffix == ".tmp"]


def test_sealed_folder_detects_truncation_and_foreign_files(tmp_path, capsys):
    target = tmp_path / "entry"
    _publish((str(target), 1))
    assert cache.folder_is_sealed(target, {"source": "same"})
    assert not cache.folder_is_sealed(target, {"source": "other"})  # built from something else
    with open(target / "weights.bin", "r+b") as fh:  # same size, other bytes
        fh.seek(1000)
        fh.write(b"\xff" * 10)
    assert not cache.folder_is_sealed(target)
    _publish((str(target), 1))
    os.truncate(target / "weights.bin", 10)
    assert not cache.folder_is_sealed(target)
    assert "incomplete or changed; rebuilding it" in capsys.readouterr().err
    _publish((str(target), 1))  # a rebuild replaces the damaged folder
    assert cache.folder_is_sealed(target)
    (target / "extra.txt").write_text("x")
    assert not cache.folder_is_sealed(target)


def test_sealed_file_and_wheel_checks(tmp_path):
    from lorp.model.assets import _wheel_ok

    data = tmp_path / "task.jsonl"
    data.write_text('{"a": 1}\n' * 100)
    cache.seal_file(data)
    assert cache.file_is_sealed(data)
    data.write_text('{"a": 1}\n' * 50)
    assert not cache.file_is_sealed(data)
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data.bin", os.urandom(50_000))
    assert _wheel_ok(wheel)
    os.truncate(wheel, wheel.stat().st_size // 2)
    assert not _wheel_ok(wheel)


def test_content_digest_follows_content_not_path(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("same text")
    b.write_text("same text")
    assert cache.content_digest(a) == cache.content_digest(b)
    digest = cache.content_digest(a)
    a.write_text("other text")
    assert cache.content_digest(a) != digest


# -- 3. every input checked before the work ------------------------------------------------------------------------

@pytest.fixture
def no_model_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was refused")

    import lorp.model.models

    monkeypatch.setattr(lorp.model.models, "load_model", refuse)
    for module in (lorp.run.pipeline, lorp.run.sweep):
        if hasattr(module, "load_model"):
            monkeypatch.setattr(module, "load_model", refuse)


def test_select_refuses_removing_every_block(runner, tmp_path):
    np.save(tmp_path / "S.npy", S30)
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "S.npy"), "--budget", "30", "--protect", ""])
    assert "larger than the 29 removable blocks" in one_error_line(res)
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "S.npy"), "--budget", "29", "--protect", "",
                               "--json"])
    assert len(json.loads(res.output)["pruned"]) == 29


def test_select_refuses_a_complex_matrix(runner, tmp_path):
    np.save(tmp_path / "S.npy", S30.astype(np.complex128) * (1 + 0.5j))
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "S.npy"), "--budget", "2"])
    assert "holds complex numbers" in one_error_line(res)


def test_prune_refuses_removing_every_block_before_loading(runner, no_model_loading):
    res = runner.invoke(main, ["prune", "--model", "smollm2-135m", "--budget", "30", "--protect", "", "--no-save-model"])
    assert "at least one block must stay" in one_error_line(res)


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_out_of_range_seed_is_one_line(runner, tmp_path, seed, no_model_loading):
    np.save(tmp_path / "S.npy", S30)
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "S.npy"), "--budget", "2", "--seed", seed])
    assert "seed must be a whole number between 0 and 2**32 - 1" in one_error_line(res)
    res = runner.invoke(main, ["prune", "--budget", "2", "--seed", seed, "--no-save-model"])
    assert "seed must be" in one_error_line(res)


def test_unwritable_out_fails_before_the_work(runner, no_model_loading):
    res = runner.invoke(main, ["prune", "--budget", "2", "--out", "/sys/lorp-test-out"])
    assert "cannot write the output folder /sys/lorp-test-out" in one_error_line(res)


def test_out_at_a_mount_point_is_refused_before_the_work(runner, no_model_loading, tmp_path, monkeypatch):
    mount = tmp_path / "mnt"
    mount.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == mount or real(p))
    res = runner.invoke(main, ["prune", "--budget", "2", "--out", str(mount)])
    assert "is a mount point" in one_error_line(res)


def test_failed_final_move_leaves_no_partial_folder(tmp_path, monkeypatch):
    final = tmp_path / "out"
    real = os.replace

    def busy(src, dst):
        if Path(dst) == final:
            raise OSError(16, "Device or resource busy")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    with pytest.raises(StorageError, match=r"cannot move the finished output into .*\[Errno 16\]"):
        with staged_dir(final) as stage:
            (stage / "results.json").write_text("{}")
    assert list(tmp_path.iterdir()) == []


def test_mistyped_local_model_folder_is_named_at_once(runner, tmp_path, monkeypatch):
    (tmp_path / "p5" / "model").mkdir(parents=True)
    (tmp_path / "p5" / "model" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(main, ["prune", "--model", "p5/modle", "--budget", "2"])
    line = one_error_line(res)
    assert "no local model folder 'p5/modle' exists (did you mean 'p5/model'?)" in line
    from lorp.model.models import resolve_model

    assert resolve_model("HuggingFaceTB/SmolLM2-135M").kind == "hub"  # no such local folder: a hub id


def test_unwritable_cache_is_one_line_before_the_work(runner, tmp_path, monkeypatch, no_model_loading):
    monkeypatch.setenv("LORP_CACHE_DIR", "/sys/lorp-test-cache")
    for command in (["prune", "--budget", "2", "--no-save-model", "--no-cache"],
                    ["sweep", "--budgets", "2", "--methods", "lorp", "--out", str(tmp_path / "sweep")]):
        line = one_error_line(runner.invoke(main, command))
        assert "/sys/lorp-test-cache" in line and "LORP_CACHE_DIR" in line


def test_unwritable_study_work_dir_is_refused_before_any_notebook(runner, tmp_path, monkeypatch):
    import lorp.study.runner

    monkeypatch.setattr(lorp.study.runner, "_run_all", lambda *a, **k: pytest.fail("a notebook ran"))
    reports = tmp_path / "reports"
    res = runner.invoke(main, ["study", "--preset", "quick", "-p", "work_dir=/sys/lorp-work", "--reports",
                               str(reports)])
    assert "cannot write the output folder /sys/lorp-work" in one_error_line(res)
    assert not reports.exists()


@pytest.mark.parametrize("override, message", [
    ({"eval_tokens": -5}, "eval_tokens must be a whole number of tokens >= 0"),
    ({"sleb_tokens": 256}, "sleb_tokens must be a whole number of tokens in 0..seq_len-1 (255"),
    ({"sleb_tokens": -1}, "sleb_tokens must be a whole number of tokens in 0..seq_len-1"),
    ({"protected": (0, "x")}, "protected must be whole block indices"),
    ({"model": ""}, "model must be a non-empty name"),
])
def test_documented_parameter_contracts(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PruneConfig(**override).validate()


def test_sleb_samples_are_checked_only_where_something_scores_on_them(tiny, tmp_path):
    """`lorp sweep --methods lorp --samples 2` once failed on SLEB's default of 4 scoring sequences."""
    config, _, _ = tiny
    PruneConfig(sleb_samples=40).validate()  # the setting alone is no error: nothing may score on it
    with pytest.raises(ConfigError, match=r"sleb_samples \(40\) cannot exceed the 32 calibration samples it is "
                                          r"drawn from \(method sleb scores on them\)"):
        PruneConfig(sleb_samples=40).check_sleb_samples("method sleb")
    base = PruneConfig(**{**config.__dict__, "num_samples": 2, "sleb_samples": 4})
    rows = run_sweep(SweepConfig(base=base, methods=("lorp", "last"), budgets=(1,)), tmp_path / "no-sleb")
    assert {r["method"] for r in rows} == {"dense", "lorp", "last"}
    for methods, attribution, who in ((("lorp", "sleb"), False, "method sleb"),
                                      (("lorp",), True, "the single-block removal profile")):
        with pytest.raises(ConfigError, match=f"sleb_samples \\(4\\) cannot exceed the 2 .*{who}"):
            run_sweep(SweepConfig(base=base, methods=methods, budgets=(1,), attribution=attribution),
                      tmp_path / "refused")
        assert not (tmp_path / "refused").exists()


def test_model_dependent_settings_checked_from_config_json(tiny):
    config, folder, _ = tiny
    with pytest.raises(ConfigError, match="larger than the 4 removable blocks"):
        PruneConfig(**{**config.__dict__, "budget": 5}).check_against_model()
    with pytest.raises(ConfigError, match="K = 7 exceeds the 6 blocks"):
        PruneConfig(**{**config.__dict__, "k": 7}).check_against_model()
    with pytest.raises(ConfigError, match="protected block 9 does not exist"):
        PruneConfig(**{**config.__dict__, "protected": (0, 9)}).check_against_model()
    max_pos = json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    with pytest.raises(ConfigError, match=f"eval_seq_len {max_pos + 1} is longer than the {max_pos} positions"):
        PruneConfig(**{**config.__dict__, "eval_seq_len": max_pos + 1}).check_against_model()


@pytest.mark.parametrize("name, value, message", [
    ("num_samples", "abc", "num_samples takes a whole number"),
    ("num_samples", 2.5, "num_samples takes a whole number"),
    ("k", True, "k takes a whole number"),
    ("calibration", None, "calibration takes text"),
    ("seed", -1, "seed must be a whole number between 0 and 2"),
])
def test_papermill_values_of_the_wrong_type(name, value, message):
    from lorp.study.parameters import study_config
    from lorp.study.runner import notebook_defaults, notebook_parameters

    params = notebook_defaults(notebook_parameters())
    for extra in ("preset", "out_dir", "work_dir"):
        params.pop(extra)
    assert study_config({**params, "budgets": 4, "detail_budget": 4}).budgets == (4,)  # papermill's -p budgets 4
    with pytest.raises(ConfigError, match=message):
        study_config({**params, name: value})


def test_study_checks_every_model_before_running_any(runner, monkeypatch):
    import lorp.study.runner

    monkeypatch.setattr(lorp.study.runner, "_run_all", lambda *a, **k: pytest.fail("a notebook ran"))
    res = runner.invoke(main, ["study", "--models", "smollm2-135m,gemma3-270m", "-p", "budgets=17",
                               "-p", "detail_budget=17"])
    assert "budget 17 is larger than the 16 removable blocks (18 blocks" in one_error_line(res)


@pytest.mark.parametrize("seeds, message", [
    ("-3", "each seed must be a whole number between 0 and 2**32 - 1"),
    ("4294967296", "each seed must be a whole number between 0 and 2**32 - 1"),
    ("0,,1", "seeds must be comma-separated whole numbers with nothing between two commas"),
])
def test_bad_run_seeds_are_refused_by_the_study_config(seeds, message):
    """Checked by study_config, which `lorp study` runs for every model before the first notebook."""
    import ast

    from lorp.study.parameters import study_config
    from lorp.study.runner import notebook_parameters

    values = {n: ast.literal_eval(s["default"]) for n, s in notebook_parameters().items()}
    assert study_config({**values, "seeds": "0,1"}).seeds == (0, 1)
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        study_config({**values, "seeds": seeds})
