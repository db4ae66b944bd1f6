"""Zero-shot forwards of pruned variants restarted from the dense model's hidden states (lorp.evaluate.zeroshot_prefix)."""

import numpy as np
import pytest
import torch

from lorp.evaluate.zeroshot_prefix import DensePrefixStates, batch_key
from lorp.model.pruning import blocks_removed
from lorp.testing import make_tiny_model, make_word_tokenizer, token_requests


def _token_requests(seed: int = 0):
    """14 contexts of 1 to 20 tokens, each with 1 to 4 continuations."""
    return token_requests(seed, lengths=(1, 2, 3, 5, 7, 9, 11, 12, 14, 15, 17, 18, 19, 20))


def _lls(model, tokenizer, requests, forward=None):
    from lorp.evaluate.hflm import TrimmedHFLM

    lm = TrimmedHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu", forward=forward)
    return lm._loglikelihood_tokens(requests, disable_tqdm=True), lm


def json_ready(model, tokenizer, requests, removed):
    with blocks_removed(model, removed):
        return _lls(model, tokenizer, requests)[0]


def _close(got, want):
    assert len(got) == len(want)
    assert max(abs(a[0] - b[0]) for a, b in zip(got, want)) <= 1e-5 * max(1.0, max(abs(b[0]) for b in want))
    assert [g for _, g in got] == [g for _, g in want]


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen2"])
def test_restarted_variants_give_the_plain_pruned_loglikelihoods(arch):
    """Each variant from the dense states entering its restart block = lm-eval's forward of the pruned model, to 1e-5;
    the dense pass that keeps the states gives the dense model's own log-likelihoods. Gemma 3's tiny model has an
    8-token sliding window, shorter than the longest inputs here."""
    model = make_tiny_model(arch, num_blocks=5, vocab_size=64)
    tokenizer = make_word_tokenizer([f"w{i}" for i in range(60)])
    requests = _token_requests()
    prefix = DensePrefixStates(model, [1, 3, 9, 0])  # 0 and 9 are not blocks a variant restarts from
    assert prefix.blocks == [1, 3] and prefix.reuse is None
    dense, lm = _lls(model, tokenizer, requests, prefix.record)
    _close(dense, _lls(model, tokenizer, requests)[0])
    assert prefix.reuse is True and lm.trimmed_calls > 0
    batches = lm.trimmed_calls + lm.full_calls
    assert len(prefix._states) == batches and prefix.kept_bytes > 0
    # restart at the first removed block; at the highest kept block before it (3 for {4}, 1 for {2, 4});
    # nothing kept at or before block 0; nothing would run after block 3 for {3, 4}
    for removed, start in (((1,), 1), ((3, 4), None), ((4,), 3), ((2, 4), 1), ((0, 3), None), ((1, 2), 1)):
        assert prefix.start_for(removed) == start
        before = prefix.restarted, prefix.plain
        got, _ = _lls(model, tokenizer, requests, prefix.replay(removed))
        _close(got, json_ready(model, tokenizer, requests, removed))
        restarted, plain = prefix.restarted - before[0], prefix.plain - before[1]
        assert (restarted, plain) == ((batches, 0) if start is not None else (0, batches))


def test_a_healed_variant_restarts_no_later_than_its_first_changed_block():
    """Weights changed in block 2 (a healer's fold): the variant removing block 3 restarts at block 1, whose dense
    input is still right, and gives the changed model's plain log-likelihoods; restarting at 3 would not."""
    model = make_tiny_model("llama", num_blocks=5, vocab_size=64)
    tokenizer = make_word_tokenizer([f"w{i}" for i in range(60)])
    requests = _token_requests(1)
    prefix = DensePrefixStates(model, [1, 3])
    _lls(model, tokenizer, requests, prefix.record)
    with torch.no_grad():
        model.model.layers[2].mlp.down_proj.weight.mul_(3.0)
    assert prefix.start_for([3], changed_from=2) == 1 and prefix.start_for([3], changed_from=0) is None
    want = json_ready(model, tokenizer, requests, [3])
    _close(_lls(model, tokenizer, requests, prefix.replay([3], changed_from=2))[0], want)
    stale = _lls(model, tokenizer, requests, prefix.replay([3]))[0]  # from block 3: the dense input to it is stale
    assert max(abs(a[0] - b[0]) for a, b in zip(stale, want)) > 1e-3


