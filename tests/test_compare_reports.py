"""benchmarks.compare_reports: provenance and timings may differ between two runs, nothing else."""

import json

from click.testing import CliRunner

from benchmarks.compare_reports import compare, json_differences, main

SHA_A, SHA_B = "a" * 40, "b" * 40


def _reports(root, *, commit, seconds, ppl, tokens_per_s, written):
    (root / "m").mkdir(parents=True)
    (root / "m" / "results.json").write_text(json.dumps({
        "git_commit": commit, "wall_time_s": seconds, "model": {"location": str(root / "cache")},
        "cells": [{"method": "lorp", "budget": 3, "perplexity": {"ptb": ppl}, "seconds": {"total": seconds},
                   "speed": {"tokens_per_s": tokens_per_s, "tokens_per_s_runs": [tokens_per_s, 1.0]}}]}))
    (root / "m" / "table.csv").write_text(f"method,budget,ptb\nlorp,3,{ppl}\n")
    (root / "m" / "time.md").write_text(f"| stage | s |\n|---|---:|\n| calibration | {seconds:.0f} |\n")
    (root / "m" / "disclosure.md").write_text(f"- **computed at** `{commit}`; pass (12 s when computed).\n")
    (root / "index.md").write_text(f"Written {written} UTC. Rerun with `lorp study --reports {root}`.\n")


def test_runs_that_differ_only_in_provenance_and_timings_are_the_same(tmp_path):
    _reports(tmp_path / "a", commit=SHA_A, seconds=10.0, ppl=41.25, tokens_per_s=20.0, written="2026-12-04 16:46")
    _reports(tmp_path / "b", commit=SHA_B, seconds=13.0, ppl=41.25, tokens_per_s=16.5, written="2026-12-04 17:00")
    differences, same, total = compare(tmp_path / "a", tmp_path / "b")
    assert differences == [] and same == total == 5
    assert CliRunner().invoke(main, [str(tmp_path / "a"), str(tmp_path / "b")]).exit_code == 0


def test_a_changed_number_or_a_missing_file_is_reported(tmp_path):
    _reports(tmp_path / "a", commit=SHA_A, seconds=10.0, ppl=41.25, tokens_per_s=20.0, written="2026-12-04 16:46")
    _reports(tmp_path / "b", commit=SHA_A, seconds=10.0, ppl=41.26, tokens_per_s=20.0, written="2026-12-04 16:46")
    (tmp_path / "b" / "m" / "extra.md").write_text("new\n")
    differences, same, total = compare(tmp_path / "a", tmp_path / "b")
    assert differences == ["m/extra.md: only in after",
                           "m/results.json: .cells[0].perplexity.ptb: '41.25' -> '41.26'",
                           "m/table.csv: -lorp,3,41.25", "m/table.csv: +lorp,3,41.26"]
    assert (same, total) == (3, 6)
    assert CliRunner().invoke(main, [str(tmp_path / "a"), str(tmp_path / "b")]).exit_code == 1


def test_json_differences_skip_only_volatile_keys():
    assert json_differences({"seconds_this_run": 1, "k": 2}, {"seconds_this_run": 9, "k": 2}) == []
    assert json_differences({"rls": 0.63, "budgets": [3]}, {"rls": 0.64, "budgets": [3, 7]}) == [
        ".budgets: '[3]' -> '[3, 7]'", ".rls: '0.63' -> '0.64'"]
