"""A run's settings and its calibration stage: :class:`PruneConfig`, the calibration pass that
gives the similarity matrices (eqs. 3-4, cached by content) and the calibration NLL scorer.

The cells (:mod:`lorp.run.cells`) and ``lorp prune`` (:mod:`lorp.run.prune`) build on these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, UnknownNameError
from ..evaluate.perplexity import CalibrationNLL
from ..evaluate.zeroshot import NOT_AVAILABLE_OFFLINE
from ..evaluate.zeroshot import TASKS as ZERO_SHOT_TASKS
from ..method.allocation import check_budget, check_seed, normalize_protected
from ..method.capture import capture_similarities
from ..method.selection import DEFAULT_PROTECTED
from ..model.blocks import find_blocks
from ..model.data import calibration_samples
from ..model.models import DEFAULT_MODEL, LoadedModel, model_config, num_blocks_of
from ..plugins.components import Corpus, SimilarityMetric
from ..plugins.registry import Registry
from ..store.cache import cache_key, load_matrices, notice, save_matrices
from .fingerprint import component_code, content_id, model_fields


@dataclass(frozen=True)
class PruneConfig:
    """Parameters of one LoRP run (defaults sized for 2 CPU cores, a few minutes).

    The paper's protocol is 128 calibration sequences of 2048 tokens of C4
    (``calibration="c4", num_samples=128, seq_len=2048``) and full evaluation sets
    (``eval_tokens=None``).

    Attributes:
        model: bundled key, local folder or hub id.
        budget: blocks to remove.
        calibration: calibration corpus name or text file.
        num_samples: calibration sequences.
        seq_len: tokens per calibration sequence.
        seed: seed of calibration sampling and clustering.
        eval_corpora: corpora for perplexity (their evaluation parts).
        eval_seq_len: tokens per perplexity window.
        eval_tokens: token limit per evaluation corpus (``None``: all).
        similarity, clustering, allocation: plugin component names.
        k: override the number of clusters (``None``: from RLS, eq. 6).
        protected: blocks never removed (negative counts from the end).
        save_model: write the pruned model folder.
        device: torch device.
        batch_size: sequences per forward call.
        use_cache: reuse a cached calibration pass with identical settings.
        progress: show progress bars.
        sleb_samples: calibration sequences SLEB scores each candidate removal on.
        sleb_tokens: tokens scored per SLEB sequence, the last ones (0: every token); the whole
            sequence is still run as context. Fewer scored tokens skip most of the LM head.
        zero_shot_tasks: lm-eval tasks for zero-shot accuracy before and after
            pruning (empty: none; see :mod:`lorp.evaluate.zeroshot`).
        zero_shot_limit: items per zero-shot task, drawn with ``seed`` (``None``: all).
        heal: healer plugin fitted before the blocks are deleted (``lorp prune`` only; ``"none"``: no repair;
            see :mod:`lorp.heal`).
        heal_settings: that healer's settings (``{}``: its defaults).
    """

    model: str = DEFAULT_MODEL
    budget: int = 6
    calibration: str = "lambada"
    num_samples: int = 32
    seq_len: int = 256
    seed: int = 0
    eval_corpora: tuple[str, ...] = ("ptb", "wiki-paragraphs")
    eval_seq_len: int = 256
    eval_tokens: int | None = 4096
    similarity: str = "cosine"
    clustering: str = "spectral"
    allocation: str = "lorp"
    k: int | None = None
    protected: tuple[int, ...] = DEFAULT_PROTECTED
    save_model: bool = True
    device: str = "cpu"
    batch_size: int = 1
    use_cache: bool = True
    progress: bool = True
    sleb_samples: int = 4
    sleb_tokens: int = 0
    zero_shot_tasks: tuple[str, ...] = ()
    zero_shot_limit: int | None = None
    heal: str = "none"
    heal_settings: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values that cannot work, before any heavy work."""
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"budget must be a whole number of blocks >= 1, got {self.budget!r}")
        if self.k is not None and (not isinstance(self.k, int) or self.k < 2):
            raise ConfigError(f"K must be a whole number >= 2 (omit --k to choose it from RLS), got {self.k!r}")
        for name in ("num_samples", "seq_len", "eval_seq_len", "batch_size", "sleb_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        check_seed(self.seed)
        for name in ("model", "calibration", "similarity", "clustering", "allocation", "device", "heal"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name} must be a non-empty name, got {getattr(self, name)!r}")
        if isinstance(self.sleb_tokens, bool) or not isinstance(self.sleb_tokens, int) or not \
                0 <= self.sleb_tokens < self.seq_len:
            raise ConfigError(f"sleb_tokens must be a whole number of tokens in 0..seq_len-1 ({self.seq_len - 1}; "
                              f"0 scores every token), got {self.sleb_tokens!r}")
        if self.eval_tokens is not None and (isinstance(self.eval_tokens, bool) or not isinstance(self.eval_tokens, int)
                                             or self.eval_tokens < 0):
            raise ConfigError(f"eval_tokens must be a whole number of tokens >= 0 (0 or None: all), "
                              f"got {self.eval_tokens!r}")
        try:
            protected = tuple(int(b) for b in self.protected)
        except (TypeError, ValueError):
            raise ConfigError(f"protected must be whole block indices, got {self.protected!r}") from None
        if any(isinstance(b, bool) for b in self.protected) or protected != tuple(self.protected):
            raise ConfigError(f"protected must be whole block indices, got {self.protected!r}")
        if not self.eval_corpora:
            raise ConfigError("give at least one evaluation corpus")
        if self.seq_len < 2 or self.eval_seq_len < 2:
            raise ConfigError(f"sequence lengths must be at least 2 tokens, got seq_len {self.seq_len}, "
                              f"eval_seq_len {self.eval_seq_len}")
        if self.eval_tokens and self.eval_tokens < self.eval_seq_len:
            raise ConfigError(f"the evaluation token limit ({self.eval_tokens}) must hold at least one window of "
                              f"{self.eval_seq_len} tokens; raise --eval-tokens (0 evaluates everything)")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"unknown device {self.device!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but this torch build sees no CUDA GPU; use the CPU "
                              "(--device cpu; in lorp study -p device=cpu)")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {self.device!r} does not exist: {torch.cuda.device_count()} CUDA GPU(s) "
                              f"visible (cuda:0..cuda:{torch.cuda.device_count() - 1})")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but Apple MPS is not available here; use --device cpu")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ConfigError(f"device {self.device!r} is not supported; use cpu, cuda, cuda:N or mps")
        for task in self.zero_shot_tasks:
            if task not in ZERO_SHOT_TASKS:
                raise UnknownNameError("zero-shot task", task, ZERO_SHOT_TASKS, hint=NOT_AVAILABLE_OFFLINE.get(task, ""))
        if self.zero_shot_tasks and self.zero_shot_limit is not None and self.zero_shot_limit < 1:
            raise ConfigError(f"zero-shot item limit must be >= 1, got {self.zero_shot_limit}")


    def check_sleb_samples(self, users: str) -> None:
        """Check that SLEB's scoring sequences fit in the calibration draw; called only where ``users`` score on them.

        SLEB, the selectors that score calibration NLL and the single-block removal profile
        score candidate removals on the first ``sleb_samples`` calibration sequences. A sweep or
        prune that runs none of them never reads the setting, so :meth:`validate` does not check it.

        Args:
            users: what scores on them, for the message (e.g. ``"method sleb"``).
        Raises:
            ConfigError: ``sleb_samples`` exceeds ``num_samples``.
        """
        if self.sleb_samples > self.num_samples:
            raise ConfigError(f"sleb_samples ({self.sleb_samples}) cannot exceed the {self.num_samples} calibration "
                              f"samples it is drawn from ({users} scores on them); lower --sleb-samples or raise "
                              "--samples")

    def check_against_model(self, budgets: tuple[int, ...] | None = None) -> int | None:
        """Check the settings that depend on the model (budget, protected blocks, K, window lengths) before loading it.

        The block count comes from the bundled table or the folder's config.json;
        for a hub model it is known only after loading (checked again then).

        Args:
            budgets: the budgets to check (default: ``(self.budget,)``).
        Returns:
            the model's block count, or ``None`` if not known yet.
        Raises:
            ConfigError: a budget leaves no block or exceeds the removable blocks, a
                protected index or K is out of range, or a window is longer than
                the model's positions.
        """
        n = num_blocks_of(self.model)
        if n is not None:
            protected = normalize_protected(self.protected, n)
            for budget in budgets or (self.budget,):
                check_budget(budget, n, protected)
            if self.k is not None and self.k > n:
                raise ConfigError(f"K = {self.k} exceeds the {n} blocks of {self.model}; choose K between 2 and {n}")
        config = model_config(self.model)
        if config is not None:
            config = getattr(config, "text_config", None) or config
            limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
            for name in ("seq_len", "eval_seq_len"):
                if isinstance(limit, int) and getattr(self, name) > limit:
                    raise ConfigError(f"{name} {getattr(self, name)} is longer than the {limit} positions "
                                      f"{self.model} was built for; choose at most {limit}")
        return n


