"""The plugin contract: documented hooks, a third-party package through its entry point, CLI switches."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lorp.cli import main
from lorp.paths import REPO_ROOT
from lorp.plugins import hookspecs
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.pipeline import PruneConfig
from lorp.run.prune import run_prune
from lorp.testing import make_tiny_model_folder

FIXTURE = Path(__file__).parent / "fixtures" / "lorp-demo-plugin"
HOOKS = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("lorp_")]


def test_every_hook_is_documented_with_its_exact_signature():
    doc = (REPO_ROOT / "docs" / "plugins.md").read_text()
    assert len(HOOKS) == 6
    for fn in HOOKS:
        params = ", ".join(f"{name}: {ann}" for name, ann in fn.__annotations__.items() if name != "return")
        signature = f"def {fn.__name__}({params}) -> {fn.__annotations__['return']}:"
        assert signature in doc, f"docs/plugins.md lacks `{signature}`"
        assert fn.__doc__ and "register(" in fn.__doc__ and "Return value" in fn.__doc__


@pytest.fixture
def installed_demo_plugin(tmp_path, monkeypatch):
    """pip-install the fixture package into a private folder and put it on sys.path."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(FIXTURE)], check=True)
    monkeypatch.syspath_prepend(str(target))
    yield target
    sys.modules.pop("lorp_demo_plugin", None)


def test_installed_package_is_found_through_its_entry_point_and_used_in_a_run(installed_demo_plugin, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    registry = load_registry(PluginSettings(autoload=True, plugin_dirs=()))
    info = next(p for p in registry.plugins if p.name == "demo")
    assert (info.source, info.version, info.components) == (
        "entry point (lorp-demo-plugin)", "0.2.0", ("similarity:last-token-cosine",))

    folder, text = make_tiny_model_folder(tmp_path)
    config = PruneConfig(model=str(folder), budget=1, calibration=str(text), num_samples=4, seq_len=8,
                         eval_corpora=(str(text),), eval_seq_len=8, eval_tokens=64, similarity="last-token-cosine",
                         save_model=False, progress=False)
    run = run_prune(config, registry=registry)
    used = run.results["plugins"]["similarity"]
    assert used["plugin"] == "demo" and used["source"] == "entry point (lorp-demo-plugin)"
    assert run.results["calibration"]["num_tokens"] == 4 * 8  # the pass saw every token; the metric took the last
    assert len(run.results["pruned"]) == 1
    assert "last-token-cosine" not in load_registry(PluginSettings(autoload=False, plugin_dirs=())).components["similarity"]


def test_cli_plugin_switches(tmp_path):
    (tmp_path / "my_extra_plugin.py").write_text(
        "import lorp\n\n@lorp.hookimpl\ndef lorp_register_allocation_strategies(register):\n    pass\n")
    runner = CliRunner()
    listed = runner.invoke(main, ["--plugins-dir", str(tmp_path), "plugins"], env={"LORP_PLUGINS_DIR": ""})
    assert "my_extra_plugin" in listed.output and "cka_similarity" in listed.output
    only_builtins = runner.invoke(main, ["--no-plugin-autoload", "plugins"], env={"LORP_DISABLE_PLUGIN_AUTOLOAD": ""})
    assert "local file" not in only_builtins.output and "lorp.builtins.similarity" in only_builtins.output
    denied = runner.invoke(main, ["--deny-plugin", "cka_similarity", "plugins"], env={"LORP_DENY_PLUGINS": ""})
    assert "cka_similarity" not in denied.output and "contiguous_clustering" in denied.output
