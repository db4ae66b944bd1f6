"""The answer first: reports/index.md opens with what was found, why, how sure and on what, from stored results."""

import json
import math

from lorp.run.study_records import StudyResult
from lorp.study.ablation import ABLATION_SCHEMA
from lorp.study.answer import MAX_LINES, answer_lines
from lorp.study.compare import verdict_pairs_tested
from lorp.study.index import write_index

WOBBLE = [0.3, -0.3, 0.2, -0.2, 0.1, -0.1]


def _cell(method, budget, ppl, pruned, seed=0):
    return {"method": method, "budget": budget, "pruned": pruned, "perplexity": {"a": ppl, "b": ppl},
            "mean_perplexity": ppl, "parameters": 10, "seed": seed,
            "window_nll": {c: [(math.log(ppl) + e) * 4 for e in WOBBLE] for c in ("a", "b")},
            "window_tokens": {"a": 4, "b": 4}}


def _entry(shift, windows=8):
    nll = {c: [(3.0 + shift + (0.01 if w % 2 else -0.01) * (1 + w / 10)) * 255 for w in range(windows)]
           for c in ("a", "b")}
    ppl = math.exp(3.0 + shift)
    return {"perplexity": {"a": ppl, "b": ppl}, "mean_perplexity": ppl, "window_nll": nll,
            "window_tokens": {"a": 255, "b": 255}, "seconds": 1.0}


def _results(name, checkpoint, confirmation=True):
    cells = [_cell("lorp", 2, 30.0, [1, 2]), _cell("shortgpt", 2, 12.0, [3, 4]), _cell("streamline", 2, 14.0, [4, 5]),
             _cell("last", 2, 20.0, [9, 10])]
    conf = {"windows": 8, "seq_len": 256, "dense": _entry(0.0),
            "cells": [{"method": "lorp", "budget": 2, "role": "lorp", "pruned": [1, 2], **_entry(0.9)},
                      {"method": "shortgpt", "budget": 2, "role": "best baseline", "pruned": [3, 4], **_entry(0.2)}]}
    return {"schema": "lorp.study", "version": 3, "model": {"name": name, "model_type": "llama",
                                                            "checkpoint": checkpoint},
            "num_blocks": 12, "rls": 0.8, "k": 3, "config": {"detail_budgets": [2]}, "parameters": {"preset": "quick"},
            "dense": {"perplexity": {"a": 10.0, "b": 10.0}, "mean_perplexity": 10.0, "parameters": 1.35e8},
            "cells": cells, "confirmation": conf if confirmation else None}


def test_the_index_opens_with_the_answer_from_the_stored_results(tmp_path):
    for name, ckpt in (("m1", "M1-Instruct, Q4_1 GGUF dequantised to float32"),
                       ("m2", "M2 (base), Q4_K_M GGUF dequantised to float32")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_results(name, ckpt)))
    for name, share in (("m1", 0.9), ("m2", -0.2)):
        (tmp_path / name / "ablation.json").write_text(json.dumps({
            "schema": ABLATION_SCHEMA, "version": 1, "recovers_most": {"method": "lorp-bi", "pooled_recovered": share}}))
    write_index(tmp_path, preset="quick", default_root=False)
    lines = (tmp_path / "index.md").read_text().splitlines()
    assert lines[0] == "# LoRP study reports" and lines[1] == ""
    answer = lines[2:lines.index("", 2)]
    assert 4 <= len(answer) <= MAX_LINES and all(line.startswith("- ") for line in answer)
    # does LoRP win: on the held-out windows LoRP's NLL is 0.7 nats/token above shortgpt's on every window
    assert answer[0].startswith("- **Does LoRP beat its baselines here? No.** On held-out confirmation windows its "
                                f"perplexity is {math.exp(0.7):.2f}× the best baseline's")
    assert "worse shown in 2 of 2 (model, budget) settings, better shown in 0, after Holm's correction" in answer[0]
    # the floors, in words (LoRP 30 against last 20 on every window)
    assert any(line == "- LoRP loses even to `last` on m1 (budget 2); `last` on m2 (budget 2)." for line in answer)
    # why not: the ablation that recovers most, only where it recovers something
    assert any("The ablation that recovers most of LoRP's gap: `lorp-bi` on m1 (90 % of its log-perplexity gap). "
               "No ablation recovers any of it on m2." in line for line in answer)
    # how sure and on what, with the checkpoints exactly
    assert any("6 screening windows per corpus and 8 held-out confirmation windows" in line for line in answer)
    assert answer[-1].startswith("- On exactly: M1-Instruct, Q4_1 GGUF dequantised to float32 (135M parameters, 12 "
                                 "blocks); M2 (base), Q4_K_M GGUF")
    html = (tmp_path / "index.html").read_text()
    assert "<li><b>Does LoRP beat its baselines here? No.</b>" in html and "<code>last</code>" in html


def test_without_a_confirmation_set_the_answer_rests_on_the_screening_windows_and_says_so():
    studies = {"m": StudyResult.from_json(_results("m", "M", confirmation=False))}
    first = answer_lines(studies)[0]
    worse = verdict_pairs_tested(studies)["perplexity"].count("loses")
    assert first.startswith("**Does LoRP beat its baselines here? No.** Against ShortGPT and LLM-Streamline")
    assert f"(screening windows; these results have no held-out confirmation set): worse shown in {worse} of 1" in first
    assert answer_lines({}) == []


def test_the_index_the_verdict_and_the_reading_state_one_decision():
    """Where confirmation windows exist they decide: the index's answer, the verdict page's headline and each
    model's reading give the same outcome; the screening comparison is labelled as not deciding."""
    from lorp.study.compare import perplexity_decision, verdict
    from lorp.study.explain import reading

    studies = {"m1": StudyResult.from_json(_results("m1", "M1")), "m2": StudyResult.from_json(_results("m2", "M2"))}
    decided = perplexity_decision(studies)
    assert decided["source"] == "confirmation" and decided["outcomes"] == ["loses", "loses"]
    assert decided["status"] == "fails" and decided["answer"] == "No"
    assert answer_lines(studies)[0].startswith("**Does LoRP beat its baselines here? No.**")
    page = verdict(studies)
    assert page.startswith("**Perplexity (held-out confirmation windows): the paper's claim does not hold")
    assert "they decide the perplexity verdict" in page and "they chose the rivals" in page
    text = reading(studies["m1"])
    assert "screening windows, not corrected for multiple tests" in text
    assert "on the held-out confirmation windows, which decide," in text and "): LoRP loses." in text
    screening_only = {"m": StudyResult.from_json(_results("m", "M", confirmation=False))}
    assert perplexity_decision(screening_only)["source"] == "screening"
    assert not verdict(screening_only).startswith("**Perplexity (held-out")
