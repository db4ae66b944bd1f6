"""`lorp study --add`: a plugin's rows beside a committed study, reusing only numbers whose key matches."""

import copy

import pytest

import lorp.run.worker
from lorp.errors import ConfigError, UnknownNameError
from lorp.paths import REPORTS_DIR
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.run.pipeline import PruneConfig
from lorp.run.study_records import StudyResult
from lorp.run.sweep import SweepConfig, execute_sweep
from lorp.study.add import add_methods, resolve_added, twins
from lorp.study.compare import lorp_vs_best_baseline
from lorp.study.confirmation import confirm_verdict_pairs, confirmed
from lorp.study.load import load_sweep, summarize
from lorp.study.query import baseline_methods
from lorp.study.reuse import reuse_mismatches
from lorp.testing import make_tiny_model_folder

#: A local allocation plugin whose rule is one word: the deepest free blocks (``last`` under another name) or
#: the shallowest ones.
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


def _registry(plugins=None):
    return load_registry(PluginSettings(autoload=plugins is not None, plugin_dirs=(plugins,) if plugins else ()))


def _write_rule(folder, rule, stem):
    """The rule plugin as ``folder/<stem>.py`` (a module name no other test imported in this process)."""
    folder.mkdir(exist_ok=True)
    (folder / f"{stem}.py").write_text(RULE_PLUGIN.format(rule=rule))
    return folder


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """A finished tiny study (three methods, two budgets, two run seeds, confirmation windows): what a committed
    ``results.json`` holds."""
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=8, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False)
    config = SweepConfig(base=base, methods=("lorp", "shortgpt", "last"), budgets=(1, 2), seeds=(0, 1),
                         detail_budgets=(2,), decode_tokens=2)
    registry = _registry()
    execute_sweep(config, tmp_path / "sweep", registry)
    meta, cells = load_sweep(tmp_path / "sweep", config=config)
    results = summarize(meta, cells, "lorp")
    confirm_verdict_pairs(results, config, tmp_path / "sweep", 2, registry)
    results.plugins_used = {"similarity": registry.provenance("similarity", base.similarity),  # as the notebook does
                            "clustering": registry.provenance("clustering", base.clustering)}
    return StudyResult.from_json(results.to_json()), config, tmp_path


def test_a_twin_takes_the_committed_numbers_exactly_and_is_named(committed, monkeypatch):
    results, config, tmp = committed
    before = copy.deepcopy(results.to_json())
    registry = _registry(_write_rule(tmp / "plugins", "deepest", "add_rule_twin"))

    def refuse(*_a, **_k):
        raise AssertionError("a removed set a committed row holds was scored again")
    monkeypatch.setattr(lorp.run.worker.CellWorker, "screen", refuse)
    monkeypatch.setattr(lorp.run.worker.CellWorker, "evaluate", refuse)
    add_methods(results, ["my-rule"], config, tmp / "sweep", registry, confirmation_windows=2)

    mine = [c for c in results.all_cells if c.method == "my-rule"]
    assert sorted((c.budget, c.seed) for c in mine) == [(1, 0), (1, 1), (2, 0), (2, 1)] and all(c.added for c in mine)
    for c in mine:  # `last` removes the deepest free blocks: every number is the committed row's
        last = next(x for x in results.all_cells if x.method == "last" and x.budget == c.budget and x.seed == c.seed)
        assert c.pruned == last.pruned and c.window_nll == last.window_nll
        assert c.mean_perplexity == last.mean_perplexity and c.evaluation_reused
    assert results.added["twins"]["my-rule"] == ["last"] == twins(results, "my-rule")
    assert results.added["computed"]["my-rule"]["screened"] == 0
    # the committed rows and verdicts are untouched, and the added method is never a baseline
    assert [c for c in StudyResult.from_json(before).all_cells] == [c for c in results.all_cells if not c.added]
    assert "my-rule" not in baseline_methods(results.cells)
    at2 = [c for c in results.cells if c.budget == 2]
    assert lorp_vs_best_baseline(at2) == lorp_vs_best_baseline([c for c in at2 if not c.added])
    # held out: the added rows on the confirmation windows, copied from the verdict pairs where the set is one,
    # scored where it is not
    added = [e for e in results.confirmation["cells"] if e["role"] == "added"]
    pairs = {tuple(e["pruned"]): e for e in results.confirmation["cells"] if e["role"] != "added"}
    assert [e["budget"] for e in added] == [1, 2]
    assert results.added["computed"]["my-rule"]["confirmed"] == sum(tuple(e["pruned"]) not in pairs for e in added)
    for e in added:
        if tuple(e["pruned"]) in pairs:
            assert e["window_nll"] == pairs[tuple(e["pruned"])]["window_nll"]
    assert {r["budget"]: r["baseline"] for r in confirmed(results, "added")}.keys() <= {1, 2}
    back = StudyResult.from_json(results.to_json())  # the record round-trips, added rows marked
    assert [c.added for c in back.all_cells] == [c.added for c in results.all_cells] and back.added == results.added