def test_the_state_bound_drops_the_lowest_block_first_and_replay_stays_exact():
    model = make_tiny_model("qwen2", num_blocks=5, vocab_size=64)
    tokenizer = make_word_tokenizer([f"w{i}" for i in range(60)])
    requests = _token_requests(2)
    hidden = model.config.hidden_size
    one_block = sum(len(c) + len(k) for _, c, k in requests) * hidden * 4  # more than all real tokens of one block
    prefix = DensePrefixStates(model, [1, 2, 3], max_bytes=one_block)
    _lls(model, tokenizer, requests, prefix.record)
    assert prefix.blocks == [3] and 0 < prefix.kept_bytes <= one_block
    assert all(set(kept) == {3} for kept in prefix._states.values())
    for removed in ((1,), (3,)):
        _close(_lls(model, tokenizer, requests, prefix.replay(removed))[0],
               json_ready(model, tokenizer, requests, removed))
    assert prefix.start_for([1]) is None and prefix.start_for([3]) == 3


def test_learned_positions_fail_the_check_and_keep_nothing():
    """GPT-2 adds learned positions before the first block, so states cannot enter mid-model as embeddings: the
    first batch's check fails, nothing is kept, and every variant runs plainly with the same numbers."""
    model = make_tiny_model("gpt2", num_blocks=4, vocab_size=64)
    tokenizer = make_word_tokenizer([f"w{i}" for i in range(60)])
    requests = _token_requests(3)
    prefix = DensePrefixStates(model, [2])
    _close(_lls(model, tokenizer, requests, prefix.record)[0], _lls(model, tokenizer, requests)[0])
    assert prefix.reuse is False and not prefix._states and prefix.kept_bytes == 0
    assert prefix.start_for([2]) is None
    _close(_lls(model, tokenizer, requests, prefix.replay([2]))[0], json_ready(model, tokenizer, requests, [2]))


