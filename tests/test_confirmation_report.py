"""The verdict pairs on held-out windows: which pairs are confirmed, the table, Holm, old records."""

import math

import pytest

from lorp.run.study_records import StudyResult
from lorp.study.confirmation import confirmation_markdown, confirmed, verdict_pairs


def _cell(method, budget, ppl, pruned):
    return {"method": method, "budget": budget, "pruned": pruned, "perplexity": {"a": ppl, "b": ppl},
            "mean_perplexity": ppl, "parameters": 10}


def _entry(shift, windows=8):
    """A confirmation row whose per-window NLL is 3 nats/token plus ``shift`` and a small alternating wobble."""
    nll = {c: [(3.0 + shift + (0.01 if w % 2 else -0.01) * (1 + w / 10)) * 255 for w in range(windows)]
           for c in ("a", "b")}
    ppl = math.exp(3.0 + shift)
    return {"perplexity": {"a": ppl, "b": ppl}, "mean_perplexity": ppl, "window_nll": nll,
            "window_tokens": {"a": 255, "b": 255}, "seconds": 1.0}


def _study(confirmation=None):
    cells = [_cell("lorp", 2, 20.0, [1, 2]), _cell("shortgpt", 2, 15.0, [3, 4]), _cell("streamline", 2, 18.0, [5, 6]),
             _cell("span-bi-nll", 2, 14.0, [3, 5]),
             _cell("lorp", 4, 40.0, [1, 2, 3, 4]), _cell("shortgpt", 4, 45.0, [2, 3, 4, 5]),
             _cell("streamline", 4, 30.0, [5, 6, 7, 8])]
    return StudyResult.from_json({
        "model": {"name": "m", "model_type": "llama"}, "num_blocks": 12, "rls": 0.8, "k": 3, "config": {},
        "dense": {"perplexity": {"a": 10.0, "b": 10.0}, "mean_perplexity": 10.0, "parameters": 1e8},
        "cells": cells, "confirmation": confirmation})


def test_verdict_pairs_take_the_best_baseline_on_the_screening_windows():
    pairs = verdict_pairs(_study(), selectors=("span-bi-nll",))
    assert [(p["budget"], p["role"], p["method"]) for p in pairs] == [
        (2, "lorp", "lorp"), (2, "best baseline", "shortgpt"), (2, "selector", "span-bi-nll"),
        (4, "lorp", "lorp"), (4, "best baseline", "streamline")]
    assert pairs[1]["pruned"] == [3, 4]
    # without naming it a selector, span-bi-nll would be the best baseline at budget 2
    assert verdict_pairs(_study())[1]["method"] == "span-bi-nll"
    assert verdict_pairs(_study(), baselines=("shortgpt",))[3]["method"] == "shortgpt"


def test_confirmation_table_tests_each_pair_on_the_held_out_windows_with_holm():
    conf = {"windows": 8, "seq_len": 256, "dense": _entry(0.0),
            "cells": [{"method": "lorp", "budget": 2, "role": "lorp", "pruned": [1, 2], **_entry(0.30)},
                      {"method": "shortgpt", "budget": 2, "role": "best baseline", "pruned": [3, 4], **_entry(0.20)},
                      {"method": "lorp", "budget": 4, "role": "lorp", "pruned": [1, 2, 3, 4], **_entry(0.50)},
                      {"method": "streamline", "budget": 4, "role": "best baseline", "pruned": [5, 6, 7, 8],
                       **_entry(0.50)}]}
    r = _study(conf)
    rows = confirmed(r)
    assert [(o["budget"], o["baseline"], o["decision"]) for o in rows] == [(2, "shortgpt", "loses"),
                                                                            (4, "streamline", "undecided")]
    assert rows[0]["comparison"].ratio == pytest.approx(math.exp(0.1), rel=1e-9)
    assert rows[0]["p_holm"] == pytest.approx(min(1.0, 2 * rows[0]["comparison"].p_value))  # the smaller of 2
    assert rows[1]["comparison"].difference == pytest.approx(0.0, abs=1e-12) and rows[1]["p_holm"] == 1.0
    md = confirmation_markdown(r)
    assert "On 8 held-out confirmation windows of 256 tokens per corpus" in md
    assert "| 2 | lorp | shortgpt | 1.11× [" in md and "Holm-corrected over these 2 tests: wins in 0, loses in 1" in md
    back = StudyResult.from_json(r.to_json())
    assert back.confirmation == r.confirmation and back.to_json()["version"] == StudyResult.VERSION == 6


def test_old_results_load_and_say_they_have_no_confirmation_set():
    old = _study().to_json()
    old.pop("confirmation")
    old["version"] = 1
    r = StudyResult.from_json(old)
    assert r.confirmation is None and confirmed(r) == []
    assert "No confirmation set" in confirmation_markdown(r)
