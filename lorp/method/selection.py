"""Block selection from a similarity matrix: stages 2-4 chained (LoRP eqs. 5-11)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..plugins.components import AllocationRequest, Removal
from ..plugins.guard import plugin_code
from ..plugins.registry import Registry, load_registry
from .allocation import allocate, check_budget, check_seed, normalize_protected
from .clustering import cluster_blocks
from .locality import check_similarity, choose_k, representation_locality_score

#: Blocks never removed by default: the first and the last.
DEFAULT_PROTECTED: tuple[int, ...] = (0, -1)


@dataclass(frozen=True)
class Selection:
    """A prune plan: which blocks to remove and why.

    Attributes:
        num_blocks: blocks in the dense model (N).
        budget: blocks to remove.
        rls: Representation Locality Score (eq. 5), ``None`` if not computed.
        k: number of clusters used, ``None`` without clustering.
        k_source: ``"rls"`` (eq. 6), ``"override"`` (``--k``) or ``"strategy NAME"``
            (the strategy's own ``choose_k``, e.g. an ablation with a fixed K).
        labels: depth-ordered cluster label per block, or ``None``.
        removals: the allocation's choices, in order.
        protected: blocks that could not be removed.
        components: name of the clustering and allocation used.
    """

    num_blocks: int
    budget: int
    rls: float | None
    k: int | None
    k_source: str | None
    labels: list[int] | None
    removals: list[Removal]
    protected: list[int]
    components: dict[str, str] = field(default_factory=dict)

    @property
    def pruned(self) -> list[int]:
        """Sorted indices of the blocks to remove."""
        return sorted(r.block for r in self.removals)

    @property
    def kept(self) -> list[int]:
        """Sorted indices of the blocks that stay."""
        removed = set(self.pruned)
        return [b for b in range(self.num_blocks) if b not in removed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``rls``, ``k``, ``labels``, ``pruned`` and the reasons."""
        d = asdict(self)
        d["pruned"] = self.pruned
        d["kept"] = self.kept
        return d


def select_blocks(
    similarity: np.ndarray,
    budget: int,
    *,
    k: int | None = None,
    seed: int = 0,
    clustering: str = "spectral",
    allocation: str = "lorp",
    protected: Iterable[int] = DEFAULT_PROTECTED,
    statistics: Mapping[str, np.ndarray] | None = None,
    nll: Callable[[frozenset[int]], float] | None = None,
    registry: Registry | None = None,
    healed_nll: Callable[[list], list[float]] | None = None,
) -> Selection:
    """Choose ``budget`` blocks to remove from a similarity matrix.

    Steps: RLS (eq. 5) -> K (eq. 6, unless ``k`` overrides it) -> depth-ordered
    clusters of (S + 1) / 2 (eq. 7) -> allocation (eqs. 8-11). Strategies that
    do not use clusters skip the clustering.

    Args:
        similarity: float ``[N, N]`` symmetric matrix (e.g. from ``lorp prune``).
        budget: number of blocks to remove, ``1 <= budget <= N - len(protected)``.
        k: override the number of clusters (``2 <= k <= N``).
        seed: seed of the clustering.
        clustering: registered clustering algorithm name.
        allocation: registered allocation strategy name.
        protected: blocks never removed; negative indices count from the end.
        statistics: metrics by name that the strategy reads (its ``needs``).
        nll: calibration NLL of the model with given blocks removed (strategies with ``needs_model``).
        registry: plugin registry (default: :func:`lorp.plugins.registry.load_registry`).
        healed_nll: calibration NLL after the strategy's ``nll_healer`` repaired each set
            (:attr:`lorp.AllocationRequest.healed_nll`; strategies with a ``nll_healer``).
    Raises:
        ConfigError: bad matrix, budget, K, seed or protected index; a metric or the
            model that the strategy needs was not supplied.
        UnknownNameError: unknown clustering or allocation name.
    """
    s = check_similarity(similarity)
    n = s.shape[0]
    check_seed(seed)
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n):
        raise ConfigError(f"number of clusters K must be a whole number between 2 and {n} (the block count), "
                          f"got {k!r}")
    registry = registry or load_registry()
    strategy = registry.allocation(allocation)
    prot = normalize_protected(protected, n)
    check_budget(budget, n, prot)
    statistics = dict(statistics or {})
    missing = [m for m in strategy.needs if m not in statistics]
    if missing:
        raise ConfigError(f"allocation {allocation!r} needs the metric(s) {missing} from the calibration pass; "
                          "run it through `lorp prune` or `lorp sweep`, which capture them")
    if strategy.needs_model and strategy.nll_healer is None and nll is None:
        raise ConfigError(f"allocation {allocation!r} needs forward passes of the model; "
                          "run it through `lorp prune` or `lorp sweep`")
    if strategy.nll_healer is not None and healed_nll is None:
        raise ConfigError(f"allocation {allocation!r} scores sets after the {strategy.nll_healer!r} healer "
                          "repaired them; run it through `lorp prune` or `lorp sweep`, which provide that scorer")
    rls = representation_locality_score(s)
    labels = None
    k_used = k_source = None
    if strategy.uses_clusters:
        algorithm = registry.clustering(clustering)
        if k is not None:
            k_used, k_source = k, "override"
        elif strategy.choose_k is not None:
            with plugin_code(f"allocation strategy {allocation!r}"):
                k_used, k_source = int(strategy.choose_k(s)), f"strategy {allocation}"
            if not 2 <= k_used <= n:
                raise ConfigError(f"allocation strategy {allocation!r} chose K = {k_used} for {n} blocks; K must be "
                                  f"between 2 and {n}")
        else:
            k_used, k_source = choose_k(rls), "rls"
        labels = cluster_blocks(s, k_used, algorithm, seed)
    elif k is not None:
        k_used, k_source = k, "override (unused)"
    request = AllocationRequest(s, labels, int(budget), prot, statistics, seed=int(seed), nll=nll,
                                healed_nll=healed_nll)
    removals = allocate(request, strategy)
    return Selection(
        num_blocks=n,
        budget=int(budget),
        rls=rls,
        k=k_used,
        k_source=k_source,
        labels=None if labels is None else labels.tolist(),
        removals=removals,
        protected=sorted(prot),
        components={"clustering": clustering if strategy.uses_clusters else "", "allocation": allocation},
    )