def block_metric(registry: Registry, name: str) -> SimilarityMetric:
    """The similarity metric ``name``, checked to compare block inputs (``[N, N]``), as LoRP's S must.

    Raises:
        UnknownNameError: no such metric.
        ConfigError: the metric compares the ``N + 1`` residual-stream states.
    """
    metric = registry.similarity(name)
    if metric.states != "blocks":
        blocks = sorted(n for n, e in registry.components["similarity"].items() if e.component.states == "blocks")
        raise ConfigError(f"similarity metric {name!r} compares the N + 1 residual-stream states, not the N block "
                          f"inputs; for --similarity choose one of: {', '.join(blocks)}")
    return metric


def calibrate(loaded: LoadedModel, corpus: Corpus, config: PruneConfig, metrics: Mapping[str, SimilarityMetric],
              registry: Registry) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One calibration pass for every metric not already cached; returns ``(matrices, meta)``.

    Each metric's matrix is cached on disk under a key of the model (bundled key
    and checkpoint hash, or a local folder's content digest), the calibration
    corpus (a text file's content digest, a registered corpus's plugin code), sample count and
    length, seed and the metric's name, version and plugin code (:mod:`lorp.plugins.code`), so an
    edited metric or corpus plugin computes a new entry (:mod:`lorp.store.cache`). Metrics found in the cache are not
    recomputed; the rest share a single forward pass over the calibration set.
    ``meta`` reports tokens, forward passes run (0 when all were cached) and time.
    """
    base = {  # a local model folder or text file enters by its content, not its path
        **model_fields(config.model, loaded.info),
        "corpus": content_id(config.calibration, "corpus", registry), "num_samples": config.num_samples,
        "seq_len": config.seq_len, "seed": config.seed,
    }
    if config.calibration in registry.components["corpus"]:  # a registered corpus's code; a file enters by content
        base["corpus_code"] = component_code(registry, "corpus", config.calibration)
    keys = {name: cache_key({**base, "metric": name, "metric_version": m.version,
                             "metric_code": component_code(registry, "similarity", name)})
            for name, m in metrics.items()}
    matrices: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    if config.use_cache:
        n = len(find_blocks(loaded.model, registry)[1])
        for name, key in keys.items():
            hit = load_matrices(key)
            size = n if metrics[name].states == "blocks" else n + 1
            if hit is not None and (name not in hit[0] or hit[0][name].shape != (size, size)):
                notice(f"cached similarity {key} does not fit this {n}-block model; recomputing it")
                hit = None
            if hit is not None:
                matrices[name], meta = hit[0][name], hit[1]
    missing = {name: m for name, m in metrics.items() if name not in matrices}
    if missing:
        samples = calibration_samples(loaded.tokenizer, corpus, config.num_samples, config.seq_len, config.seed)
        calib = capture_similarities(loaded.model, samples, missing, batch_size=config.batch_size,
                                     progress=config.progress, registry=registry)
        meta = {"num_sequences": calib.num_sequences, "num_tokens": calib.num_tokens, "seconds": calib.seconds}
        for name in missing:
            matrices[name] = calib.matrices[name]
            save_matrices(keys[name], {name: calib.matrices[name]}, meta)
        meta["forward_passes"] = calib.forward_passes
    else:
        meta = {**meta, "forward_passes": 0}
    return matrices, {**meta, "from_cache": sorted(set(metrics) - set(missing)), "cache_keys": keys}


def calibration_nll(loaded: LoadedModel, corpus: Corpus, config: PruneConfig, registry: Registry,
                    prefix: str = "greedy") -> CalibrationNLL:
    """Calibration NLL scorer for SLEB-style strategies: the first ``config.sleb_samples`` calibration sequences,
    scoring their last ``config.sleb_tokens`` tokens (0: all); ``prefix`` as in
    :class:`lorp.evaluate.perplexity.CalibrationNLL` (the strategy's ``nll_prefix``)."""
    samples = calibration_samples(loaded.tokenizer, corpus, config.num_samples, config.seq_len, config.seed)
    return CalibrationNLL(loaded.model, samples[: config.sleb_samples], registry=registry,
                          scored_tokens=config.sleb_tokens or None, prefix=prefix)
