"""Zero-shot accuracy through lm-evaluation-harness on the local copies of the task data."""

import json

import pytest

from lorp.errors import UnknownNameError
from lorp.zeroshot import _arc, chosen_items, prepare_task, zero_shot


def test_arc_records_become_lm_eval_fields():
    doc = {"id": "Q1", "query": "Question: Which is a gas?\nAnswer:", "choices": ["rock", "steam", "ice"], "gold": 1}
    assert _arc(doc) == {"id": "Q1", "question": "Which is a gas?",
                         "choices": {"text": ["rock", "steam", "ice"], "label": ["A", "B", "C"]}, "answerKey": "B"}


def test_item_selection_is_seeded_sorted_and_complete_without_a_limit():
    a = chosen_items(100, 5, seed=3)
    assert a == chosen_items(100, 5, seed=3) == sorted(a) and len(set(a)) == 5
    assert a != chosen_items(100, 5, seed=4)
    assert chosen_items(100, None, seed=3) is None and chosen_items(4, 10, seed=0) is None


@pytest.mark.parametrize("task, split, count", [("arc_easy", "test", 2376), ("copa", "validation", 100)])
def test_local_task_files(task, split, count):
    folder, n = prepare_task(task)
    assert n == count
    yaml = (folder / f"lorp_{task}.yaml").read_text()
    assert "include: " in yaml and f"{split}_split: {split}" in yaml and "dataset_path: json" in yaml


def test_unknown_and_unavailable_tasks():
    with pytest.raises(UnknownNameError, match="did you mean 'hellaswag'"):
        prepare_task("hellaswg")
    with pytest.raises(UnknownNameError, match="No offline copy of RACE"):
        prepare_task("race")


@pytest.mark.real_model
def test_two_tasks_on_the_real_model_are_in_range_and_reproducible(smollm2):
    first = zero_shot(smollm2.model, smollm2.tokenizer, ["arc_easy", "copa"], limit=6, seed=0)
    again = zero_shot(smollm2.model, smollm2.tokenizer, ["arc_easy", "copa"], limit=6, seed=0)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    arc, copa = first["tasks"]["arc_easy"], first["tasks"]["copa"]
    assert arc["metric"] == "acc_norm" and copa["metric"] == "acc" and copa["acc_norm"] is None
    assert arc["items"] == copa["items"] == 6 and arc["split"] == "test" and copa["split"] == "validation"
    for v in (arc, copa):
        assert 0 <= v["score"] <= 1 and len(v["item_indices"]) == 6
    assert first["average"] == pytest.approx((arc["acc_norm"] + copa["acc"]) / 2)
    assert "race" in first["not_available"]
