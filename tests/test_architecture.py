"""The package layout of docs/architecture.md: public names, no shims at the old paths, contracts kept."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lorp
from lorp.plugins import components, hookspecs

REPO = Path(__file__).resolve().parent.parent

#: The flat modules of lorp before the stage packages; none may come back as a shim.
OLD_MODULES = ("ablation", "allocation", "assets", "atomic", "attribution", "blocks", "cache", "capture", "cells",
               "clustering", "components", "costs", "data", "evaluation", "executors", "figures", "hookspecs",
               "locality", "models", "parameters", "pipeline", "progress", "provenance", "pruning", "records",
               "report", "selection", "sensitivity", "speed", "sweep", "uncertainty", "variants", "zeroshot")


def test_every_public_name_imports_from_the_top_level_and_is_the_stage_package_s_object():
    for name in lorp.__all__:
        assert hasattr(lorp, name), name
    from lorp import AllocationStrategy, PluginError, SimilarityMetric, hookimpl  # what plugins are written against

    assert hookimpl is hookspecs.hookimpl
    assert SimilarityMetric is components.SimilarityMetric and AllocationStrategy is components.AllocationStrategy
    assert issubclass(PluginError, lorp.LorpError)
    assert lorp.__version__ == importlib.import_module("lorp.version").__version__


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(lorp.__path__, "lorp.") if m.name != "lorp.__main__"]
    assert {"lorp.method.allocation", "lorp.run.prune", "lorp.run.fingerprint", "lorp.study.runner"} <= set(names)
    for name in names:
        importlib.import_module(name)


@pytest.mark.parametrize("old", OLD_MODULES)
def test_no_module_is_left_at_its_old_flat_path(old):
    assert importlib.util.find_spec(f"lorp.{old}") is None


def test_the_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache", "--no-logo"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("notebook", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_every_lorp_name_a_notebook_imports_exists(notebook):
    """The notebooks run only in the slow tier; their imports of lorp are checked here, in the fast one."""
    import ast
    import json

    imported = []
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lorp"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), \
                        f"{notebook.name}: from {node.module} import {alias.name}"
                    imported.append(alias.name)
    assert imported


def test_pyproject_names_every_package_so_the_wheel_carries_it():
    import tomllib

    repo = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    present = {"lorp"} | {f"lorp.{p.name}" for p in (repo / "lorp").iterdir() if (p / "__init__.py").is_file()}
    assert present | {"lorp.notebooks"} == listed


def test_no_module_imports_another_modules_private_name():
    import ast

    repo = Path(__file__).resolve().parent.parent
    offenders = []
    for path in sorted((repo / "lorp").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("lorp")):
                offenders += [f"{path.relative_to(repo)}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, offenders


def test_no_module_is_over_450_lines():
    repo = Path(__file__).resolve().parent.parent
    long = {str(p.relative_to(repo)): n for p in (repo / "lorp").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long
