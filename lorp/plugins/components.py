"""The component types that plugins register: what lorp's hooks exchange.

Three kinds of component drive block selection, one per pipeline stage:

* :class:`SimilarityMetric` (stage 1, paper eqs. 3-4): a streaming accumulator
  fed from the one calibration pass that yields an ``[N, N]`` matrix.
* :class:`ClusteringAlgorithm` (stage 3, eq. 7): groups the ``N`` blocks.
* :class:`AllocationStrategy` (stage 4, eqs. 8-11): picks the blocks to remove.

A fourth kind repairs the model after the blocks are chosen:

* :class:`Healer`: a training-free repair of the pruned model, fitted on calibration data and
  returned as changed weights of the kept blocks.

Two more kinds tell lorp about the world around the method:

* :class:`CorpusSource`: a named text corpus for calibration and perplexity.
* :class:`ModelAdapter`: how to find (and so remove) the blocks of a model family.

Plugins construct these and hand them to the ``register`` callback of the hooks
in :mod:`lorp.plugins.hookspecs`. Builtins do exactly the same (see :mod:`lorp.builtins`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

#: What a similarity metric needs from each calibration sequence.
TokenSelection = Literal["all_tokens", "last_token"]
#: Which states a metric compares: the N block inputs, or all N + 1 residual-stream states.
StateSelection = Literal["blocks", "stream"]


@runtime_checkable
class SimilarityAccumulator(Protocol):
    """Streaming state of one similarity metric over one calibration pass.

    ``update`` is called once per calibration batch; ``result`` once at the end.
    Memory must not grow with the number of batches.
    """

    def update(self, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """Consume one batch of residual-stream states.

        Args:
            hidden: float32 tensor ``[N + 1, B, T, H]``. ``hidden[i]`` for
                ``i < N`` is the input hidden state of block ``i``; ``hidden[N]``
                is the output of the last block (before the final norm).
                For a ``last_token`` metric ``T == 1`` and it holds each
                sequence's last real token.
            mask: bool tensor ``[B, T]``; ``True`` marks real (non-padding)
                tokens. Padding positions must not contribute.
        """

    def result(self) -> np.ndarray:
        """Return the accumulated float64 matrix: ``[N, N]`` (block inputs i vs j) for
        ``states="blocks"``, ``[N + 1, N + 1]`` (residual-stream states) for ``states="stream"``."""


@dataclass(frozen=True)
class SimilarityMetric:
    """A named inter-block similarity metric.

    Attributes:
        name: registry name, e.g. ``"cosine"``.
        create: ``create(num_blocks) -> SimilarityAccumulator``.
        needs: ``"all_tokens"`` or ``"last_token"`` (what ``update`` receives).
        states: ``"blocks"`` (result ``[N, N]`` over block inputs; usable as
            LoRP's S) or ``"stream"`` (result ``[N + 1, N + 1]`` over block
            inputs plus the last block's output).
        version: bump when the numbers change; part of cache keys.
        description: one line for ``lorp plugins``.
        source: paper and equation the metric implements.
    """

    name: str
    create: Callable[[int], SimilarityAccumulator]
    needs: TokenSelection = "all_tokens"
    states: StateSelection = "blocks"
    version: str = "1"
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class ClusteringAlgorithm:
    """A named algorithm that groups blocks from their similarity matrix.

    Attributes:
        name: registry name, e.g. ``"spectral"``.
        cluster: ``cluster(similarity, k, seed) -> labels`` where ``similarity``
            is float64 ``[N, N]`` (symmetric, unit diagonal), ``k`` the number of
            clusters (``2 <= k <= N``), ``seed`` an int; ``labels`` is an int
            array ``[N]`` with values in ``0..k-1``. lorp renumbers the labels in
            depth order afterwards, so any consistent labelling is fine.
    """

    name: str
    cluster: Callable[[np.ndarray, int, int], np.ndarray]
    version: str = "1"
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class Removal:
    """One block chosen for removal and why.

    Attributes:
        block: 0-based index of the block in the dense model.
        stage: allocation stage that chose it (LoRP: 1 or 2; others: 1).
        cluster: cluster label of the block, or ``None`` without clustering.
        score: the number that ranked it (LoRP: redundancy r(l), eq. 8).
        reason: a short human-readable explanation.
    """

    block: int
    stage: int = 1
    cluster: int | None = None
    score: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class AllocationRequest:
    """Everything an allocation strategy may read.

    Attributes:
        similarity: float64 ``[N, N]`` matrix of the selected similarity metric.
        labels: int ``[N]`` depth-ordered cluster labels, or ``None`` when the
            strategy does not use clustering.
        budget: number of blocks to remove (``>= 1``).
        protected: block indices that must never be removed.
        statistics: accumulated metrics by name (``[N, N]`` or ``[N + 1, N + 1]``,
            see :attr:`SimilarityMetric.states`); holds every metric named in
            the strategy's ``needs``.
        seed: random seed for strategies that draw at random.
        nll: for strategies with ``needs_model``: ``nll(removed)`` is the mean
            token negative log-likelihood (nats) of the calibration set with the
            blocks in ``removed`` deleted; ``None`` otherwise.
        healed_nll: for strategies with a ``nll_healer``: ``healed_nll(sets)`` is, for each
            removed set in ``sets`` (a list of block collections), the mean token NLL (nats) of
            the scored calibration sequences with the set deleted after that healer repaired it,
            the healer fitted on the draw's other sequences (:mod:`lorp.run.healed_nll`); pass
            every candidate in one call, so their runs share one capture. ``None`` otherwise.
    """

    similarity: np.ndarray
    labels: np.ndarray | None
    budget: int
    protected: frozenset[int]
    statistics: Mapping[str, np.ndarray] = field(default_factory=dict)
    seed: int = 0
    nll: Callable[[frozenset[int]], float] | None = None
    healed_nll: Callable[[list], list[float]] | None = None

    @property
    def num_blocks(self) -> int:
        return int(self.similarity.shape[0])


@dataclass(frozen=True)
class AllocationStrategy:
    """A named rule that spends the prune budget.

    Attributes:
        name: registry name, e.g. ``"lorp"``.
        allocate: ``allocate(request) -> list[Removal]`` with exactly
            ``request.budget`` distinct, unprotected blocks, in the order chosen.
            Raise :class:`lorp.errors.ConfigError` when the budget cannot be met.
        uses_clusters: whether lorp must compute RLS, K and cluster labels first.
        needs: names of similarity metrics the strategy reads from
            ``request.statistics`` (captured in the same calibration pass).
        needs_model: whether the strategy calls ``request.nll`` (forward passes).
        choose_k: for clustering strategies, ``choose_k(similarity) -> K`` replaces
            the paper's rule (RLS thresholds, eq. 6); ``None`` keeps it. A ``--k``
            given by the user still overrides both.
        nll_samples: for strategies with ``needs_model``: how many calibration sequences
            ``request.nll`` scores (at most the run's ``num_samples``); ``None``: the run's
            ``sleb_samples``.
        nll_prefix: how ``request.nll`` reuses forward work
            (:class:`lorp.evaluate.perplexity.CalibrationNLL`): ``"greedy"`` (SLEB's search, each set
            one block more than a set scored before: run from that set's states) or ``"dense"``
            (unrelated candidate sets: run each from the dense states entering its first removed block).
            Either gives the plain forward's NLL to 1e-5; only the cost differs.
        nll_healer: for strategies with ``needs_model``: the healer whose repair
            ``request.healed_nll`` scores; ``"linear"`` is the one supported (its maps are
            fitted per run, so candidates share the work). ``nll_samples`` calibration
            sequences are scored, the rest of the draw fits the maps; ``request.nll`` is then
            ``None`` (the healed scorer replaces it). ``None``: no ``healed_nll``.
    """

    name: str
    allocate: Callable[[AllocationRequest], list[Removal]]
    uses_clusters: bool = True
    needs: tuple[str, ...] = ()
    needs_model: bool = False
    choose_k: Callable[[np.ndarray], int] | None = None
    nll_samples: int | None = None
    nll_prefix: str = "greedy"
    nll_healer: str | None = None
    version: str = "1"
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class Corpus:
    """Documents of one corpus, split into disjoint calibration and evaluation parts.

    Attributes:
        name: corpus name (or file path).
        calibration: documents to draw calibration samples from.
        evaluation: documents for perplexity, disjoint from ``calibration``.
        separator: string placed between documents when they are concatenated.
        source: where the text came from (package and version, hub id, file).
    """

    name: str
    calibration: list[str]
    evaluation: list[str]
    separator: str
    source: str


@dataclass(frozen=True)
class CorpusSource:
    """A named corpus that lorp can load on demand.

    Attributes:
        name: registry name, e.g. ``"ptb"``.
        load: ``load() -> Corpus``; raises :class:`lorp.errors.ResourceUnavailableError`
            when the text cannot be had (e.g. a hub corpus offline).
        offline: whether ``load`` works without internet.
    """

    name: str
    load: Callable[[], Corpus]
    offline: bool = True
    version: str = "1"
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class ModelAdapter:
    """How to find the decoder blocks of a family of models.

    Attributes:
        name: registry name.
        find_blocks: ``find_blocks(model) -> (path, blocks) | None``: the dotted
            attribute path and the ``nn.ModuleList`` of decoder blocks, or
            ``None`` when the model is not of this family. Pruning replaces the
            list at ``path``, renumbers ``layer_idx`` attributes and subsets
            per-layer config lists.
    """

    name: str
    find_blocks: Callable[[nn.Module], tuple[str, nn.ModuleList] | None]
    version: str = "1"
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class HealRequest:
    """Everything a healer may read.

    Attributes:
        model: the **dense** model (every block present), in eval mode. A healer must not change it:
            it returns the weights it would change (:attr:`Healer.heal`).
        removed: sorted original indices of the blocks that will be deleted (at least one).
        calibration: int64 token ids ``[S, T]`` of the calibration set (the same draw the selection
            used). To hold the held-out part apart, a healer splits these rows itself (the builtins
            hold out every 4th sequence: the draw is sorted by position in its text, so a tail is not
            representative) and says so in its description.
        attention_mask: int64 ``[S, T]``, 1 for real tokens (all ones for the bundled corpora).
        settings: the user's settings for this healer (``{}``: its defaults).
        seed: random seed for healers that draw.
        registry: the plugin registry, to find the blocks of the model
            (:func:`lorp.model.blocks.find_blocks`).

    Memory: a healer must stream over the calibration rows (or over runs of removed blocks) and never
    hold every block's hidden states for every token at once.
    """

    model: nn.Module
    removed: tuple[int, ...]
    calibration: torch.Tensor
    attention_mask: torch.Tensor
    settings: Mapping[str, object] = field(default_factory=dict)
    seed: int = 0
    registry: object | None = None


@dataclass(frozen=True)
class Healer:
    """A named training-free repair of a pruned model.

    Attributes:
        name: registry name, e.g. ``"none"`` or ``"linear"``.
        heal: ``heal(request) -> (weights, record)``. ``weights`` maps parameter names of the **dense**
            model (``model.named_parameters()``) to their new float tensors, each of the parameter's own
            shape, in kept blocks only; lorp writes them into the model and then deletes the removed
            blocks, so the healed model stays a standard architecture. ``record`` is a JSON-able dict
            of what the healer chose (its settings, one entry per fitted map, ...), stored with the
            results. Raise :class:`lorp.errors.ConfigError` for settings it cannot use.
            A healer whose repair is not a weight change may return a third element,
            ``stream_maps``: ``{(first, last): T [d, d]}``, one float map per maximal run of removed blocks
            with a kept block after it, applied to that block's input hidden states
            (:class:`lorp.heal.residual.StreamMap`, ``x ↦ x T``). Such a model is no longer a standard
            architecture: lorp evaluates it, saves the maps beside the weights (``heal_maps.safetensors``,
            :func:`lorp.load_healed`) and refuses a GGUF export.
        version: bump when the numbers change; part of cache keys.
        description: one line for ``lorp plugins``.
        source: paper and equation the healer implements.
        check_settings: ``check_settings(settings) -> None``, called with the user's settings before any
            model loads (``lorp prune --heal-setting``, a sweep's or the study's healers with ``{}``); raise
            :class:`lorp.errors.ConfigError` saying what is wrong and how to fix it. ``None``: the settings
            are first seen by ``heal``, after the model has loaded and the blocks were chosen.
        foldable: ``False`` for a healer that may return ``stream_maps``: ``lorp prune --gguf`` is then refused
            before the model loads. A foldable healer that returns stream maps breaks its contract.
    """

    name: str
    heal: Callable[[HealRequest], tuple[Mapping[str, torch.Tensor], Mapping[str, object]]
                   | tuple[Mapping[str, torch.Tensor], Mapping[str, object], Mapping[tuple[int, int], torch.Tensor]]]
    version: str = "1"
    description: str = ""
    source: str = ""
    check_settings: Callable[[Mapping[str, object]], None] | None = None
    foldable: bool = True


Component = SimilarityMetric | ClusteringAlgorithm | AllocationStrategy | CorpusSource | ModelAdapter | Healer
