"""The lorp command line: select from a saved matrix, errors, plugin listing."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from lorp.cli import main
from lorp.testing import symmetric_matrix as sym

# The three-cluster matrix of test_allocation, worked by hand there: K = 3 gives [1, 2, 3, 5, 6, 7].
S3 = sym(9, {(0, 1): .9, (0, 2): .6, (1, 2): .7, (3, 4): .5, (3, 5): .8, (4, 5): .6,
             (6, 7): .95, (6, 8): .3, (7, 8): .35}, fill=.2)


@pytest.fixture
def runner():
    return CliRunner()


def test_select_json(runner, tmp_path):
    np.save(tmp_path / "S.npy", S3)
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "S.npy"), "--budget", "6", "--k", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["k"] == 3 and out["k_source"] == "override"
    assert out["labels"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert out["pruned"] == [1, 2, 3, 5, 6, 7]
    # mean off-diagonal = (2.2 + 1.9 + 1.6 + 27 * .2) / 36
    assert out["rls"] == pytest.approx(-np.log2(11.1 / 36))


def test_select_reads_results_json_and_picks_k_from_rls(runner, tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"similarity": S3.tolist()}))
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "results.json"), "--budget", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["k"] == 2  # RLS 1.70 >= 1.0


@pytest.mark.parametrize("args, message", [
    (["--budget", "8"], "budget 8 is larger than the 7 removable blocks"),
    (["--budget", "0"], "budget must be at least 1"),
    (["--budget", "2", "--allocation", "nope"], "unknown allocation strategy 'nope'"),
    (["--budget", "2", "--k", "12"], "between 2 and 9"),
    (["--budget", "2", "--protect", "0,x"], "--protect must be comma-separated integers"),
])
def test_select_errors(runner, tmp_path, args, message):
    np.save(tmp_path / "S.npy", S3)
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "S.npy"), *args])
    assert res.exit_code == 2
    assert message in res.output


def test_select_missing_file(runner, tmp_path):
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "none.npy"), "--budget", "1"])
    assert res.exit_code == 2 and "does not exist" in res.output


@pytest.mark.parametrize("args, message", [
    (["--model", "smollm2-13m"], "unknown model 'smollm2-13m' (did you mean 'smollm2-135m'?)"),
    (["--calibration", "c5"], "unknown corpus 'c5'"),
    (["--similarity", "ckaa"], "unknown similarity metric 'ckaa' (did you mean 'cka'?)"),
    (["--budget", "0"], "budget must be a whole number of blocks >= 1"),
    (["--similarity", "stream-cosine"], "compares the N + 1 residual-stream states"),
    (["--device", "foo"], "unknown device 'foo'"),
    (["--eval-tokens", "32"], "must hold at least one window of 256 tokens"),
    (["--seq-len", "1"], "at least 2 tokens"),
])
def test_prune_bad_input_fails_fast_and_writes_nothing(runner, tmp_path, args, message):
    out = tmp_path / "run"
    res = runner.invoke(main, ["prune", "--budget", "2", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_plugins_listing(runner):
    res = runner.invoke(main, ["plugins"])
    assert res.exit_code == 0
    for name in ("lorp.builtins.similarity", "cosine", "spectral", "lorp  "):
        assert name in res.output


def test_prune_refuses_a_folder_with_foreign_files(runner, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    res = runner.invoke(main, ["prune", "--budget", "2", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "holds files lorp did not write (notes.txt)" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_select_json_is_strict_even_for_infinite_rls(runner, tmp_path):
    with open(tmp_path / "eye.NPY", "wb") as fh:  # upper-case suffix: read by content, not by name
        np.save(fh, np.eye(5))
    res = runner.invoke(main, ["select", "--similarity", str(tmp_path / "eye.NPY"), "--budget", "2", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert out["rls"] is None and out["k"] == 2


@pytest.mark.parametrize("args, message", [
    (["-p", "model=gemma3-270m"], "sets each notebook's model and out_dir itself"),
    (["-p", "detail_budget=abc"], "detail_budget takes an int, got 'abc'"),
    (["-p", "budgett=3"], "unknown notebook parameter 'budgett' (did you mean 'budgets'?)"),
    (["-p", "budgets"], "must look like NAME=VALUE"),
    (["-p", "seed=1", "-p", "seed=2"], "given twice"),
    (["--preset", "quik"], "unknown preset 'quik'"),
    (["--models", "smollm2-13m"], "unknown model 'smollm2-13m'"),
    (["-p", "healers=linear,linaer"], "unknown healer 'linaer' (did you mean 'linear'?)"),
    (["-p", "healers=linear,linear"], "give each healer once"),
])
def test_study_parameter_errors(runner, tmp_path, args, message):
    res = runner.invoke(main, ["study", "--reports", str(tmp_path), *args])
    assert res.exit_code == 2 and message in res.output
    assert list(tmp_path.iterdir()) == []


def test_missing_plugins_dir_is_an_error(runner, tmp_path):
    res = runner.invoke(main, ["--plugins-dir", str(tmp_path / "nope"), "plugins"])
    assert res.exit_code == 2 and "does not exist" in res.output


@pytest.mark.parametrize("args, message", [
    (["--limit", "0", "--tasks", "copa"], "item limit must be >= 1"),
    (["--budget", "0", "--tasks", "copa"], "budget must be a whole number of blocks >= 1"),
    (["--tasks", "race"], "No offline copy of RACE"),
])
def test_eval_bad_input(runner, tmp_path, args, message):
    res = runner.invoke(main, ["eval", *args, "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert message in res.output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", ["[1, 2]", '{"config": "x", "pruned": [3]}', "not json"])
def test_eval_pruned_from_something_else(runner, tmp_path, content):
    (tmp_path / "r.json").write_text(content)
    res = runner.invoke(main, ["eval", "--pruned-from", str(tmp_path / "r.json"), "--tasks", "copa", "--limit", "2"])
    assert res.exit_code == 2 and "is not a lorp results.json" in res.output
