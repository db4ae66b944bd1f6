"""pluggy hook specifications: the contract between lorp and its plugins.

A plugin is a module (or object) with functions named like the specs below and
decorated with :data:`lorp.hookimpl`. Each hook receives a ``register`` callback
and calls it once per component it provides; lorp records which plugin supplied
which component, so a name registered twice is an error that names both.

Example::

    import lorp

    @lorp.hookimpl
    def lorp_register_similarity_metrics(register):
        register(lorp.SimilarityMetric(name="mine", create=MyAccumulator))
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from .components import AllocationStrategy, ClusteringAlgorithm, CorpusSource, Healer, ModelAdapter, SimilarityMetric

PROJECT_NAME = "lorp"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def lorp_register_similarity_metrics(register: Callable[[SimilarityMetric], None]) -> None:
    """Register inter-block similarity metrics (stage 1; LoRP eqs. 3-4).

    Call ``register(SimilarityMetric(...))`` once per metric. The metric's
    ``create(num_blocks)`` returns an accumulator whose ``update(hidden, mask)``
    receives float32 ``[N + 1, B, T, H]`` residual-stream states (block inputs,
    then the last block's output) and a bool ``[B, T]`` mask of real tokens, and
    whose ``result()`` returns a float64 ``[N, N]`` matrix. Accumulators must
    stream: memory independent of the number of calibration batches.
    Return value: ignored. Errors: raise :class:`lorp.errors.PluginError`.
    """


@hookspec
def lorp_register_clustering_algorithms(register: Callable[[ClusteringAlgorithm], None]) -> None:
    """Register block clustering algorithms (stage 3; LoRP eq. 7).

    Call ``register(ClusteringAlgorithm(...))`` once per algorithm. Its
    ``cluster(similarity, k, seed)`` receives a float64 ``[N, N]`` symmetric
    matrix with unit diagonal, the cluster count ``k`` (``2 <= k <= N``) and an
    int seed, and returns int labels ``[N]`` in ``0..k-1`` using all ``k``
    values. Return value: ignored.
    """


@hookspec
def lorp_register_allocation_strategies(register: Callable[[AllocationStrategy], None]) -> None:
    """Register prune-budget allocation strategies (stage 4; LoRP eqs. 8-11).

    Call ``register(AllocationStrategy(...))`` once per strategy. Its
    ``allocate(request)`` receives an :class:`lorp.AllocationRequest` and returns
    a list of exactly ``request.budget`` :class:`lorp.Removal` entries with
    distinct, unprotected block indices. It raises
    :class:`lorp.errors.ConfigError` when the budget cannot be met.
    Return value: ignored.
    """


@hookspec
def lorp_register_healers(register: Callable[[Healer], None]) -> None:
    """Register training-free healers: repairs of a pruned model fitted on calibration data.

    Call ``register(Healer(...))`` once per healer. Its ``heal(request)`` receives a
    :class:`lorp.HealRequest` (the dense model, the removed blocks, the calibration token ids) and
    returns ``(weights, record)``: new values for parameters of the dense model's kept blocks, each
    of its parameter's shape, and a JSON-able record of what was fitted. It must not change the
    model itself, must choose its settings on calibration data only, and must not hold every block's
    hidden states for every token at once. lorp checks the names and shapes, writes the weights and
    deletes the blocks. Return value: ignored. Errors: raise :class:`lorp.errors.ConfigError`.
    """


@hookspec
def lorp_register_corpora(register: Callable[[CorpusSource], None]) -> None:
    """Register text corpora for calibration and perplexity.

    Call ``register(CorpusSource(...))`` once per corpus. Its ``load()`` returns
    a :class:`lorp.Corpus` whose ``calibration`` and ``evaluation`` document
    lists do not overlap, and raises
    :class:`lorp.errors.ResourceUnavailableError` when the text cannot be had
    (say offline). Return value: ignored.
    """


@hookspec
def lorp_register_model_adapters(register: Callable[[ModelAdapter], None]) -> None:
    """Register model adapters: how to find the decoder blocks of a model family.

    Call ``register(ModelAdapter(...))`` once per adapter. Its
    ``find_blocks(model)`` returns ``(dotted_path, nn.ModuleList)`` for models
    of its family and ``None`` otherwise; lorp tries adapters in registration
    order (builtins first) and uses the first match. Return value: ignored.
    """
