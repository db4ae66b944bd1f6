"""The study notebooks run headlessly under papermill on a real bundled model (the `quick` preset)."""

import ast
import json

import pytest

from lorp.errors import LorpError
from lorp.paths import NOTEBOOKS_DIR
from lorp.run.provenance import code_hash
from lorp.study.ablation import ablation_config
from lorp.study.parameters import study_config
from lorp.study.runner import ABLATION_NOTEBOOK, SUMMARY_NOTEBOOK, notebook_parameters, run_study


def test_notebook_parameters_match_the_library():
    params = notebook_parameters()
    for name, spec in params.items():
        assert spec["help"], f"notebook parameter {name!r} has no comment"
    values = {n: ast.literal_eval(s["default"]) for n, s in params.items()}
    config = study_config(values)  # every parameter the notebook declares is one the library accepts
    assert config.base.model == values["model"] and config.base.num_samples == values["num_samples"]
    assert ",".join(config.methods) == values["methods"] and config.detail_budgets == (values["detail_budget"],)
    assert config.base.zero_shot_tasks == tuple(values["zero_shot_tasks"].split(","))
    assert params["attribution"]["type"] == "bool" and config.attribution is values["attribution"] is True
    cells = json.loads((NOTEBOOKS_DIR / "lorp_study.ipynb").read_text())["cells"]
    declared = {line.split(":")[0] for c in cells if "parameters" in c["metadata"].get("tags", [])
                for line in "".join(c["source"]).splitlines() if line and not line.startswith("#")}
    assert declared == set(params), "papermill skipped a parameter line (e.g. an '=' in its comment)"
    source = "".join("".join(c["source"]) for c in cells)
    for name in set(params) - {"preset", "out_dir", "work_dir"}:
        assert f"{name}={name}" in source or f'"{name}": {name}' in source, \
            f"notebook parameter {name!r} is not passed to the library or the ablation notebook"
    assert set(notebook_parameters(SUMMARY_NOTEBOOK)) == {"reports_dir", "models", "out_dir"}
    assert set(notebook_parameters(ABLATION_NOTEBOOK)) == {"study_dir", "ablations", "selectors", "more_samples",
                                                          "out_dir"}
    config = ablation_config(values, values["ablations"], values["selectors"])  # the defaults fit together
    assert "span-bi-nll" in config.methods and config.identity() == study_config(values).identity()


