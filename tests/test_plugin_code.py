"""A changed plugin never serves stale results: cached entries are keyed by the code of the plugin that made them."""

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lorp.run.pipeline
from lorp.plugins.code import (BUILTIN_CODE_VERSION, builtin_code, development_version, editable, local_file_code,
                               python_files_digest)
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.pipeline import PruneConfig
from lorp.run.sweep import SweepConfig, execute_sweep
from lorp.testing import make_tiny_model_folder
from lorp.version import __version__

REPO = Path(__file__).resolve().parent.parent

#: A local allocation plugin whose rule is one word: remove the deepest or the shallowest free blocks.
RULE_PLUGIN = '''
import lorp

RULE = "{rule}"


def allocate(request):
    free = [b for b in range(request.similarity.shape[0]) if b not in request.protected]
    chosen = free[-request.budget:] if RULE == "deepest" else free[:request.budget]
    return [lorp.Removal(block=b, stage=1, cluster=0, score=0.0, reason=RULE) for b in chosen]


@lorp.hookimpl
def lorp_register_allocation_strategies(register):
    register(lorp.AllocationStrategy(name="my-rule", allocate=allocate, uses_clusters=False))
'''

#: A local similarity metric: the builtin cosine raised to a power (an "edit" of the power changes S).
METRIC_PLUGIN = '''
import lorp
from lorp.builtins.similarity import CosineAccumulator

POWER = {power}


class Powered(CosineAccumulator):
    def result(self):
        return super().result() ** POWER


@lorp.hookimpl
def lorp_register_similarity_metrics(register):
    register(lorp.SimilarityMetric(name="my-cosine", create=Powered, needs="all_tokens"))
'''


