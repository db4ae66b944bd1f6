"""Plugin registry: builtins through hooks, local files, entry points, errors."""

import sys
import textwrap
import uuid

import pytest

from lorp.errors import PluginError, UnknownNameError
from lorp.plugins.registry import PluginSettings, load_registry

METRIC_PLUGIN = """
import lorp
from lorp.builtins.similarity import CosineAccumulator

__version__ = "2.5"

@lorp.hookimpl
def lorp_register_similarity_metrics(register):
    register(lorp.SimilarityMetric(name={name!r}, create=CosineAccumulator, description="test metric"))
"""


def write_plugin(folder, source, stem=None):
    stem = stem or f"lorp_test_plugin_{uuid.uuid4().hex[:8]}"
    (folder / f"{stem}.py").write_text(textwrap.dedent(source))
    return stem


def settings(folder, **kw):
    return PluginSettings(autoload=kw.pop("autoload", True), plugin_dirs=(folder,), **kw)


def test_builtins_register_through_the_hooks(lorp_registry):
    assert set(lorp_registry.components["similarity"]) == {"cosine", "stream-cosine", "angular-distance"}
    assert set(lorp_registry.components["clustering"]) == {"spectral"}
    assert set(lorp_registry.components["allocation"]) == {
        "lorp", "shortgpt", "streamline", "angular", "sleb", "last", "random",
        "lorp-k2", "lorp-k3", "lorp-k4", "lorp-residual", "lorp-rls-noemb", "lorp-bi", "lorp-protect-last4",
        "span-bi-nll", "span-heal-nll"}
    assert set(lorp_registry.components["corpus"]) == {"ptb", "wiki-paragraphs", "lambada", "wikitext2", "c4"}
    assert [a.name for a in lorp_registry.adapters()] == ["decoder-layers", "gpt2", "gpt-neox", "opt"]
    assert set(lorp_registry.components["healer"]) == {"none", "linear", "sequential", "residual"}
    sources = {p.name: p.source for p in lorp_registry.plugins}
    assert sources["lorp.builtins.similarity"] == "builtin"
    assert lorp_registry.provenance("allocation", "lorp")["plugin"] == "lorp.builtins.allocation"


def test_unknown_component_lists_known_names_and_suggests(lorp_registry):
    with pytest.raises(UnknownNameError) as err:
        lorp_registry.similarity("cosin")
    assert "did you mean 'cosine'" in str(err.value)
    assert "known similarity metrics: angular-distance, cosine, stream-cosine" in str(err.value)


def test_local_file_plugin_is_loaded_and_listed(tmp_path):
    stem = write_plugin(tmp_path, METRIC_PLUGIN.format(name="mine"))
    reg = load_registry(settings(tmp_path))
    assert reg.similarity("mine").description == "test metric"
    info = next(p for p in reg.plugins if p.name == stem)
    assert info.source.startswith("local file") and info.version == "2.5"
    assert info.components == ("similarity:mine",)
    assert sys.modules[stem].__name__ == stem  # importable by name, so its objects pickle


def test_autoload_switch_and_deny_list(tmp_path):
    stem = write_plugin(tmp_path, METRIC_PLUGIN.format(name="mine2"))
    assert "mine2" not in load_registry(settings(tmp_path, autoload=False)).components["similarity"]
    assert "mine2" in load_registry(settings(tmp_path)).components["similarity"]
    assert "mine2" not in load_registry(settings(tmp_path, deny=frozenset({stem}))).components["similarity"]


def test_duplicate_component_names_both_plugins(tmp_path):
    stem = write_plugin(tmp_path, METRIC_PLUGIN.format(name="cosine"))
    with pytest.raises(PluginError, match=rf"'cosine' is registered by both 'lorp.builtins.similarity' and '{stem}'"):
        load_registry(settings(tmp_path))


def test_misspelled_hook_is_an_error(tmp_path):
    write_plugin(tmp_path, """
        import lorp

        @lorp.hookimpl
        def lorp_register_similarity_metric(register):
            pass
    """)
    with pytest.raises(PluginError, match="lorp_register_similarity_metric"):
        load_registry(settings(tmp_path))


def test_wrong_component_type_is_an_error(tmp_path):
    write_plugin(tmp_path, """
        import lorp

        @lorp.hookimpl
        def lorp_register_clustering_algorithms(register):
            register("not a component")
    """)
    with pytest.raises(PluginError, match="expected lorp.ClusteringAlgorithm"):
        load_registry(settings(tmp_path))


def test_broken_plugin_file_is_an_error(tmp_path):
    write_plugin(tmp_path, "raise ImportError('boom')\n")
    with pytest.raises(PluginError, match="failed to import"):
        load_registry(settings(tmp_path))


def test_entry_point_plugin_from_an_installed_distribution(tmp_path, monkeypatch):
    """A distribution with a `lorp` entry point is found through importlib.metadata."""
    mod = f"lorp_ep_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{mod}.py").write_text(METRIC_PLUGIN.format(name="from-ep"))
    dist = tmp_path / "lorp_ep_demo-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lorp-ep-demo\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(f"[lorp]\ndemo = {mod}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry(PluginSettings(autoload=True, plugin_dirs=()))
    info = next(p for p in reg.plugins if p.name == "demo")
    assert info.source == "entry point (lorp-ep-demo)" and info.version == "0.3"
    assert reg.similarity("from-ep").name == "from-ep"
    assert "from-ep" not in load_registry(PluginSettings(autoload=False, plugin_dirs=())).components["similarity"]