@pytest.mark.real_model
@pytest.mark.notebook
def test_quick_preset_writes_model_report_summary_and_index(tmp_path, capfd):
    lines = []
    folders = run_study(preset="quick", reports_dir=tmp_path, echo=lines.append)
    assert folders == [tmp_path / "smollm2-135m", tmp_path / "summary"]
    # the sweep's progress reaches the terminal from inside the kernel; the kernel prints no transport warning
    streamed = [ln for ln in lines if ln.startswith("[1/1] smollm2-135m: ") and "running notebooks" not in ln]
    assert any("cell 8/8 " in ln for ln in streamed) or any("already computed" in ln for ln in streamed), lines
    assert "without encryption" not in capfd.readouterr().err
    report = tmp_path / "smollm2-135m"
    for name in ("study.ipynb", "study.html", "results.json", "table.csv", "similarity.png", "blocks.png",
                 "perplexity.png", "zero_shot.png", "speed.png", "perplexity.md", "zero_shot.md", "speed.md",
                 "reading.md", "attribution.png", "attribution.md", "ablation.ipynb", "ablation.html", "ablation.md",
                 "ablation.png", "selector.md", "calibration_size.md", "ablation.json", "confirmation.md", "floors.md",
                 "sleb.md", "calibration_corpus.md"):
        assert (report / name).stat().st_size > 0, name
    ab = json.loads((report / "ablation.json").read_text())  # the quick preset: one ablation and our selector
    assert ab["ablations"] == ["lorp-residual"] and [r["budget"] for r in ab["rows"]] == [7]  # the detail budget
    outcomes = ab["selectors"]["span-bi-nll"]["outcomes"]
    assert [o["budget"] for o in outcomes] == [3, 7] and {o["outcome"] for o in outcomes} <= {"wins", "loses",
                                                                                              "undecided"}
    assert ab["more_data"]["num_samples"] == 128 and set(ab["more_data"]["picks"]) == {"lorp", "shortgpt",
                                                                                     "streamline"}
    assert ab["more_data"]["skipped"] == ["sleb"]
    r = json.loads((report / "results.json").read_text())
    n = r["num_blocks"]
    assert n == 30 and 0.1 < r["rls"] < 3 and r["k"] in (2, 3, 4) and len(r["labels"]) == n
    assert {(c["method"], c["budget"]) for c in r["cells"]} == {(m, b) for m in ("lorp", "shortgpt", "streamline", "sleb")
                                                                 for b in (3, 7)}
    for c in r["cells"]:
        assert len(c["pruned"]) == c["budget"] and not {0, n - 1} & set(c["pruned"])
        assert all(v > 1 for v in c["perplexity"].values()) and c["parameters"] < r["dense"]["parameters"]
        assert ("zero_shot" in c) == (c["budget"] == 7 and c["method"] != "sleb")
        if c["budget"] == 7 and c["method"] != "sleb":  # the detail methods: LoRP and the paper's baselines
            assert 0 <= c["zero_shot_average"] <= 1 and c["speed"]["tokens_per_s"] > 0
            assert r["dense"]["flops_per_token"] / c["speed"]["flops_per_token"] > 1.2
    a = r["attribution"]  # single-block removal profile, sharing SLEB's passes
    assert sorted(map(int, a["nll"])) == list(range(n)) and len(a["block_influence"]) == n
    if any("cell 8/8 " in ln for ln in streamed):  # SLEB ran in this process: the profile reused its scored sets
        assert a["shared"]
    assert "first-order account" in (report / "attribution.md").read_text()
    assert r["parameters"]["preset"] == "quick" and r["git_commit"] and r["versions"]["lorp"]
    assert r["code_hash"] == code_hash()  # the code that computed it (issue 43): the summary combines equal ones
    # per-corpus intervals on the screening windows; the verdict pairs on 4 held-out windows per corpus
    assert "### Per corpus: LoRP ÷ best baseline" in (report / "perplexity.md").read_text()
    conf = r["confirmation"]
    assert r["version"] == 6 and conf["windows"] == 4 and set(conf["dense"]["window_nll"]) == {"ptb", "wiki-paragraphs"}
    assert all(len(v) == 4 for v in conf["dense"]["window_nll"].values())
    assert {(e["role"], e["budget"]) for e in conf["cells"]} == {(role, b) for role in ("lorp", "best baseline")
                                                                for b in (3, 7)}
    assert "| 3 | lorp |" in (report / "confirmation.md").read_text()
    assert "On the held-out confirmation windows" in (report / "selector.md").read_text()
    assert r["plugins_used"]["allocation:lorp"]["plugin"] and r["wall_time_s"] > 0
    # the floors, SLEB at two token counts, the calibration corpus as an axis
    floor = r["random_floor"]
    assert floor["budget"] == 7 and len(floor["draws"]) == 5
    assert all(len(d["pruned"]) == 7 and not {0, n - 1} & set(d["pruned"]) for d in floor["draws"])
    assert "random draws it beats" in (report / "floors.md").read_text()
    runs = r["sleb_check"]["runs"]
    assert [(x["samples"], x["tokens"]) for x in runs] == [(2, 2 * 63), (4, 4 * 63)]
    assert runs[0]["pruned"] == next(c["pruned"] for c in r["cells"] if (c["method"], c["budget"]) == ("sleb", 7))
    assert "The tables use 126 tokens" in (report / "sleb.md").read_text()
    corpora = r["calibration_corpora"]
    assert corpora["corpora"] == ["lambada", "ptb", "wiki-paragraphs"]
    assert corpora["picks"]["lambada"]["lorp"]["3"] == next(c["pruned"] for c in r["cells"]
                                                             if (c["method"], c["budget"]) == ("lorp", 3))
    assert "Jaccard across corpora" in (report / "calibration_corpus.md").read_text()
    # the selection x healing grid: the verdict pair at the detail budget, each builtin healer
    grid = r["healing"]
    assert grid["budget"] == 7 and grid["healers"] == ["linear", "sequential"] and grid["zero_shot_tasks"] == ["arc_easy"]
    assert {(e["role"], e["healer"]) for e in grid["cells"]} == {(role, h) for role in ("lorp", "best baseline")
                                                                for h in ("linear", "sequential")}
    for e in grid["cells"]:
        plain = next(c for c in r["cells"] if (c["method"], c["budget"]) == (e["method"], 7))
        assert e["pruned"] == plain["pruned"] and e["fit_seconds"] > 0 and e["maps"] >= 1
        assert set(e["window_nll"]) == {"ptb", "wiki-paragraphs"}
        assert (e.get("zero_shot_average") is not None) == (e["healer"] == "linear")  # the first healer only
        if e["healer"] == "linear":
            assert e["zero_shot_items"] == {"arc_easy": 4} and len(e["zero_shot_correct"]["arc_easy"]) == 4
        # never worse than unhealed on the held-out calibration rows; scored on the confirmation windows too
        assert e["holdout_nll_healed"] <= e["holdout_nll_unhealed"] and len(e["choices"]) == e["maps"]
        assert all(len(v) == 4 for v in e["confirmation"]["window_nll"].values())
    healing = (report / "healing.md").read_text()
    assert "of lorp's log-perplexity gap to dense" in healing and "against the best healed baseline" in healing
    assert healing.splitlines()[2].startswith("- On the held-out confirmation windows (4 per corpus), LoRP + `linear`")
    assert "| smollm2-135m | 7 | sequential |" in (tmp_path / "summary" / "healing.md").read_text()
    assert "Ranking with `linear` on both" in healing and "Zero-shot accuracy with `linear` on both" in healing
    summary = tmp_path / "summary"
    for name in ("summary.html", "summary.ipynb", "summary.json", "rls.png", "similarity.png", "winners.md",
                 "verdict.md", "rls.md", "ablation.md", "calibration_corpus.md", "verdict.png", "healing.md"):
        assert (summary / name).stat().st_size > 0, name
    why = (summary / "why.md").read_text()  # links ablation.md instead of repeating it
    assert "span-bi-nll" in (summary / "ablation.md").read_text() and "[ablation.md](ablation.md)" in why
    assert "span-bi-nll" not in why
    assert (summary / "verdict.md").read_text().startswith("**Perplexity (held-out confirmation windows): ")
    opening = (tmp_path / "index.md").read_text().splitlines()
    assert opening[2].startswith("- **Does LoRP beat its baselines here?") and "On held-out confirmation windows" in opening[2]
    assert any(line.startswith("- On exactly: SmolLM2-135M-Instruct, Q4_1 GGUF dequantised") for line in opening[:12])
    assert any(line.startswith("- **After healing** (`linear`, `sequential`") for line in opening[:12])  # healed too
    index = (tmp_path / "index.html").read_text()
    assert "smollm2-135m/study.html" in index and "summary/summary.html" in index

    # A rerun reuses the finished sweep: same selections, and the cells are not recomputed.
    cells_before = {c["method"] + str(c["budget"]): c["seconds"] for c in r["cells"]}
    run_study(preset="quick", reports_dir=tmp_path, progress=False, summary=False, echo=lambda _: None)
    again = json.loads((report / "results.json").read_text())
    assert [c["pruned"] for c in again["cells"]] == [c["pruned"] for c in r["cells"]]
    assert {c["method"] + str(c["budget"]): c["seconds"] for c in again["cells"]} == cells_before


