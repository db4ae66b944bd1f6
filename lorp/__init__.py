"""lorp: training-free depth pruning of LLMs by Locality-Aware Redundancy Pruning.

Pipeline stages, one module each: :mod:`lorp.capture` (similarity, eqs. 3-4),
:mod:`lorp.locality` (RLS and K, eqs. 5-6), :mod:`lorp.clustering` (eq. 7),
:mod:`lorp.allocation` (eqs. 8-11), :mod:`lorp.pruning` (remove blocks),
:mod:`lorp.evaluation` (perplexity), :mod:`lorp.uncertainty` (intervals on the
evaluation results) and :mod:`lorp.attribution` (which removed block does the damage:
the single-block removal profile next to each method's signal). Paper: arXiv 2605.27786.
"""

__version__ = "0.1.0"

from .components import (  # noqa: E402
    AllocationRequest,
    AllocationStrategy,
    ClusteringAlgorithm,
    Corpus,
    CorpusSource,
    ModelAdapter,
    Removal,
    SimilarityAccumulator,
    SimilarityMetric,
)
from .errors import ConfigError, LorpError, PluginError, ResourceUnavailableError, UnknownNameError  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402

__all__ = [
    "__version__",
    "hookimpl",
    "AllocationRequest",
    "AllocationStrategy",
    "ClusteringAlgorithm",
    "Corpus",
    "CorpusSource",
    "ModelAdapter",
    "Removal",
    "SimilarityAccumulator",
    "SimilarityMetric",
    "LorpError",
    "ConfigError",
    "UnknownNameError",
    "PluginError",
    "ResourceUnavailableError",
]
