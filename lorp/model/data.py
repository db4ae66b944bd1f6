"""Text for the method: corpora by name or file, calibration samples, screening and confirmation windows.

Named corpora are plugins (:class:`lorp.CorpusSource`; builtins in
:mod:`lorp.builtins.corpora`: ``ptb``, ``wiki-paragraphs``, ``lambada``,
``wikitext2``, ``c4``). Any other argument that names an existing UTF-8 text
file is read as paragraphs separated by blank lines; every fifth paragraph
(index % 5 == 0) is evaluation text and the rest calibration text.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, PluginError, UnknownNameError
from ..plugins.components import Corpus
from ..plugins.guard import plugin_code
from ..plugins.registry import default_registry
from .models import adds_bos


def every_fifth(docs: list[str]) -> tuple[list[str], list[str]]:
    """Split documents into (calibration, evaluation): index % 5 == 0 goes to evaluation."""
    calib = [d for i, d in enumerate(docs) if i % 5]
    evaluation = [d for i, d in enumerate(docs) if i % 5 == 0]
    return calib, evaluation


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
    calib, evaluation = every_fifth(docs)
    return Corpus(str(path), calib, evaluation, "\n\n", f"file {path.resolve()}")


def load_corpus(name: str, registry=None) -> Corpus:
    """Load a registered corpus by name, or a text file by path.

    Raises:
        UnknownNameError: not a registered corpus and not an existing file.
        ResourceUnavailableError: a hub corpus while offline, or a package cannot be fetched.
    """
    registry = registry or default_registry()
    if name in registry.components["corpus"]:
        with plugin_code(f"corpus {name!r}"):
            corpus = registry.corpus(name).load()
        if not isinstance(corpus, Corpus) or not corpus.calibration or not corpus.evaluation:
            raise PluginError(f"corpus {name!r} must load a lorp.Corpus with calibration and evaluation documents, "
                              f"got {type(corpus).__name__}")
        return corpus
    if Path(name).expanduser().is_file():
        return load_text_file(Path(name).expanduser())
    raise UnknownNameError("corpus", name, registry.components["corpus"],
                           hint="Or give the path of an existing UTF-8 text file")


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


#: Seed of the evaluation-window placement: fixed, so every method, run seed and budget is scored on the same windows.
WINDOW_SEED = 0


def spread_slots(available: int, count: int, seed: int = WINDOW_SEED, exclude=()) -> np.ndarray:
    """``count`` window slots spread evenly over ``range(available)``, one drawn at random per stratum.

    The slots not in ``exclude`` are cut into ``count`` strata of (nearly) equal size in text
    order; ``numpy.random.default_rng(seed)`` picks one slot in each. So the windows cover
    the whole text, from its first to its last part, and no two share a slot. With
    ``count`` equal to the slots left, every one is taken.

    Args:
        available: slots in the text (``len(stream) // body`` non-overlapping windows).
        count: slots wanted (>= 1).
        seed: the draw inside each stratum.
        exclude: slots that must not be taken (a set drawn before, e.g. the screening windows).
    Returns:
        int64 ``[count]``, ascending.
    Raises:
        ConfigError: fewer slots left than ``count``.
    """
    taken = set(int(x) for x in exclude)
    free = np.array([s for s in range(int(available)) if s not in taken], dtype=np.int64)
    if count < 1 or count > free.size:
        raise ConfigError(f"the text holds {free.size} free window(s), {count} are asked for")
    edges = (np.arange(count + 1, dtype=np.int64) * free.size) // count
    rng = np.random.default_rng(seed)
    return np.array([free[lo + rng.integers(hi - lo)] for lo, hi in zip(edges[:-1], edges[1:])], dtype=np.int64)


def _window_count(stream: list[int], corpus: Corpus, seq_len: int, max_tokens: int | None, body: int) -> tuple[int, int]:
    available = len(stream) // body
    count = available if max_tokens is None else min(available, int(max_tokens) // seq_len)
    if count < 1:
        raise ConfigError(
            f"corpus {corpus.name!r} evaluation text gives no full window of {seq_len} tokens "
            f"(token limit {max_tokens}, {len(stream)} tokens available); raise the limit or shorten the window"
        )
    return available, count


def evaluation_windows(tokenizer, corpus: Corpus, seq_len: int, max_tokens: int | None = None, *,
                       seed: int = WINDOW_SEED) -> torch.Tensor:
    """The screening windows: ``max_tokens // seq_len`` non-overlapping windows spread over the evaluation text.

    The evaluation documents are joined with ``corpus.separator`` and tokenized; the
    stream is cut into consecutive slots of ``seq_len`` tokens (BOS first where the
    tokenizer adds one), and :func:`spread_slots` picks one slot per equal stratum of
    the whole text. The placement depends only on the corpus, the tokenizer,
    ``seq_len``, ``max_tokens`` and ``seed``: every method, budget and run seed is scored
    on the same windows. Evaluation text never overlaps calibration text (see
    :mod:`lorp.builtins.corpora`).

    Args:
        max_tokens: token budget per corpus: ``max_tokens // seq_len`` windows (``None``: every slot).
        seed: seed of the placement (:data:`WINDOW_SEED`).
    Returns:
        int64 tensor ``[windows, seq_len]``, windows in text order.
    Raises:
        ConfigError: ``seq_len < 2`` or not one full window of text / token limit.
    """
    _check_seq_len(seq_len)
    stream = _token_stream(tokenizer, corpus.evaluation, corpus.separator)
    body = seq_len - (1 if adds_bos(tokenizer) else 0)
    available, count = _window_count(stream, corpus, seq_len, max_tokens, body)
    return _windows(tokenizer, stream, seq_len, spread_slots(available, count, seed))


def confirmation_windows(tokenizer, corpus: Corpus, seq_len: int, count: int, screening_tokens: int | None, *,
                         seed: int = WINDOW_SEED) -> torch.Tensor:
    """The confirmation windows: ``count`` windows spread over the evaluation text, disjoint from the screening ones.

    The screening windows (:func:`evaluation_windows` with ``screening_tokens``, ``seed``)
    are placed first and excluded; the confirmation slots are spread over the rest
    (:func:`spread_slots` with seed ``seed + 1``). A held-out set: the verdict pairs are
    chosen on the screening windows and tested on these.

    Returns:
        int64 tensor ``[count, seq_len]``, windows in text order.
    Raises:
        ConfigError: ``count < 1``, or the text has fewer than ``count`` slots beside the screening windows
            (the message says how many it has).
    """
    _check_seq_len(seq_len)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"confirmation windows must be a whole number >= 1, got {count!r}")
    stream = _token_stream(tokenizer, corpus.evaluation, corpus.separator)
    body = seq_len - (1 if adds_bos(tokenizer) else 0)
    available, screening = _window_count(stream, corpus, seq_len, screening_tokens, body)
    used = spread_slots(available, screening, seed)
    if available - screening < count:
        raise ConfigError(f"corpus {corpus.name!r} evaluation text holds {available} windows of {seq_len} tokens; "
                          f"{screening} are screening windows, so at most {available - screening} confirmation "
                          f"windows fit, {count} were asked for; ask for fewer")
    return _windows(tokenizer, stream, seq_len, spread_slots(available, count, seed + 1, exclude=used))
