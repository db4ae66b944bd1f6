"""The study notebook runs headlessly under papermill on the real bundled model."""

import dataclasses
import json

import pytest

from lorp.errors import LorpError
from lorp.pipeline import PruneConfig
from lorp.study import notebook_parameters, run_study

QUICK = {"budget": 2, "num_samples": 4, "seq_len": 64, "eval_corpora": "ptb", "eval_tokens": 512, "save_model": False}

NOT_CONFIG = {"out_dir"}  # the only notebook parameter that is not a PruneConfig field


def test_notebook_parameters_match_the_library():
    params = notebook_parameters()
    fields = {f.name: f for f in dataclasses.fields(PruneConfig)}
    for name, spec in params.items():
        assert spec["help"], f"notebook parameter {name!r} has no comment"
        if name not in NOT_CONFIG:
            assert name in fields, f"notebook parameter {name!r} is not a PruneConfig field"
    defaults = PruneConfig()
    assert params["budget"]["default"] == str(defaults.budget)
    assert params["model"]["default"] == f'"{defaults.model}"'
    assert params["num_samples"]["default"] == str(defaults.num_samples)


@pytest.mark.real_model
def test_study_notebook_writes_a_report(tmp_path):
    """Also the plugin promise: a metric from one file in plugins/ is picked by name and reported."""
    params = {**QUICK, "similarity": "cka"}
    (folder,) = run_study(["smollm2-135m"], parameters=params, reports_dir=tmp_path, progress=False)
    assert folder == tmp_path / "smollm2-135m"
    for name in ("study.ipynb", "study.html", "results.json", "similarity.png", "similarity.npy", "pruned_blocks.md"):
        assert (folder / name).stat().st_size > 0, name
    results = json.loads((folder / "results.json").read_text())
    assert results["budget"] == 2 and len(results["pruned"]) == 2
    assert results["perplexity"]["after"]["ptb"]["perplexity"] > 1
    assert results["plugins"]["similarity"]["plugin"] == "cka_similarity"
    assert results["plugins"]["similarity"]["source"].startswith("local file")
    assert "RLS" in (folder / "study.html").read_text()
    assert "| corpus |" in (folder / "pruned_blocks.md").read_text()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


@pytest.mark.real_model
def test_failing_notebook_keeps_the_earlier_report(tmp_path):
    earlier = tmp_path / "smollm2-13m"
    earlier.mkdir()
    (earlier / "results.json").write_text("{}")
    with pytest.raises(LorpError, match="unknown model 'smollm2-13m'"):
        run_study(["smollm2-13m"], parameters=QUICK, reports_dir=tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-13m"]
    assert (earlier / "results.json").read_text() == "{}"


def test_unknown_notebook_parameter_is_an_error(tmp_path):
    with pytest.raises(LorpError, match="unknown notebook parameter"):
        run_study(["smollm2-135m"], parameters={"budgett": 3}, reports_dir=tmp_path)
