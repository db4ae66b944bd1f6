"""Test helpers for lorp and for plugin authors.

Use as a pytest plugin (``pytest_plugins = ["lorp.testing"]`` in a
``conftest.py``) to get the fixtures ``lorp_registry``, ``tiny_model`` and
``fake_hidden_states``, or call the functions directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F

from .evaluate import perplexity as perplexity_module
from .model.pruning import blocks_removed
from .plugins.registry import PluginSettings, Registry, load_registry

#: Architectures :func:`make_tiny_model` can build, with their block paths.
TINY_ARCHITECTURES = ("llama", "gemma3_text", "qwen2", "gpt2", "gpt_neox", "opt")


def make_tiny_model(arch: str = "llama", num_blocks: int = 4, seed: int = 0, vocab_size: int = 128):
    """A randomly initialised float32 causal LM with ``num_blocks`` blocks and hidden size 32.

    For fast unit tests only: its numbers mean nothing. ``arch`` is one of
    :data:`TINY_ARCHITECTURES`.
    """
    import transformers as tf

    common = dict(vocab_size=vocab_size, num_hidden_layers=num_blocks, num_attention_heads=4)
    configs: dict[str, Callable[[], object]] = {
        "llama": lambda: tf.LlamaConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2,
                                        max_position_embeddings=128, **common),
        "gemma3_text": lambda: tf.Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_key_value_heads=2,
                                                   head_dim=8, sliding_window=8, max_position_embeddings=128, **common),
        "qwen2": lambda: tf.Qwen2Config(hidden_size=32, intermediate_size=64, num_key_value_heads=2,
                                        max_position_embeddings=128, **common),
        "gpt2": lambda: tf.GPT2Config(n_embd=32, n_layer=num_blocks, n_head=4, vocab_size=vocab_size, n_positions=128,
                                      bos_token_id=0, eos_token_id=0),
        "gpt_neox": lambda: tf.GPTNeoXConfig(hidden_size=32, intermediate_size=64, max_position_embeddings=128, **common),
        "opt": lambda: tf.OPTConfig(hidden_size=32, ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=128,
                                    **common),
    }
    if arch not in configs:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {TINY_ARCHITECTURES}")
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(configs[arch](), dtype=torch.float32)
    return model.eval()


def symmetric_matrix(n: int, entries: dict[tuple[int, int], float], fill: float = 0.0):
    """A float64 ``[n, n]`` similarity matrix: ``fill`` everywhere, ``entries[(i, j)]`` at (i, j) and (j, i), unit diagonal."""
    import numpy as np

    s = np.full((n, n), float(fill))
    for (i, j), v in entries.items():
        s[i, j] = s[j, i] = v
    np.fill_diagonal(s, 1.0)
    return s


def make_fake_hidden_states(num_blocks: int = 4, batch: int = 2, tokens: int = 5, hidden: int = 8,
                            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random residual-stream states ``[N + 1, B, T, H]`` (float32) and an all-True mask ``[B, T]``.

    This is exactly what a similarity accumulator's ``update`` receives.
    """
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(num_blocks + 1, batch, tokens, hidden, generator=g),
            torch.ones(batch, tokens, dtype=torch.bool))


def make_word_tokenizer(words: list[str], bos: bool = False):
    """A whitespace word-level fast tokenizer over ``words`` (ids: ``<bos>`` 0, ``<unk>`` 1, words from 2).

    With ``bos=True`` it prepends ``<bos>`` like Gemma's tokenizer does.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", unk_token="<unk>")


def make_tiny_model_folder(folder, arch: str = "llama", num_blocks: int = 5, words: int = 40):
    """Save a tiny random model with a word-level tokenizer and a matching text file.

    Returns ``(model_folder, text_file)``: ``--model`` and ``--calibration``
    arguments for a complete lorp run that needs no download (tests only).
    """
    from pathlib import Path

    folder = Path(folder)
    vocab = [f"w{i}" for i in range(words)]
    make_tiny_model(arch, num_blocks=num_blocks).save_pretrained(folder / "model")
    make_word_tokenizer(vocab).save_pretrained(folder / "model")
    text = folder / "text.txt"
    text.write_text("\n\n".join(" ".join(vocab[(i * 7 + j) % words] for j in range(30)) for i in range(40)))
    return folder / "model", text


@pytest.fixture
def lorp_registry(tmp_path) -> Registry:
    """A fresh registry with builtins only (no entry points, no local plugin folders)."""
    return load_registry(PluginSettings(autoload=False, plugin_dirs=()))


@pytest.fixture
def tiny_model():
    """Factory fixture: ``tiny_model(arch="llama", num_blocks=4, seed=0)``."""
    return make_tiny_model


@pytest.fixture
def fake_hidden_states():
    """Factory fixture: ``fake_hidden_states(num_blocks=4, batch=2, tokens=5, hidden=8, seed=0)``."""
    return make_fake_hidden_states


def plain_nll(model, ids, removed, scored=None) -> float:
    """Mean token NLL (nats) of ``ids`` ``[B, T]`` with the blocks ``removed`` deleted, from one ordinary forward:
    the by-hand reference the scorers' prefix reuse is tested against. ``scored``: only the last that many
    predicted tokens of each sequence (``None``: all)."""
    with torch.inference_mode(), blocks_removed(model, sorted(removed)):
        logits = model(input_ids=ids, use_cache=False).logits.float()
    logits, targets = logits[:, :-1], ids[:, 1:]
    if scored:
        logits, targets = logits[:, -scored:], targets[:, -scored:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()


def count_dense_forwards(monkeypatch) -> list[tuple[int, ...]]:
    """Patch :func:`lorp.evaluate.perplexity.block_inputs` (through pytest's ``monkeypatch``) to record the
    ids shape ``[B, T]`` of every forward of the whole dense model (nothing removed); returns that list,
    which grows as such forwards run. Forwards of pruned models are not recorded."""
    calls: list[tuple[int, ...]] = []
    real = perplexity_module.block_inputs

    def counted(model, ids, keep, *, removed=(), **kwargs):
        if not set(removed):
            calls.append(tuple(ids.shape))
        return real(model, ids, keep, removed=removed, **kwargs)

    monkeypatch.setattr(perplexity_module, "block_inputs", counted)
    return calls


def token_requests(seed: int = 0, vocab: int = 40, lengths: Sequence[int] = (1, 2, 5, 9, 14, 20)) -> list[tuple]:
    """lm-eval ``loglikelihood`` requests as token ids, shuffled: one context per entry of ``lengths`` (token ids
    in ``2..vocab-1``), each with 1 to 4 continuations of 1 to 6 tokens; ``(("", ""), context, continuation)``
    tuples, what ``HFLM._loglikelihood_tokens`` takes. Drawn with numpy's ``default_rng(seed)``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for length in lengths:
        context = rng.integers(2, vocab, size=length).tolist()
        for _ in range(int(rng.integers(1, 5))):
            continuation = rng.integers(2, vocab, size=int(rng.integers(1, 7))).tolist()
            out.append((("", ""), context, continuation))
    rng.shuffle(out)
    return out