def test_batch_keys_tell_batches_apart():
    a = torch.tensor([[1, 2, 3], [4, 5, 0]])
    assert batch_key(a) == batch_key(a.clone())
    assert batch_key(a) != batch_key(torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert batch_key(a) != batch_key(a.reshape(3, 2))


def test_forward_and_shared_contexts_are_refused_together():
    from lorp.errors import ConfigError
    from lorp.evaluate.zeroshot import zero_shot

    model = make_tiny_model("llama")
    with pytest.raises(ConfigError, match="share_context"):
        zero_shot(model, make_word_tokenizer(["a"]), ["copa"], limit=2, share_context=True,
                  forward=lambda ids, keep: model(ids).logits)


@pytest.mark.real_model
def test_real_smollm2_tasks_give_the_same_accuracies_restarted(smollm2):
    """On the real model and two real tasks, the restarted pruned variants score every item as the plain pruned
    model does (ShortGPT-like deep run and a LoRP-like early block)."""
    from lorp.evaluate.zeroshot import zero_shot

    model, tokenizer = smollm2.model, smollm2.tokenizer
    tasks, limit = ["arc_easy", "hellaswag"], 12
    prefix = DensePrefixStates(model, [4, 12])
    dense = zero_shot(model, tokenizer, tasks, limit=limit, forward=prefix.record)
    plain_dense = zero_shot(model, tokenizer, tasks, limit=limit)
    assert prefix.reuse is True
    for t in tasks:
        assert dense["tasks"][t]["correct"] == plain_dense["tasks"][t]["correct"]
    for removed in ([12, 13, 14, 15, 16, 17, 25, 26], [4, 5, 6, 17, 19, 26, 27, 28]):
        got = zero_shot(model, tokenizer, tasks, limit=limit, forward=prefix.replay(removed))
        with blocks_removed(model, removed):
            want = zero_shot(model, tokenizer, tasks, limit=limit)
        for t in tasks:
            assert got["tasks"][t]["correct"] == want["tasks"][t]["correct"]
            assert got["tasks"][t]["acc"] == want["tasks"][t]["acc"]
            assert got["tasks"][t]["acc_norm"] == want["tasks"][t]["acc_norm"]
    assert prefix.plain == 0 and prefix.restarted > 0


def test_the_worker_restarts_detailed_cells_from_its_dense_zero_shot_pass(tmp_path, monkeypatch):
    """CellWorker: the dense evaluation keeps the states entering each detailed cell's first removed block, and
    evaluate() runs that cell's zero-shot forwards from there, with the numbers of a worker that keeps none;
    decode speed still runs on the pruned model."""
    import torch.nn.functional as F

    from lorp.run import evaluation_work as worker_module
    from lorp.run.pipeline import PruneConfig
    from lorp.run.records import EvalSettings
    from lorp.run.worker import CellWorker
    from lorp.testing import make_tiny_model_folder

    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    folder, text = make_tiny_model_folder(tmp_path / "inputs", num_blocks=6)
    config = PruneConfig(model=str(folder), calibration=str(text), num_samples=4, seq_len=8, eval_corpora=(str(text),),
                         eval_seq_len=8, eval_tokens=64, progress=False)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(2, 40, (3, 7), generator=g), torch.randint(2, 40, (2, 5), generator=g)]
    seen = []

    def fake_zero_shot(model, tokenizer, tasks, *, limit, seed, forward=None):
        lls = []
        for ids in batches:  # lm-eval's model calls, as the worker makes them
            logits = forward(ids, None) if forward is not None else model(input_ids=ids).logits
            lls += F.log_softmax(logits[:, :-1], -1).gather(2, ids[:, 1:, None]).sum((1, 2)).tolist()
        seen.append((forward is not None, len(find_blocks(model)[1]), lls))
        return {"tasks": {"t": {"score": 0.5, "metric": "acc", "items": 2, "split": "test", "acc": 0.5,
                                "correct": [1, 0]}}, "average": 0.5, "limit": limit, "seed": seed}

    from lorp.model.blocks import find_blocks

    monkeypatch.setattr(worker_module, "zero_shot", fake_zero_shot)
    settings = EvalSettings(corpora=(str(text),), seq_len=8, tokens=64, zero_shot_tasks=("t",), zero_shot_limit=2,
                            decode_tokens=2)
    fast, slow = CellWorker(config, ("lorp",)), CellWorker(config, ("lorp",), reuse_states=False)
    fast.dense([2, 4], settings, [2, 4])
    slow.dense([2, 4], settings, [2, 4])
    assert seen[0][:2] == (True, 6) and seen[1][:2] == (False, 6)
    np.testing.assert_allclose(seen[0][2], seen[1][2], rtol=1e-5)
    prefix = fast._zero_shot_prefix
    assert slow._zero_shot_prefix is None and prefix.blocks == [2, 4] and prefix.reuse
    for removed in ([2, 3], [4], [1, 5]):  # [1, 5]: no states kept at or before block 1, a plain pruned pass
        seen.clear()
        a, b = fast.evaluate(removed, settings), slow.evaluate(removed, settings)
        restarted = removed[0] in (2, 4)
        kept = 6 - len(removed)
        assert seen[0][:2] == ((True, 6) if restarted else (False, kept))  # the restart removes blocks per call
        assert seen[1][:2] == (False, kept)
        np.testing.assert_allclose(seen[0][2], seen[1][2], rtol=1e-5)
        assert a.speed is not None and a.speed.flops_per_token == b.speed.flops_per_token
        assert a.zero_shot == b.zero_shot and set(a.stage_seconds) == {"perplexity", "zero_shot", "speed"}
    assert prefix.restarted == 4 and prefix.plain == 0