def test_new_sets_are_scored_and_a_changed_plugin_gives_new_picks(committed, monkeypatch):
    results, config, tmp = committed
    plugins = _write_rule(tmp / "plugins", "shallowest", "add_rule_edited")
    first = StudyResult.from_json(results.to_json())
    loads = []
    real_load = lorp.run.worker.models.load_model
    monkeypatch.setattr(lorp.run.worker.models, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    add_methods(first, ["my-rule"], config, tmp / "sweep", _registry(plugins), confirmation_windows=2)
    assert len(loads) == 1  # screening, detail and confirmation scores on one held worker: one model load
    rows = {(c.budget, c.seed): c for c in first.all_cells if c.method == "my-rule"}
    assert rows[1, 0].pruned == [1] and rows[2, 0].pruned == [1, 2]
    assert rows[2, 0].speed is not None and rows[2, 0].speed["tokens_per_s"] > 0  # the detail budget's measures
    assert rows[1, 0].parameters == first.dense.parameters - (first.dense.parameters - rows[2, 0].parameters) // 2
    assert first.added["twins"]["my-rule"] == []
    conf = {e["budget"]: e for e in first.confirmation["cells"] if e["role"] == "added"}
    assert conf[2]["pruned"] == [1, 2] and len(conf[2]["window_nll"][config.base.eval_corpora[0]]) == 2
    code_before = first.added["components"]["my-rule"]["code"]

    _write_rule(plugins, "deepest", "add_rule_edited")  # the plugin's code changed: new stamp, new picks, the old ones not served
    second = StudyResult.from_json(results.to_json())
    add_methods(second, ["my-rule"], config, tmp / "sweep", _registry(plugins), confirmation_windows=2)
    assert second.added["components"]["my-rule"]["code"] != code_before
    assert {(c.budget, c.seed): c.pruned for c in second.all_cells if c.method == "my-rule"}[2, 0] == [3, 4]


def test_an_intact_key_has_no_mismatch_and_each_changed_part_is_said(committed):
    results, config, _ = committed
    registry = _registry()
    lines = reuse_mismatches(results, config, registry)
    # a local model folder cannot be checked against the record: said, and recomputed; nothing else differs
    assert len(lines) == 1 and lines[0].startswith("model ") and "every baseline recomputed" in lines[0]
    older = StudyResult.from_json(results.to_json())
    older.versions = {**older.versions, "lorp": "0.0.9"}
    older.plugins["shortgpt"] = {**older.plugins["shortgpt"], "code": "lorp 0.0.9, builtins 1"}
    lines = reuse_mismatches(older, config, registry)
    assert any(ln.startswith("lorp ") and "≠ 0.0.9: every baseline recomputed" in ln for ln in lines)
    assert any(ln.startswith("allocation shortgpt code lorp ") and ln.endswith(
        "≠ lorp 0.0.9, builtins 1: every baseline recomputed") for ln in lines)
    wider = StudyResult.from_json(results.to_json())
    wider.config = {**wider.config, "eval_tokens": 128}
    assert any(ln.startswith("study setting eval_tokens 64 ≠ 128") for ln in reuse_mismatches(wider, config, registry))


def test_unknown_or_already_compared_names_are_refused_before_any_work(committed):
    results, config, _ = committed
    registry = _registry()
    with pytest.raises(UnknownNameError, match=r"unknown method to add 'lorp-sprad'.*`lorp plugins` lists them"):
        add_methods(results, ["lorp-sprad"], config, "/nonexistent", registry)
    with pytest.raises(ConfigError, match="'shortgpt' is already in the committed study"):
        resolve_added(["shortgpt"], registry, config, ["lorp", "shortgpt"])
    with pytest.raises(ConfigError, match="at least one registered method"):
        resolve_added([" "], registry, config, ["lorp"])
    assert [m.label for m in resolve_added(["angular"], registry, config, ["lorp"])] == ["angular"]
    assert not any(c.added for c in results.all_cells)


def test_the_answer_block_names_twins_first_and_decides_with_holm(committed):
    from lorp.study.added_answer import added_lines, added_markdown, held_out

    results, config, tmp = committed
    add_methods(results, ["my-rule"], config, tmp / "sweep", _registry(_write_rule(tmp / "plugins", "deepest",
                                                                                   "add_rule_answer")),
                confirmation_windows=2)
    lines = added_lines({"tiny": results})
    assert lines[0].startswith("**`my-rule` ≡ `last` here** on tiny")
    assert lines[1].startswith("**Does `my-rule` beat LoRP and the best baseline?** On the held-out confirmation")
    rows = held_out({"tiny": results}, "my-rule", "lorp")
    assert [o["budget"] for o in rows] == [1, 2] and all(o["rival"] == "lorp" for o in rows)
    assert f"against LoRP: better in {sum(o['decision'] == 'better' for o in rows)} of 2" in lines[1]
    for o in rows:  # Holm over the two budgets: the smaller p doubled, the larger kept at least as large
        assert o["p_holm"] >= o["comparison"].p_value
    assert any(ln.startswith("On exactly these checkpoints: tiny (") for ln in lines)
    md = added_markdown(results, "tiny")
    assert md.startswith("# Added to the study of tiny: `my-rule`") and md.count("| my-rule | ") == 4  # two tables


def test_the_command_refuses_an_unknown_name_in_one_line_before_any_work(tmp_path):
    from click.testing import CliRunner

    from lorp.cli import main

    out = tmp_path / "added"
    res = CliRunner().invoke(main, ["study", "--add", "lorp-sprad", "--models", "smollm2-135m", "--reports", str(out)])
    assert res.exit_code != 0 and not out.exists()
    error = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(error) == 1 and "unknown method to add 'lorp-sprad' (did you mean 'lorp-spread'?)" in error[0]
    res = CliRunner().invoke(main, ["study", "--add", "lorp-spread", "-p", "budgets=2"])
    assert res.exit_code != 0 and "--add runs the committed study's own protocol; drop --preset and -p" in res.output
    res = CliRunner().invoke(main, ["study", "--add", "lorp-spread", "--reports", str(REPORTS_DIR)])
    assert res.exit_code != 0 and "is the committed study's folder" in res.output


@pytest.mark.real_model
@pytest.mark.notebook
def test_the_example_plugin_joins_the_committed_study_with_every_baseline_number_unchanged(tmp_path):
    """`lorp study --add lorp-spread` on SmolLM2: the committed rows, verdict pairs, floors and healing grid are
    the committed report's exactly; the added rows are beside them; the committed folder is not written."""
    import json

    from lorp.study.runner import run_added

    committed = REPORTS_DIR / "smollm2-135m"
    before = {f.name: f.stat().st_mtime_ns for f in committed.iterdir()}
    folders = run_added(["lorp-spread"], ["smollm2-135m"], reports_dir=tmp_path, echo=lambda _line: None)
    assert folders == [tmp_path / "smollm2-135m", tmp_path / "summary"]
    assert {f.name: f.stat().st_mtime_ns for f in committed.iterdir()} == before
    old = json.loads((committed / "results.json").read_text())
    new = json.loads((tmp_path / "smollm2-135m" / "results.json").read_text())
    for key in ("dense", "confirmation", "random_floor", "healing", "similarity", "seeds", "computed_at_commit"):
        if key == "confirmation":
            kept = {**new[key], "cells": [e for e in new[key]["cells"] if e["role"] != "added"]}
            assert kept == old[key]
        else:
            assert new[key] == old[key], key
    for rows in ("cells", "seed_cells"):
        assert [c for c in new[rows] if not c.get("added")] == old[rows]
        mine = [c for c in new[rows] if c.get("added")]
        assert mine and {c["method"] for c in mine} == {"lorp-spread"}
    assert new["added"]["reused"]["computed_at_commit"] == old["computed_at_commit"]
    assert new["added"]["recomputed"] == [] and new["added"]["components"]["lorp-spread"]["kind"] == "allocation"
    # every committed line is still there (healing.md's records are compared above: its ratios below 0.01 now
    # print in scientific notation where the committed page, rendered before, printed 0.01)
    for page in ("perplexity.md", "confirmation.md"):
        lines = (tmp_path / "smollm2-135m" / page).read_text().splitlines()
        assert set((committed / page).read_text().splitlines()) <= set(lines), page
    index = (tmp_path / "index.md").read_text().splitlines()
    assert index[0] == "# LoRP study reports, with lorp-spread added"
    assert index[2].startswith("- **Does `lorp-spread` beat LoRP and the best baseline?** On the held-out")
    assert (tmp_path / "smollm2-135m" / "added.md").read_text().startswith("# Added to the study of smollm2-135m")


def test_the_accuracy_line_pairs_the_added_method_with_lorp_and_the_best_baseline_by_accuracy():
    from lorp.study.added_answer import accuracy, added_lines

    def row(method, correct, added=False):
        return {"method": method, "budget": 2, "pruned": [1, 2], "perplexity": {"a": 2.0}, "mean_perplexity": 2.0,
                "parameters": 1, "zero_shot": {"t": sum(correct) / len(correct)}, "zero_shot_items": {"t": len(correct)},
                "zero_shot_average": sum(correct) / len(correct), "zero_shot_correct": {"t": correct}, "added": added}
    r = StudyResult.from_json({
        "model": {"checkpoint": "tiny"}, "num_blocks": 4, "rls": None, "k": None, "config": {"detail_budgets": [2]},
        "dense": {"perplexity": {"a": 1.0}, "mean_perplexity": 1.0, "parameters": 1},
        "cells": [row("lorp", [1, 0, 0, 0]), row("shortgpt", [1, 1, 0, 0]), row("last", [1, 1, 1, 0]),
                  row("mine", [1, 1, 1, 1], added=True)],
        "added": {"methods": ["mine"], "components": {}, "twins": {"mine": []}, "computed": {}}})
    a = accuracy(r, "mine")
    assert a["accuracy"] == 1.0 and a["best_method"] == "last"  # the best baseline by accuracy, never `mine`
    assert a["lorp"].difference == pytest.approx(0.75) and a["best"].difference == pytest.approx(0.25)
    line = next(ln for ln in added_lines({"tiny": r}) if ln.startswith("Zero-shot accuracy"))
    assert "tiny at 2: 100.0 %, +75.0 [" in line and "points against LoRP" in line and "against last" in line


@pytest.mark.slow  # reads the committed study's corpora (fetched from the package registries on first use)
def test_a_changed_key_recomputes_the_model_s_study_and_says_why(tmp_path, monkeypatch):
    """The runner's decision, with the notebooks stubbed: an intact committed record is reused (its files copied,
    no ablation notebook); one whose lorp version differs is studied again whole, the line said first."""
    import json
    import shutil

    import lorp.study.runner as runner

    ran = []

    def execute(notebook, stage, name, parameters, *_args, **_kw):
        ran.append((notebook.name, dict(parameters)))
        if name == "study.ipynb":
            (stage / "results.json").write_text("{}")
    monkeypatch.setattr(runner, "_execute", execute)
    intact, older = tmp_path / "intact", tmp_path / "older"
    for folder in (intact, older):
        shutil.copytree(REPORTS_DIR / "smollm2-135m", folder / "smollm2-135m")
    record = json.loads((older / "smollm2-135m" / "results.json").read_text())
    record["versions"]["lorp"] = "0.0.9"
    (older / "smollm2-135m" / "results.json").write_text(json.dumps(record))

    lines = []
    runner.run_added(["lorp-spread"], ["smollm2-135m"], committed_dir=intact, reports_dir=tmp_path / "a",
                     summary=False, echo=lines.append)
    assert [n for n, _ in ran] == ["lorp_study.ipynb"] and "every committed number reused" in lines[0]
    assert ran[0][1]["added"] == "lorp-spread" and ran[0][1]["committed_results"].endswith("results.json")
    assert (tmp_path / "a" / "smollm2-135m" / "ablation.md").read_text() == \
        (intact / "smollm2-135m" / "ablation.md").read_text()  # the committed ablation pages, as they are

    ran.clear(), lines.clear()
    runner.run_added(["lorp-spread"], ["smollm2-135m"], committed_dir=older, reports_dir=tmp_path / "b",
                     summary=False, echo=lines.append)
    assert lines[0].startswith("[1/1] smollm2-135m: lorp ") and lines[0].endswith("≠ 0.0.9: every baseline recomputed")
    assert [n for n, _ in ran] == ["lorp_study.ipynb", "ablation.ipynb"]  # the whole study, ablations included
    assert not (tmp_path / "b" / "smollm2-135m" / "ablation.md").exists()  # nothing of the old record copied


def test_a_similarity_plugin_selects_on_its_own_calibration_pass(committed):
    """LoRP with another similarity metric (the example CKA plugin): its picks come from a worker's calibration
    pass of that metric at each run seed, not from the committed S; its rows are named lorp+cka."""
    from lorp.paths import REPO_ROOT

    results, config, tmp = committed
    registry = _registry(REPO_ROOT / "plugins")
    added = add_methods(results, ["cka"], config, tmp / "sweep", registry, confirmation_windows=2)
    assert [(m.label, m.kind, m.from_committed_s) for m in added] == [("lorp+cka", "similarity", False)]
    rows = {(c.budget, c.seed): c for c in results.all_cells if c.method == "lorp+cka"}
    assert sorted(rows) == [(1, 0), (1, 1), (2, 0), (2, 1)] and all(len(c.pruned) == c.budget for c in rows.values())
    assert results.added["computed"]["lorp+cka"]["selection"] == "own calibration pass per seed"
    assert results.added["components"]["lorp+cka"]["similarity"] == "cka"


def test_a_partial_twin_is_said_budget_by_budget(committed):
    from lorp.study.added_answer import added_lines, same_blocks

    results, config, tmp = committed
    add_methods(results, ["my-rule"], config, tmp / "sweep", _registry(_write_rule(tmp / "plugins", "shallowest",
                                                                                   "add_rule_partial")),
                confirmation_windows=2)
    lorp_at = {c.budget: c.pruned for c in results.cells if c.method == "lorp"}
    expected = {b: ["lorp"] for b, p in lorp_at.items() if p == [1, 2][:b]}  # the shallowest free blocks
    assert {b: [m for m in ms if m == "lorp"] for b, ms in same_blocks(results, "my-rule").items()
            if "lorp" in ms} == expected
    said = [ln for ln in added_lines({"tiny": results}) if "removes the same blocks as a study method" in ln]
    assert bool(said) == bool(same_blocks(results, "my-rule"))


def test_the_study_still_runs_in_a_sweep_folder_where_add_scored_first(committed):
    """`--add` caches its scores in the study's sweep folder; a study run there later (`make study` after
    `lorp study --add`) takes it as its own, and a folder holding anything else is still refused."""
    results, config, tmp = committed
    fresh = tmp / "fresh-sweep"
    add_methods(results, ["my-rule"], config, fresh, _registry(_write_rule(tmp / "plugins", "shallowest",
                                                                           "add_rule_side")), confirmation_windows=2)
    assert {p.name for p in fresh.iterdir()} <= {"screening", "detail", "confirmation"}
    execute_sweep(config, fresh, _registry())
    assert (fresh / "sweep.json").is_file()
    other = tmp / "other"
    (other / "screening").mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a lorp sweep"):
        execute_sweep(config, other, _registry())
