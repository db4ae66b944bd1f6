"""Zero-shot accuracy through lm-evaluation-harness on the local copies of the task data."""

import copy
import json

import numpy as np
import pytest

from lorp.errors import ConfigError, UnknownNameError
from lorp.evaluate.chance import chance_accuracy
from lorp.evaluate.zeroshot import _MANAGERS, _arc, chosen_items, prepare_task, zero_shot
from lorp.paths import cache_dir
from lorp.run.records import TaskScore, ZeroShot
from lorp.testing import token_requests

# Multiple-choice items (context, choices, right choice) of very different lengths, so that a batch of 4 mixes
# short and long rows (right padding) and one-token continuations (lm-eval's shared-context logits cache).
ITEMS = [
    ("Question: Which of these is a gas at room temperature?\nAnswer:", [" steam", " rock", " ice", " wood"], 0),
    ("The capital of France is", [" Paris", " Berlin", " a small village in the mountains of Peru"], 0),
    ("2 + 2 =", [" 4", " 5"], 0),
    ("When you drop a glass on a hard stone floor, it usually", [" breaks into pieces", " floats away",
                                                                 " turns into water"], 0),
    ("Q: What colour is the sky on a clear day?\nA:", [" blue", " green and purple with yellow stripes"], 0),
    ("Dogs", [" bark", " meow"], 0),
]


def _requests():
    from lm_eval.api.instance import Instance

    reqs, owner = [], []
    for i, (ctx, choices, _) in enumerate(ITEMS):
        for c in choices:
            reqs.append(Instance("loglikelihood", {}, (ctx, c), len(reqs), ("items", i, 1)))
            owner.append(i)
    return reqs, owner


def _accuracy(lls, owner):
    picks = [int(np.argmax([ll for ll, o in zip(lls, owner) if o == i])) for i in range(len(ITEMS))]
    return [int(p == ITEMS[i][2]) for i, p in enumerate(picks)]


def _hflm(cls, model, tokenizer, **kw):
    return cls(pretrained=model, tokenizer=tokenizer, batch_size=4, device=str(model.device), **kw)


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


def test_task_scores_keep_per_item_correctness_and_old_records_still_load():
    data = {"tasks": {"copa": {"score": 0.5, "metric": "acc", "items": 4, "split": "validation", "acc": 0.5,
                               "acc_norm": None, "item_indices": [1, 5, 7, 9], "correct": [1, 0, 0, 1]}},
            "average": 0.5, "limit": 4, "seed": 0}
    zs = ZeroShot.from_dict(json.loads(json.dumps(data)))
    assert zs.tasks["copa"].correct == [1, 0, 0, 1]
    old = ZeroShot.from_dict({**data, "tasks": {"copa": {k: v for k, v in data["tasks"]["copa"].items()
                                                         if k != "correct"}}})
    assert old.tasks["copa"] == TaskScore(0.5, "acc", 4, "validation", 0.5, None, [1, 5, 7, 9])
    assert old.tasks["copa"].correct is None


def test_a_kept_task_manager_is_tied_to_the_task_files(tmp_path):
    from lorp.evaluate.zeroshot import _manager_key

    (tmp_path / "lorp_a.yaml").write_text("task: lorp_a\n")
    key = _manager_key(tmp_path)
    assert _manager_key(tmp_path) == key and _manager_key(None) is None
    (tmp_path / "lorp_b.yaml").write_text("task: lorp_b\n")  # a task prepared later
    assert _manager_key(tmp_path) != key
    key = _manager_key(tmp_path)
    (tmp_path / "lorp_b.yaml").write_text("task: lorp_c\n")
    assert _manager_key(tmp_path) != key


@pytest.mark.real_model
def test_trimmed_logits_give_plain_hflm_loglikelihoods_and_accuracies(smollm2):
    from lm_eval.models.huggingface import HFLM

    from lorp.evaluate.zeroshot import TrimmedHFLM

    reqs, owner = _requests()
    trimmed = _hflm(TrimmedHFLM, smollm2.model, smollm2.tokenizer, share_context=False)
    got = trimmed.loglikelihood(reqs)
    want = _hflm(HFLM, smollm2.model, smollm2.tokenizer).loglikelihood(_requests()[0])
    # 12 distinct inputs in 3 batches of mixed lengths; the one holding the 1-token context "Dogs" reads every
    # position (inplen - contlen = 0), so it runs in full
    assert trimmed.trimmed_calls >= 2 and trimmed.trimmed_calls + trimmed.full_calls >= 3
    shared = _hflm(TrimmedHFLM, smollm2.model, smollm2.tokenizer, share_context=True)
    each = shared.loglikelihood(_requests()[0])
    assert shared.shared_contexts == len(ITEMS) and shared.trimmed_calls == shared.full_calls == 0
    for answers in (got, each):  # summed log-likelihoods of up to 9 tokens: 1e-5 relative (float32 rounding)
        assert max(abs(a[0] - b[0]) / max(1.0, abs(b[0])) for a, b in zip(answers, want)) <= 1e-5
        assert [g for _, g in answers] == [g for _, g in want]
        assert _accuracy([ll for ll, _ in answers], owner) == _accuracy([ll for ll, _ in want], owner)