@pytest.mark.real_model
@pytest.mark.notebook
def test_plain_papermill_runs_the_notebook_with_a_plugin_metric(tmp_path):
    """The plugin promise: a metric from one file in plugins/ is picked by name and recorded."""
    import papermill as pm

    out = tmp_path / "report"
    pm.execute_notebook(str(NOTEBOOKS_DIR / "lorp_study.ipynb"), str(tmp_path / "out.ipynb"), progress_bar=False,
                        parameters={"similarity": "cka", "methods": "lorp", "budgets": 2, "detail_budget": 0,
                                    "num_samples": 4, "seq_len": 32, "eval_corpora": "ptb", "eval_tokens": 128,
                                    "eval_seq_len": 64, "out_dir": str(out), "work_dir": str(tmp_path / "work")},
                        cwd=str(NOTEBOOKS_DIR))
    r = json.loads((out / "results.json").read_text())
    assert r["plugins_used"]["similarity"]["plugin"] == "cka_similarity"
    assert r["plugins_used"]["similarity"]["source"].startswith("local file")
    assert [c["budget"] for c in r["cells"]] == [2] and "zero_shot" not in r["cells"][0]
    assert "No zero-shot accuracy" in (out / "zero_shot.md").read_text()


@pytest.mark.notebook
def test_failing_notebook_stops_with_the_cell_error_and_keeps_earlier_reports(tmp_path, monkeypatch):
    earlier = tmp_path / "smollm2-135m"
    earlier.mkdir()
    (earlier / "results.json").write_text("{}")
    # a bad name is refused before any notebook runs
    with pytest.raises(LorpError, match="unknown allocation strategy 'shortgtp' \\(did you mean 'shortgpt'\\?\\)"):
        run_study(["smollm2-135m"], preset="quick", parameters={"methods": "lorp,shortgtp"}, reports_dir=tmp_path,
                  progress=False, echo=lambda _: None)
    with pytest.raises(LorpError, match="unknown allocation strategy 'lorp-k9'"):  # ablations are checked too
        run_study(["smollm2-135m"], preset="quick", parameters={"ablations": "lorp-k9"}, reports_dir=tmp_path,
                  progress=False, echo=lambda _: None)
    with pytest.raises(LorpError, match="unknown allocation strategy 'nope'"):  # a typo is not a silent filter
        run_study(["smollm2-135m"], preset="quick", parameters={"seeds": "0,1", "seed_methods": "nope"},
                  reports_dir=tmp_path, progress=False, echo=lambda _: None)
    with pytest.raises(LorpError, match="compares against the study's baselines"):
        run_study(["smollm2-135m"], preset="quick", parameters={"methods": "lorp"}, reports_dir=tmp_path,
                  progress=False, echo=lambda _: None)
    with pytest.raises(LorpError, match="given both as an ablation and as a selector"):
        run_study(["smollm2-135m"], preset="quick", parameters={"ablations": "span-bi-nll"}, reports_dir=tmp_path,
                  progress=False, echo=lambda _: None)
    with pytest.raises(LorpError, match="already among the study's methods"):
        run_study(["smollm2-135m"], preset="quick", parameters={"selectors": "shortgpt"}, reports_dir=tmp_path,
                  progress=False, echo=lambda _: None)
    # a strategy that passes every check but fails while the notebook runs
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken_strategy.py").write_text(
        "import lorp\n"
        "def allocate(request):\n    raise RuntimeError('boom in allocate')\n"
        "@lorp.hookimpl\ndef lorp_register_allocation_strategies(register):\n"
        "    register(lorp.AllocationStrategy('broken', allocate, uses_clusters=False))\n")
    monkeypatch.setenv("LORP_PLUGINS_DIR", str(plugins))
    with pytest.raises(LorpError, match="study notebook for 'smollm2-135m' failed in cell .*boom in allocate"):
        run_study(["smollm2-135m"], preset="quick", parameters={"methods": "lorp,broken"}, reports_dir=tmp_path,
                  progress=False, echo=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plugins", "smollm2-135m"]
    assert (earlier / "results.json").read_text() == "{}"
    fresh = tmp_path / "new-reports"
    with pytest.raises(LorpError, match="detail_budget 5 must be one of the budgets"):
        run_study(preset="quick", parameters={"detail_budget": "5"}, reports_dir=fresh, progress=False,
                  echo=lambda _: None)
    assert not fresh.exists()  # nothing half-written, not even an empty folder


#: Notebook defaults that deliberately differ from PruneConfig's: the study's smaller evaluation and SLEB samples.
STUDY_OWN_DEFAULTS = {"eval_tokens", "sleb_samples"}


def test_notebook_defaults_are_the_library_defaults():
    """The notebook spells its defaults (papermill needs literals); they must be PruneConfig's / SweepConfig's."""
    from dataclasses import fields

    from lorp.run.pipeline import PruneConfig
    from lorp.run.sweep import DEFAULT_METHODS

    values = {n: ast.literal_eval(s["default"]) for n, s in notebook_parameters().items()}
    base = {f.name: f.default for f in fields(PruneConfig)}
    as_notebook = {**base, "eval_corpora": ",".join(base["eval_corpora"]), "k": base["k"] or 0}
    shared = (set(values) & set(as_notebook)) - STUDY_OWN_DEFAULTS - {"zero_shot_tasks", "zero_shot_limit"}
    assert shared >= {"model", "calibration", "num_samples", "seq_len", "seed", "similarity", "clustering"}
    assert {n: values[n] for n in shared} == {n: as_notebook[n] for n in shared}
    assert values["methods"] == ",".join(DEFAULT_METHODS)