@pytest.fixture(autouse=True)
def _forget_plugin_modules(monkeypatch):
    """Each test's plugin files are imported under the same module names; forget them (and their folders) after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in ("my_rule", "my_metric", "my_corpus"):
        sys.modules.pop(name, None)


def test_code_strings_by_hand(tmp_path):
    assert builtin_code() == f"lorp {__version__}, builtins {BUILTIN_CODE_VERSION}"
    f = tmp_path / "p.py"
    f.write_text("A = 1\n")
    first = local_file_code(f)
    assert first == "sha256:" + __import__("hashlib").sha256(b"A = 1\n").hexdigest()
    f.write_text("A = 22\n")
    assert local_file_code(f) != first
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .m import X\n")
    (pkg / "m.py").write_text("X = 1\n")
    before = python_files_digest(pkg / "__init__.py")
    (pkg / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"compiled")
    assert python_files_digest(pkg / "__init__.py") == before  # compiled files do not count
    (pkg / "m.py").write_text("X = 2\n")
    assert python_files_digest(pkg / "__init__.py") != before
    assert development_version("1.0.dev3") and development_version("0.2.0.dev0+g12") and not development_version("1.0")


def test_editable_installs_are_told_by_their_direct_url(tmp_path):
    class Dist(importlib.metadata.Distribution):
        def __init__(self, text):
            self.text = text

        def read_text(self, filename):
            return self.text if filename == "direct_url.json" else None

        def locate_file(self, path):
            return tmp_path / path

    assert editable(Dist(json.dumps({"url": "file:///x", "dir_info": {"editable": True}})))
    assert not editable(Dist(json.dumps({"url": "file:///x", "dir_info": {}})))
    assert not editable(Dist(None)) and not editable(Dist("not json"))


def test_provenance_names_each_component_s_code(tmp_path):
    (tmp_path / "my_rule.py").write_text(RULE_PLUGIN.format(rule="deepest"))
    registry = load_registry(PluginSettings(autoload=True, plugin_dirs=(tmp_path,)))
    mine = registry.provenance("allocation", "my-rule")
    assert mine["code"] == local_file_code(tmp_path / "my_rule.py") and mine["source"].startswith("local file")
    assert registry.provenance("allocation", "lorp")["code"] == builtin_code()


@pytest.fixture
def plugin_sweep(tmp_path, monkeypatch):
    """A tiny model and text, a private cache, and a plugin folder with the local rule plugin."""
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "my_rule.py").write_text(RULE_PLUGIN.format(rule="deepest"))
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False)
    return base, plugins, tmp_path / "sweep"


def _sweep(base, plugins, out, methods=("my-rule", "last", "lorp"), **kw):
    registry = load_registry(PluginSettings(autoload=True, plugin_dirs=(plugins,)))
    return execute_sweep(SweepConfig(base=base, methods=methods, budgets=(1, 2), **kw), out, registry)


def _stamps(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}


def test_an_edited_allocation_plugin_recomputes_its_cells_only(plugin_sweep, capfd):
    base, plugins, out = plugin_sweep
    first = _sweep(base, plugins, out)
    picks = {(c.method, c.budget): c.pruned for c in first.cells}
    assert picks[("my-rule", 2)] == [3, 4]  # the deepest free blocks of 6 (0 and 5 protected)
    stamps = _stamps(out)
    evaluations = sorted(p.name for p in (out / "evaluations").iterdir())
    capfd.readouterr()

    again = _sweep(base, plugins, out)  # unchanged: everything reused
    assert _stamps(out) == stamps and again.stats is None  # nothing was pending: no model loaded

    (plugins / "my_rule.py").write_text(RULE_PLUGIN.format(rule="shallowest"))
    edited = _sweep(base, plugins, out)
    after = {(c.method, c.budget): c.pruned for c in edited.cells}
    assert after[("my-rule", 1)] == [1] and after[("my-rule", 2)] == [1, 2]  # the new rule's picks
    now = _stamps(out)
    changed = {name for name in now if now[name] != stamps[name]}
    assert changed == {"my-rule-b1-s0.json", "my-rule-b2-s0.json"}  # the other methods' cells are reused
    assert edited.stats.cells_written == 2
    err = capfd.readouterr().err
    assert err.count("changed since the cached cells: recomputing its cells") == 1 and "my_rule.py" in err
    code = local_file_code(plugins / "my_rule.py")
    assert all(c.code["allocation:my-rule"] == code for c in edited.cells if c.method == "my-rule")
    before = {(c.method, c.budget): c.code for c in first.cells}
    assert all(c.code == before[(c.method, c.budget)] for c in edited.cells if c.method != "my-rule")
    assert set(before[("lorp", 1)]) == {"allocation:lorp", "similarity:cosine", "clustering:spectral"}
    # an evaluation of a removed set is shared whoever chose it: the new picks' sets were evaluated anew only
    # where no cell had removed them before
    assert set(evaluations) <= {p.name for p in (out / "evaluations").iterdir()}


def test_the_new_rule_reuses_an_evaluation_another_method_already_made(plugin_sweep):
    base, plugins, out = plugin_sweep
    _sweep(base, plugins, out, methods=("my-rule", "last"))
    (plugins / "my_rule.py").write_text(RULE_PLUGIN.format(rule="deepest").replace("RULE = ", "RULE = '' or "))
    edited = _sweep(base, plugins, out, methods=("my-rule", "last"))
    # "deepest" again, under new code: recomputed selections, evaluations all reused ("last" removes the same)
    assert edited.stats.cells_written == 2 and edited.stats.evaluations_computed == 0


def test_an_edited_similarity_plugin_gets_a_new_calibration_entry(plugin_sweep, monkeypatch):
    base, plugins, out = plugin_sweep
    (plugins / "my_metric.py").write_text(METRIC_PLUGIN.format(power="1"))
    calls = []
    real = lorp.run.pipeline.capture_similarities

    def counting(model, ids, metrics, **kw):
        calls.append(sorted(metrics))
        return real(model, ids, metrics, **kw)

    monkeypatch.setattr(lorp.run.pipeline, "capture_similarities", counting)
    config = dict(methods=("lorp",))
    custom = PruneConfig(**{**base.__dict__, "similarity": "my-cosine"})
    first = _sweep(custom, plugins, out, **config)
    _sweep(custom, plugins, out, **config)
    assert calls == [["my-cosine"]]  # unchanged: the cached matrix is reused
    (plugins / "my_metric.py").write_text(METRIC_PLUGIN.format(power="2"))
    edited = _sweep(custom, plugins, out, **config)
    assert calls == [["my-cosine"], ["my-cosine"]]  # edited: computed anew, under a new key
    s1, s2 = np.asarray(first.record.context.similarity), np.asarray(edited.record.context.similarity)
    assert np.allclose(s2, s1 ** 2) and not np.allclose(s2, s1)


#: A local corpus: the tiny model's text file, its evaluation part optionally reversed (an edit of the text).
CORPUS_PLUGIN = '''
from pathlib import Path

import lorp

TEXT = Path({path!r})
REVERSED = {reversed}


def load():
    docs = [d for d in TEXT.read_text().split("\\n\\n") if d.strip()]
    evaluation = [d[::-1] for d in docs] if REVERSED else docs
    return lorp.Corpus("my-text", docs, evaluation, "\\n\\n", "my_corpus plugin")


@lorp.hookimpl
def lorp_register_corpora(register):
    register(lorp.CorpusSource(name="my-text", load=load))
'''


def test_an_edited_evaluation_corpus_plugin_recomputes_the_cells_and_their_evaluations(plugin_sweep):
    base, plugins, out = plugin_sweep
    (plugins / "my_corpus.py").write_text(CORPUS_PLUGIN.format(path=base.calibration, reversed=False))
    custom = PruneConfig(**{**base.__dict__, "eval_corpora": ("my-text",)})
    first = _sweep(custom, plugins, out, methods=("last",))
    assert first.stats.evaluations_computed == 2
    (plugins / "my_corpus.py").write_text(CORPUS_PLUGIN.format(path=base.calibration, reversed=True))
    edited = _sweep(custom, plugins, out, methods=("last",))
    assert edited.stats.cells_written == 2 and edited.stats.evaluations_computed == 2  # nothing stale reused
    ppl = {c.budget: c.perplexity["my-text"].perplexity for c in first.cells}
    assert all(c.perplexity["my-text"].perplexity != ppl[c.budget] for c in edited.cells)
    assert len(list((out / "evaluations").iterdir())) == 4


SWEEP_SCRIPT = '''
import json, sys
from pathlib import Path
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.pipeline import PruneConfig
from lorp.run.sweep import SweepConfig, execute_sweep
base = PruneConfig(**json.loads(sys.argv[1]))
registry = load_registry(PluginSettings(autoload=True, plugin_dirs=(Path(sys.argv[2]),)))
run = execute_sweep(SweepConfig(base=base, methods=("my-rule", "last"), budgets=(1, 2)), sys.argv[3], registry)
print(json.dumps({"written": run.stats.cells_written if run.stats else 0,
                  "picks": {f"{c.method}-{c.budget}": c.pruned for c in run.cells}}))
'''


def _in_processes(base, plugins, out, n):
    args = [sys.executable, "-c", SWEEP_SCRIPT, json.dumps({**base.__dict__, "eval_corpora": list(base.eval_corpora),
                                                             "protected": list(base.protected)}), str(plugins), str(out)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    return [json.loads(o[0].strip().splitlines()[-1]) for o in outs]


@pytest.mark.slow
def test_an_unchanged_plugin_is_reused_across_processes_and_two_writers_agree(plugin_sweep):
    base, plugins, out = plugin_sweep
    first = _in_processes(base, plugins, out, 1)[0]
    assert first["written"] == 4
    assert _in_processes(base, plugins, out, 1)[0] == {"written": 0, "picks": first["picks"]}
    (plugins / "my_rule.py").write_text(RULE_PLUGIN.format(rule="shallowest"))
    both = _in_processes(base, plugins, out, 2)  # two processes run the edited plugin's sweep at once
    assert both[0]["picks"] == both[1]["picks"] and both[0]["picks"]["my-rule-2"] == [1, 2]
    code = local_file_code(plugins / "my_rule.py")
    for f in (out / "cells").glob("my-rule-*.json"):
        cell = json.loads(f.read_text())
        assert cell["code"]["allocation:my-rule"] == code and cell["pruned"] in ([1], [1, 2])
    assert _in_processes(base, plugins, out, 1)[0]["written"] == 0  # one consistent entry, reused


def test_the_disclosure_names_each_method_s_plugin_and_code():
    from lorp.study.tables import _code_line

    line = _code_line({"lorp": {"source": "builtin", "code": "lorp 0.1.0, builtins 1"},
                       "last": {"source": "builtin", "code": "lorp 0.1.0, builtins 1"},
                       "my-rule": {"source": "local file plugins/my_rule.py", "code": "sha256:ab"},
                       "old": {"source": "builtin"}})
    assert line == ("- **Methods' code** (cached cells are keyed by it): `lorp`, `last` from lorp's builtins, code "
                    "`lorp 0.1.0, builtins 1`; `my-rule` from local file plugins/my_rule.py, code `sha256:ab`; `old` "
                    "from lorp's builtins, code `not recorded`.")



def _install_demo(tmp_path, monkeypatch, version):
    """pip-install a copy of the fixture package at ``version`` into a private folder on sys.path."""
    import shutil

    src = tmp_path / f"src-{version}"
    shutil.copytree(REPO / "tests" / "fixtures" / "lorp-demo-plugin", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    toml = src / "pyproject.toml"
    toml.write_text(toml.read_text().replace('version = "0.2.0"', f'version = "{version}"'))
    target = tmp_path / f"site-{version}"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True)
    monkeypatch.syspath_prepend(str(target))
    return target


@pytest.mark.slow
@pytest.mark.parametrize("version", ["0.2.0", "0.3.0.dev1"])
def test_an_entry_point_is_keyed_by_its_version_and_a_development_version_by_its_source(tmp_path, monkeypatch,
                                                                                        version):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    target = _install_demo(tmp_path, monkeypatch, version)
    try:
        registry = load_registry(PluginSettings(autoload=True, plugin_dirs=()))
        code = registry.provenance("similarity", "last-token-cosine")["code"]
    finally:
        sys.modules.pop("lorp_demo_plugin", None)
    if version == "0.2.0":
        assert code == "lorp-demo-plugin 0.2.0"
    else:
        assert code == f"lorp-demo-plugin 0.3.0.dev1, sha256:{python_files_digest(target / 'lorp_demo_plugin.py')}"
