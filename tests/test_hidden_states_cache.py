"""The dense pass of evaluation windows, cached on disk (lorp.store.hidden_states) and loaded by a later
SweepPerplexity: the same numbers bit for bit, no dense forward, and a damaged, foreign or too small entry never
used."""

import numpy as np
import pytest
import torch

from lorp.evaluate.perplexity import SweepPerplexity, perplexities
from lorp.model.pruning import blocks_removed
from lorp.store.hidden_states import load_hidden_states, save_hidden_states, states_path
from lorp.testing import count_dense_forwards, make_tiny_model

FIELDS = {"model": "tiny", "model_info": {"dtype": "float32"}}
VARIANTS = [[1], [2, 3], [3, 5], [4], [5]]


def windows(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randint(0, 128, (3, 12), generator=g), "b": torch.randint(0, 128, (2, 12), generator=g)}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "hidden_states"


@pytest.fixture
def dense_passes(monkeypatch):
    """Counts forwards of the whole dense model (``block_inputs`` with nothing removed)."""
    return count_dense_forwards(monkeypatch)


def test_a_second_scorer_loads_the_dense_pass_and_gives_the_same_numbers_bit_for_bit(cache, dense_passes):
    model, w = make_tiny_model("llama", num_blocks=6), windows()
    first = SweepPerplexity(model, w, {4}, batch_size=2, cache_fields=FIELDS)
    assert not first.from_cache and first.reuse
    assert first.stored_blocks == [1, 2, 3, 4, 5]  # the asked-for block, then every other one within the bound
    assert len(list(cache.glob("*.npz"))) == 1
    computed = len(dense_passes)
    second = SweepPerplexity(model, w, {1, 2, 3}, batch_size=2, cache_fields=FIELDS)
    assert second.from_cache and second.reuse and len(dense_passes) == computed  # no dense forward ran
    assert second.dense == first.dense
    for removed in VARIANTS:
        fast, again = first(removed), second(removed)
        with blocks_removed(model, removed):
            plain = perplexities(model, w, batch_size=2, progress=False)
        for name in w:
            assert again[name]["nll"] == fast[name]["nll"] and again[name]["window_nll"] == fast[name]["window_nll"]
            assert again[name]["nll"] == pytest.approx(plain[name]["nll"], rel=1e-5)


def test_other_windows_batch_size_or_model_fields_miss_the_entry(cache, dense_passes):
    model, w = make_tiny_model("llama", num_blocks=4), windows()
    SweepPerplexity(model, w, {2}, batch_size=2, cache_fields=FIELDS)
    for kwargs in ({"windows": windows(seed=1)}, {"batch_size": 1}, {"fields": {**FIELDS, "model": "other"}}):
        scorer = SweepPerplexity(model, kwargs.get("windows", w), {2}, batch_size=kwargs.get("batch_size", 2),
                                 cache_fields=kwargs.get("fields", FIELDS))
        assert not scorer.from_cache
    assert len(list(cache.glob("*.npz"))) == 4
    no_cache = SweepPerplexity(model, w, {2}, batch_size=2)
    assert not no_cache.from_cache


def test_an_entry_without_an_asked_for_block_is_recomputed_and_replaced(cache):
    model, w = make_tiny_model("llama", num_blocks=6), windows()
    per_block = sum(x.numel() for x in w.values()) * 32 * 4
    small = SweepPerplexity(model, w, {1}, batch_size=2, cache_fields=FIELDS, max_state_bytes=2 * per_block)
    assert small.stored_blocks == [1, 5]
    other = SweepPerplexity(model, w, {3}, batch_size=2, cache_fields=FIELDS)
    assert not other.from_cache and other.stored_blocks == [1, 2, 3, 4, 5]
    assert SweepPerplexity(model, w, {1, 3}, batch_size=2, cache_fields=FIELDS).from_cache


def test_a_damaged_entry_gives_a_notice_and_is_recomputed(cache, capsys):
    model, w = make_tiny_model("qwen2", num_blocks=4), windows()
    first = SweepPerplexity(model, w, {2}, batch_size=2, cache_fields=FIELDS)
    path = next(cache.glob("*.npz"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = SweepPerplexity(model, w, {2}, batch_size=2, cache_fields=FIELDS)
    assert not again.from_cache and again.dense == {n: {**d, "seconds": again.dense[n]["seconds"]}
                                                     for n, d in first.dense.items()}
    assert "cached hidden states" in capsys.readouterr().err
    assert SweepPerplexity(model, w, {2}, batch_size=2, cache_fields=FIELDS).from_cache  # rewritten whole


def test_learned_positions_cache_the_dense_perplexity_only(cache, dense_passes):
    model, w = make_tiny_model("gpt2", num_blocks=4), windows()
    first = SweepPerplexity(model, w, {1, 2}, cache_fields=FIELDS)
    assert not first.reuse
    computed = len(dense_passes)
    second = SweepPerplexity(model, w, {2, 3}, cache_fields=FIELDS)
    assert second.from_cache and not second.reuse and second.stored_blocks == [] and len(dense_passes) == computed
    with blocks_removed(model, [2]):
        plain = perplexities(model, w, progress=False)
    assert second([2])["a"]["nll"] == pytest.approx(plain["a"]["nll"], rel=1e-6)


def test_a_model_that_is_not_float32_does_not_use_the_cache(cache):
    model, w = make_tiny_model("llama", num_blocks=4).to(torch.bfloat16), windows()
    SweepPerplexity(model, w, {2}, cache_fields=FIELDS)
    assert not cache.exists() or not list(cache.glob("*.npz"))


def test_the_store_round_trips_states_and_refuses_another_key(cache, capsys):
    states = {"x": [{1: np.arange(24, dtype=np.float32).reshape(1, 4, 6)}, {}], "y/z": [{3: np.ones((2, 2, 2), np.float32)}]}
    save_hidden_states("k1", states, {"dense": {"x": 1.5}})
    got, meta = load_hidden_states("k1")
    assert meta == {"dense": {"x": 1.5}} and list(got) == ["x", "y/z"] and got["x"][1] == {}
    assert np.array_equal(got["x"][0][1], states["x"][0][1]) and got["x"][0][1].dtype == np.float32
    states_path("k2").write_bytes(states_path("k1").read_bytes())
    assert load_hidden_states("k2") is None and "another key" in capsys.readouterr().err
    assert load_hidden_states("absent") is None
