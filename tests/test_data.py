"""Corpora, calibration sampling and perplexity windows on real text."""

import datasets
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lorp.builtins import corpora
from lorp.errors import ConfigError, ResourceUnavailableError, UnknownNameError
from lorp.model.data import Corpus, calibration_samples, confirmation_windows, evaluation_windows, load_corpus, spread_slots
from lorp.model.models import adds_bos
from lorp.testing import make_word_tokenizer

WORDS = [f"w{i}" for i in range(50)]


def word_tokenizer(bos: bool):
    return make_word_tokenizer(WORDS, bos)


def toy_corpus(n_docs=40, words_per_doc=10):
    docs = [" ".join(WORDS[(d + i) % 50] for i in range(words_per_doc)) for d in range(n_docs)]
    return Corpus("toy", docs[: n_docs // 2], docs[n_docs // 2:], " ", "test")


def test_calibration_windows_are_seeded_disjoint_slices_of_the_stream():
    tok, corpus = word_tokenizer(False), toy_corpus()
    stream = tok(" ".join(corpus.calibration), add_special_tokens=False)["input_ids"]
    a = calibration_samples(tok, corpus, 5, 8, seed=0)
    assert a.shape == (5, 8) and a.dtype == torch.long
    assert torch.equal(a, calibration_samples(tok, corpus, 5, 8, seed=0))
    assert not torch.equal(a, calibration_samples(tok, corpus, 5, 8, seed=1))
    starts = []
    for row in a.tolist():
        start = next(s for s in range(0, len(stream), 8) if stream[s:s + 8] == row)
        starts.append(start)
    assert len(set(starts)) == 5


def test_bos_is_prepended_only_for_tokenizers_that_add_it():
    corpus = toy_corpus()
    with_bos, without = word_tokenizer(True), word_tokenizer(False)
    assert adds_bos(with_bos) and not adds_bos(without)
    assert (calibration_samples(with_bos, corpus, 3, 6)[:, 0] == 0).all()
    assert (evaluation_windows(with_bos, corpus, 6)[:, 0] == 0).all()
    assert (evaluation_windows(without, corpus, 6)[:, 0] != 0).all()


def test_screening_windows_are_spread_over_the_whole_text_one_per_stratum():
    tok, corpus = word_tokenizer(False), toy_corpus(n_docs=200)
    stream = tok(" ".join(corpus.evaluation), add_special_tokens=False)["input_ids"]
    available = len(stream) // 16  # 1000 tokens -> 62 slots
    w = evaluation_windows(tok, corpus, 16, max_tokens=50)  # 3 windows
    assert w.shape == (3, 16)
    slots = spread_slots(available, 3)
    for i, (row, slot) in enumerate(zip(w.tolist(), slots)):
        assert row == stream[slot * 16:(slot + 1) * 16]
        # window i lies in the i-th third of the text: first, middle and last part are all covered
        assert i * available // 3 <= slot < (i + 1) * available // 3
    assert torch.equal(w, evaluation_windows(tok, corpus, 16, max_tokens=50))  # the same for every caller
    assert not torch.equal(w, evaluation_windows(tok, corpus, 16, max_tokens=50, seed=1))
    assert evaluation_windows(tok, corpus, 16).shape[0] == available  # no limit: every slot


def test_confirmation_windows_are_spread_and_disjoint_from_the_screening_windows():
    tok, corpus = word_tokenizer(False), toy_corpus(n_docs=200)
    stream = tok(" ".join(corpus.evaluation), add_special_tokens=False)["input_ids"]
    available = len(stream) // 16
    screening = spread_slots(available, 4)
    confirmation = spread_slots(available, 20, 1, exclude=screening)
    assert len(set(confirmation)) == 20 and not set(confirmation) & set(screening)
    assert confirmation.min() < available // 10 and confirmation.max() >= available * 9 // 10
    w = confirmation_windows(tok, corpus, 16, 20, screening_tokens=64)
    assert [row for row in w.tolist()] == [stream[s * 16:(s + 1) * 16] for s in confirmation]
    with pytest.raises(ConfigError, match="at most 58 confirmation windows fit, 59 were asked for"):
        confirmation_windows(tok, corpus, 16, 59, screening_tokens=64)
    with pytest.raises(ConfigError, match="whole number >= 1"):
        confirmation_windows(tok, corpus, 16, 0, screening_tokens=64)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.data())
def test_spread_slots_take_one_free_slot_per_equal_stratum(available, data):
    exclude = data.draw(st.sets(st.integers(0, available - 1), max_size=available - 1))
    free = [s for s in range(available) if s not in exclude]
    count = data.draw(st.integers(1, len(free)))
    slots = spread_slots(available, count, data.draw(st.integers(0, 5)), exclude=exclude)
    assert len(slots) == count and list(slots) == sorted(set(slots.tolist()))
    assert not set(slots.tolist()) & exclude
    for i, s in enumerate(slots):  # the i-th slot is in the i-th stratum of the free slots
        lo, hi = (i * len(free)) // count, ((i + 1) * len(free)) // count
        assert s in free[lo:hi]


def test_too_little_text_is_a_clear_error():
    tok, corpus = word_tokenizer(False), toy_corpus(n_docs=4)
    with pytest.raises(ConfigError, match="fewer than the 100 requested"):
        calibration_samples(tok, corpus, 100, 8)
    with pytest.raises(ConfigError, match="no full window"):
        evaluation_windows(tok, corpus, 8, max_tokens=4)


@pytest.mark.parametrize("name", ["wiki-paragraphs", "lambada"])
def test_packaged_corpora_keep_calibration_and_evaluation_apart(name):
    corpus = load_corpus(name)
    assert len(corpus.calibration) > 1000 and len(corpus.evaluation) > 200
    assert not set(corpus.calibration) & set(corpus.evaluation)
    assert abs(len(corpus.calibration) / len(corpus.evaluation) - 4) < 0.1


def test_ptb_has_mikolov_sizes():
    ptb = load_corpus("ptb")
    assert (len(ptb.calibration), len(ptb.evaluation)) == (42068, 3761)
    assert "<unk>" in " ".join(ptb.evaluation[:50])


def test_text_file_corpus(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"paragraph {i}" for i in range(10)))
    corpus = load_corpus(str(path))
    assert corpus.evaluation == ["paragraph 0", "paragraph 5"] and len(corpus.calibration) == 8
    (tmp_path / "one.txt").write_text("only one paragraph")
    with pytest.raises(ConfigError, match="at least 2"):
        load_corpus(str(tmp_path / "one.txt"))


def test_unknown_corpus_suggests_a_name():
    with pytest.raises(UnknownNameError, match="did you mean 'lambada'"):
        load_corpus("lambda")


@pytest.mark.parametrize("name", ["wikitext2", "c4"])
def test_hub_corpora_offline_name_the_offline_alternatives(name, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ResourceUnavailableError, match="ptb, wiki-paragraphs, lambada"):
        load_corpus(name)


def test_hub_path_reads_the_splits_it_asks_for(monkeypatch):
    """The real hub code path, with a local DatasetDict standing in for the hub."""
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.DatasetDict({
            "train": datasets.Dataset.from_dict({"text": ["train a", "train b"]}),
            "test": datasets.Dataset.from_dict({"text": ["test a"]}),
        })

    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    corpus = corpora.load_wikitext2()
    assert calls[0][0] == ("wikitext", "wikitext-2-raw-v1")
    assert corpus.calibration == ["train a", "train b"] and corpus.evaluation == ["test a"]


def test_hub_failure_is_a_clear_error(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(ResourceUnavailableError, match="no route to host.*Offline, use one of"):
        load_corpus("c4")
