"""Removed sets scored outside the sweep's cells (random floor, SLEB's second count) and the calibration-corpus picks,
on a tiny random model: the same numbers as the sweep's own cells, cached, and refused with one clear error."""

from dataclasses import replace

import pytest

from lorp.errors import ConfigError
from lorp.run import worker as worker_module
from lorp.run.pipeline import PruneConfig
from lorp.run.screening import floor_draws, random_floor, screen, sleb_at
from lorp.run.sweep import SweepConfig, run_sweep
from lorp.study.picks import statistics_picks
from lorp.testing import make_tiny_model_folder


@pytest.fixture
def swept(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False, sleb_samples=1, save_model=False)
    config = SweepConfig(base=base, methods=("lorp", "last", "sleb"), budgets=(2,))
    rows = run_sweep(config, tmp_path / "sweep")
    return config, tmp_path / "sweep", rows, text


def _refuse_work(*_args, **_kwargs):
    raise AssertionError("recomputed what the cache holds")


def test_screened_sets_match_the_cells_and_are_read_back_from_the_cache(swept, monkeypatch):
    config, folder, rows, _ = swept
    last = next(r for r in rows if r["method"] == "last")
    removed = tuple(int(b) for b in last["pruned"].split())
    ppl = screen(config, folder, [removed])[removed]
    assert ppl[last["corpus"]].perplexity == pytest.approx(last["perplexity"], rel=1e-6)
    draws = random_floor(config, folder, 2, 3, num_blocks=6)
    assert [tuple(d["pruned"]) for d in draws] == floor_draws(6, 2, 3, config.cell_seeds[0], config.base.protected)
    monkeypatch.setattr(worker_module.CellWorker, "screen", _refuse_work)
    again = random_floor(config, folder, 2, 3, num_blocks=6)
    assert [d["perplexity"][last["corpus"]].perplexity for d in again] == \
        [d["perplexity"][last["corpus"]].perplexity for d in draws]


def test_sleb_at_its_own_count_repeats_the_sweeps_pick_and_a_larger_count_is_cached(swept, monkeypatch):
    config, folder, rows, _ = swept
    sleb = next(r for r in rows if r["method"] == "sleb")
    same = sleb_at(config, folder, 2, samples=1)
    assert same["pruned"] == sorted(int(b) for b in sleb["pruned"].split())
    assert same["perplexity"][sleb["corpus"]].perplexity == pytest.approx(sleb["perplexity"], rel=1e-6)
    more = sleb_at(config, folder, 2, samples=4)
    assert more["tokens"] == 4 * 7 and len(more["pruned"]) == 2
    monkeypatch.setattr(worker_module.CellWorker, "select_one", _refuse_work)
    monkeypatch.setattr(worker_module.CellWorker, "screen", _refuse_work)
    assert sleb_at(config, folder, 2, samples=4)["pruned"] == more["pruned"]
    with pytest.raises(ConfigError, match="SLEB's second count must be 1..4 calibration sequences"):
        sleb_at(config, folder, 2, samples=5)


def test_picks_from_another_calibration_corpus_and_the_study_corpus_agree_with_the_cells(swept, tmp_path):
    config, _, rows, text = swept
    lorp = next(r for r in rows if r["method"] == "lorp")
    own = statistics_picks(config.run_base, config.methods, config.budgets)
    assert own["picks"]["lorp"][2] == sorted(int(b) for b in lorp["pruned"].split())
    assert own["skipped"] == ["last", "sleb"]
    other = tmp_path / "other.txt"
    paragraphs = [p for p in text.read_text().split("\n\n") if p.strip()]
    other.write_text("\n\n".join(reversed(paragraphs)) + "\n")  # the same words, other paragraphs first
    moved = statistics_picks(replace(config.run_base, calibration=str(other)), config.methods, config.budgets)
    assert len(moved["picks"]["lorp"][2]) == 2 and moved["rls"] is not None


def test_a_method_can_run_at_some_budgets_only_and_the_report_reads_just_those(tmp_path, monkeypatch):
    from lorp.study.load import load_sweep

    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    base = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                       eval_seq_len=8, eval_tokens=64, progress=False, save_model=False)
    config = SweepConfig(base=base, methods=("lorp", "lorp-k2"), budgets=(1, 2), method_budgets=(("lorp-k2", (2,)),))
    rows = run_sweep(config, tmp_path / "sweep")
    assert sorted((r["method"], r["budget"]) for r in rows if r["method"] != "dense") == [
        ("lorp", 1), ("lorp", 2), ("lorp-k2", 2)]
    _, cells = load_sweep(tmp_path / "sweep", config=config)
    assert [(c.method, c.budget) for c in cells] == [("lorp", 1), ("lorp", 2), ("lorp-k2", 2)]
    for bad in ((("lorp-k2", (3,)),), (("shortgpt", (1,)),)):
        with pytest.raises(ConfigError, match="method_budgets: .* must be one of the methods"):
            run_sweep(replace(config, method_budgets=bad), tmp_path / "sweep")


def test_extra_sets_restart_from_the_sweeps_cached_dense_pass_without_a_dense_forward(swept, monkeypatch):
    from lorp.testing import count_dense_forwards

    config, folder, rows, _ = swept
    dense = count_dense_forwards(monkeypatch)
    draws = random_floor(config, folder, 2, 3, num_blocks=6)
    assert dense == [] and len(draws) == 3  # the sweep's worker stored the states entering every block
    last = next(r for r in rows if r["method"] == "last")
    monkeypatch.setenv("LORP_CACHE_DIR", str(folder.parent / "empty-cache"))  # no entry: one dense pass, same numbers
    removed = tuple(int(b) for b in last["pruned"].split())
    fresh = screen(replace(config, base=replace(config.base, eval_tokens=64)), folder.parent / "other", [removed])
    assert len(dense) > 0 and fresh[removed][last["corpus"]].perplexity == pytest.approx(last["perplexity"], rel=1e-6)