def test_the_first_read_position_covers_every_row():
    import torch

    from lorp.evaluate.zeroshot import TrimmedHFLM

    lm = TrimmedHFLM.__new__(TrimmedHFLM)  # only the request map is needed
    lm._cont_lens = {(5, 6, 7, 8): 2, (9, 3): 1, (4, 0): 1, (4,): 1}
    lm._input_lens = {len(k) for k in lm._cont_lens}
    batch = torch.tensor([[5, 6, 7, 8], [9, 3, 0, 0]])
    assert lm.first_read_position(batch) == 1  # min(4 - 2, 2 - 1)
    # a row ending in the padding id matches both (4,) and (4, 0): the smaller start wins
    assert lm.first_read_position(torch.tensor([[5, 6, 7, 8], [4, 0, 0, 0]])) == 0
    assert lm.first_read_position(torch.tensor([[5, 6, 7, 8], [1, 2, 0, 0]])) is None


@pytest.mark.real_model
def test_a_model_without_logits_to_keep_falls_back_to_the_full_call(smollm2):
    from lm_eval.models.huggingface import HFLM

    from lorp.evaluate.zeroshot import TrimmedHFLM

    model = smollm2.model
    wrapped = copy.copy(model)  # shares the weights; only this copy's forward changes

    def forward(input_ids, attention_mask=None):
        return model(input_ids, attention_mask=attention_mask)

    wrapped.forward = forward
    lm = _hflm(TrimmedHFLM, wrapped, smollm2.tokenizer)
    got = lm.loglikelihood(_requests()[0])
    assert not lm.accepts_logits_to_keep() and lm.trimmed_calls == 0 and lm.full_calls >= 3
    want = _hflm(HFLM, model, smollm2.tokenizer).loglikelihood(_requests()[0])
    assert got == want


@pytest.mark.real_model
def test_two_tasks_on_the_real_model_are_in_range_and_the_same_trimmed_or_not(smollm2):
    first = zero_shot(smollm2.model, smollm2.tokenizer, ["arc_easy", "copa"], limit=6, seed=0)
    managers = dict(_MANAGERS)
    plain = zero_shot(smollm2.model, smollm2.tokenizer, ["arc_easy", "copa"], limit=6, seed=0, trim_logits=False)
    assert json.dumps(first, sort_keys=True) == json.dumps(plain, sort_keys=True)  # scores and per-item correctness
    assert _MANAGERS == managers  # lm-eval's task set-up was built once, then kept
    arc, copa = first["tasks"]["arc_easy"], first["tasks"]["copa"]
    assert arc["metric"] == "acc_norm" and copa["metric"] == "acc" and copa["acc_norm"] is None
    assert arc["items"] == copa["items"] == 6 and arc["split"] == "test" and copa["split"] == "validation"
    for v in (arc, copa):
        assert 0 <= v["score"] <= 1 and len(v["item_indices"]) == 6
        assert len(v["correct"]) == 6 and set(v["correct"]) <= {0, 1} and np.mean(v["correct"]) == v["score"]
    assert ZeroShot.from_dict(json.loads(json.dumps(first))).tasks["arc_easy"].correct == arc["correct"]
    assert first["average"] == pytest.approx((arc["acc_norm"] + copa["acc"]) / 2)
    assert "race" in first["not_available"]


def test_chance_is_uniform_guessing_or_the_majority_label_on_the_evaluated_items():
    prepare_task("boolq")
    assert chance_accuracy("copa") == 0.5 and chance_accuracy("arc_easy", [0, 1, 2]) == pytest.approx(
        sum(1 / len(r["choices"]["text"]) for r in _rows("arc_easy", "test")[:3]) / 3)
    labels = [int(r["label"]) for r in _rows("boolq", "validation")]
    assert chance_accuracy("boolq") == max(labels.count(0), labels.count(1)) / len(labels)
    assert 0.6 < chance_accuracy("boolq") < 0.65  # BoolQ's validation split is about 62 % "yes"
    assert chance_accuracy("boolq", [i for i, v in enumerate(labels) if v == 0][:3]) == 1.0
    with pytest.raises(ConfigError, match="no items to compute chance on"):
        chance_accuracy("copa", [])


def _rows(task, split):
    path = cache_dir() / "zeroshot" / "data" / f"{task}.{split}.jsonl"
    return [json.loads(line) for line in path.open(encoding="utf-8")]


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen2", "gpt2"])
@pytest.mark.parametrize("removed", [(), (1,)])
def test_a_shared_context_gives_the_full_forwards_loglikelihoods(arch, removed):
    """Each context run once from its KV cache = lm-eval's plain full forward of context + continuation, to 1e-5.

    Gemma 3's tiny model has an 8-token sliding window, shorter than the longest inputs here.
    """
    from lm_eval.models.huggingface import HFLM

    from lorp.evaluate.zeroshot import TrimmedHFLM
    from lorp.model.pruning import remove_blocks
    from lorp.testing import make_tiny_model, make_word_tokenizer

    model = remove_blocks(make_tiny_model(arch, num_blocks=4, vocab_size=64), removed)
    tokenizer = make_word_tokenizer([f"w{i}" for i in range(60)])
    requests = token_requests()
    shared = _hflm(TrimmedHFLM, model, tokenizer, share_context=True)
    got = shared._loglikelihood_tokens(requests, disable_tqdm=True)
    want = _hflm(HFLM, model, tokenizer)._loglikelihood_tokens(requests, disable_tqdm=True)
    assert shared.shared_contexts == 6 and shared.trimmed_calls == shared.full_calls == 0
    assert max(abs(a[0] - b[0]) for a, b in zip(got, want)) <= 1e-5
    assert [g for _, g in got] == [g for _, g in want]
    unshared = _hflm(TrimmedHFLM, model, tokenizer, share_context=False)
    alone = unshared._loglikelihood_tokens(requests, disable_tqdm=True)
    assert unshared.shared_contexts == 0 and max(abs(a[0] - b[0]) for a, b in zip(alone, want)) <= 1e-5
