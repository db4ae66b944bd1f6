"""lorp: training-free depth pruning of LLMs by Locality-Aware Redundancy Pruning.

Pipeline stages, one module each: :mod:`lorp.method.capture` (similarity, eqs. 3-4),
:mod:`lorp.method.locality` (RLS and K, eqs. 5-6), :mod:`lorp.method.clustering` (eq. 7),
:mod:`lorp.method.allocation` (eqs. 8-11), :mod:`lorp.model.pruning` (remove blocks),
:mod:`lorp.evaluate.perplexity` (perplexity), :mod:`lorp.evaluate.uncertainty` (intervals on the
evaluation results) and :mod:`lorp.study.attribution` (which removed block does the damage:
the single-block removal profile next to each method's signal). Paper: arXiv 2605.27786.
"""

from .errors import ConfigError, LorpError, PluginError, ResourceUnavailableError, UnknownNameError  # noqa: E402
from .plugins.components import (  # noqa: E402
    AllocationRequest,
    AllocationStrategy,
    ClusteringAlgorithm,
    Corpus,
    CorpusSource,
    Healer,
    HealRequest,
    ModelAdapter,
    Removal,
    SimilarityAccumulator,
    SimilarityMetric,
)
from .heal.saved import load_healed, save_healed  # noqa: E402
from .plugins.hookspecs import hookimpl  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    "__version__",
    "hookimpl",
    "load_healed",
    "save_healed",
    "AllocationRequest",
    "AllocationStrategy",
    "ClusteringAlgorithm",
    "Corpus",
    "CorpusSource",
    "Healer",
    "HealRequest",
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
