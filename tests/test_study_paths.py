"""Paths mean what the user meant: `lorp study` resolves every path it is given against the directory it runs from
(the notebooks run from notebooks/), and a report that did not land where the run says is an error."""

import json
from pathlib import Path

import pytest

import lorp.study.runner as runner
from lorp.errors import LorpError
from lorp.study.runner import local_argument, run_study, user_path, with_local_paths


def test_relative_paths_are_taken_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("some words")
    (tmp_path / "my-model").mkdir()
    assert user_path("reports/x") == tmp_path / "reports" / "x"
    assert local_argument("my-model") == str(tmp_path / "my-model")
    assert local_argument("smollm2-135m") == "smollm2-135m"  # a bundled key stays a key
    params = with_local_paths({"work_dir": "work", "calibration": "text.txt", "eval_corpora": "ptb,text.txt",
                               "calibration_corpora": "", "budgets": "3"})
    assert params == {"work_dir": str(tmp_path / "work"), "calibration": str(tmp_path / "text.txt"),
                      "eval_corpora": f"ptb,{tmp_path / 'text.txt'}", "calibration_corpora": "", "budgets": "3"}


def fake_notebook(writes: bool, seen: list):
    def execute(notebook, target_dir, name, parameters, *args, **kwargs):
        seen.append((Path(notebook).name, parameters))
        if writes and Path(notebook).name == "lorp_study.ipynb":
            Path(parameters["out_dir"], "results.json").write_text(json.dumps({"schema": "lorp.study"}))
    return execute


def test_a_relative_reports_folder_lands_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    seen: list = []
    monkeypatch.setattr(runner, "_execute", fake_notebook(True, seen))
    written = run_study(["smollm2-135m"], preset="quick", parameters={"work_dir": "sweeps"}, reports_dir="rel/x",
                        summary=False, echo=lambda *_: None)
    assert written == [tmp_path / "rel" / "x" / "smollm2-135m"]
    assert (tmp_path / "rel" / "x" / "smollm2-135m" / "results.json").is_file()
    (name, parameters), = [s for s in seen if s[0] == "lorp_study.ipynb"]
    assert Path(parameters["out_dir"]).is_absolute() and parameters["work_dir"] == str(tmp_path / "sweeps")


def test_a_report_that_did_not_land_is_an_error_and_replaces_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    previous = tmp_path / "out" / "smollm2-135m"
    previous.mkdir(parents=True)
    (previous / "results.json").write_text("{}")
    monkeypatch.setattr(runner, "_execute", fake_notebook(False, []))
    with pytest.raises(LorpError, match="wrote no results.json"):
        run_study(["smollm2-135m"], preset="quick", reports_dir="out", summary=False, echo=lambda *_: None)
    assert (previous / "results.json").read_text() == "{}"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["smollm2-135m"]  # no partial folder left
