"""Builtin baselines, as allocation strategies: ShortGPT, LLM-Streamline, angular distance, SLEB, naive.

All of them honour ``request.protected`` exactly like LoRP (default: first and
last block), so every method is compared under one protocol. Pass
``--protect ''`` to let every block be removed, as in the original ShortGPT.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..plugins.components import AllocationRequest, AllocationStrategy, Removal
from ..plugins.hookspecs import hookimpl


def _eligible(request: AllocationRequest) -> list[int]:
    return [b for b in range(request.num_blocks) if b not in request.protected]


def block_influence(stream_cosine: np.ndarray) -> np.ndarray:
    """Block Influence ``BI_i = 1 - mean_t cos(input_i, output_i)`` (ShortGPT, arXiv 2403.03853, eq. 4).

    Args:
        stream_cosine: float ``[N + 1, N + 1]`` mean token cosines of the residual-stream
            states (block ``i``'s output is state ``i + 1``).
    Returns:
        float64 ``[N]``.
    """
    c = np.asarray(stream_cosine, dtype=np.float64)
    return 1.0 - np.array([c[i, i + 1] for i in range(c.shape[0] - 1)])


def shortgpt(request: AllocationRequest) -> list[Removal]:
    """Remove the ``budget`` unprotected blocks of lowest Block Influence (ties: shallower first)."""
    bi = block_influence(request.statistics["stream-cosine"])
    order = sorted(_eligible(request), key=lambda b: (bi[b], b))[: request.budget]
    return [Removal(b, score=float(bi[b]), reason=f"Block Influence {bi[b]:.4f}") for b in order]


def _contiguous_spans(request: AllocationRequest) -> list[int]:
    """Start indices ``s`` whose span ``s .. s + n - 1`` holds no protected block."""
    n = request.budget
    starts = [s for s in range(request.num_blocks - n + 1)
              if not request.protected & set(range(s, s + n))]
    if not starts:
        raise ConfigError(f"no run of {n} consecutive unprotected blocks exists; lower the budget or --protect fewer")
    return starts


def streamline(request: AllocationRequest) -> list[Removal]:
    """LLM-Streamline's layer selection: the span of ``n`` blocks whose input and output agree most.

    Score of span ``s .. s + n - 1``: mean token cosine between the input of block
    ``s`` and the input of block ``s + n`` (the last block's output when ``s + n = N``),
    from the ``stream-cosine`` matrix (Chen et al., ICLR 2025). Selection only:
    the original also trains a lightweight layer to replace the span; lorp does not.
    """
    c, n = request.statistics["stream-cosine"], request.budget
    best = max(_contiguous_spans(request), key=lambda s: (c[s, s + n], -s))
    return [Removal(b, score=float(c[best, best + n]), reason=f"span {best}..{best + n - 1}: cos(h_{best}, h_{best + n}) = "
                    f"{c[best, best + n]:.4f}") for b in range(best, best + n)]


def angular(request: AllocationRequest) -> list[Removal]:
    """Gromov et al.'s pruning: remove ``l .. l + n - 1`` at the argmin of the angular distance d(l, n).

    ``d(l, n)`` = mean over sequences of arccos(cos(x_l, x_{l+n})) / pi at the last
    token (arXiv 2403.17887, eq. 7), from the ``angular-distance`` matrix.
    """
    d, n = request.statistics["angular-distance"], request.budget
    best = min(_contiguous_spans(request), key=lambda s: (d[s, s + n], s))
    return [Removal(b, score=float(d[best, best + n]), reason=f"span {best}..{best + n - 1}: d = {d[best, best + n]:.4f}")
            for b in range(best, best + n)]


def last_blocks(request: AllocationRequest) -> list[Removal]:
    """Naive reference: the ``budget`` deepest unprotected blocks before the final one."""
    deepest = [b for b in reversed(range(request.num_blocks - 1)) if b not in request.protected]
    if len(deepest) < request.budget:
        raise ConfigError(f"only {len(deepest)} unprotected blocks lie before the final one; lower the budget")
    return [Removal(b, reason="naive: deepest blocks before the final one") for b in sorted(deepest[: request.budget])]


def random_blocks(request: AllocationRequest) -> list[Removal]:
    """Naive reference: ``budget`` unprotected blocks drawn uniformly with ``request.seed``."""
    chosen = np.random.default_rng(request.seed).choice(_eligible(request), size=request.budget, replace=False)
    return [Removal(int(b), reason=f"random (seed {request.seed})") for b in sorted(chosen.tolist())]


def sleb(request: AllocationRequest) -> list[Removal]:
    """SLEB (Song et al., ICML 2024): greedy, one block per step, re-scored after each removal.

    At each step every unprotected remaining block is tried; the one whose
    removal (together with those removed before) gives the lowest calibration
    NLL goes. Costs ``sum_t (eligible - t)`` calibration forward passes;
    ``request.nll`` implementations reuse work where they can.
    """
    if request.nll is None:
        raise ConfigError("SLEB needs the model: run it through `lorp prune` / `lorp sweep`, which provide request.nll")
    removed: list[int] = []
    out: list[Removal] = []
    for step in range(request.budget):
        scores = {b: request.nll(frozenset(removed + [b])) for b in _eligible(request) if b not in removed}
        best = min(scores, key=lambda b: (scores[b], b))
        removed.append(best)
        out.append(Removal(best, stage=step + 1, score=float(scores[best]),
                           reason=f"step {step + 1}: calibration NLL {scores[best]:.4f} nats"))
    return out


@hookimpl
def lorp_register_allocation_strategies(register):
    register(AllocationStrategy(
        "shortgpt", shortgpt, uses_clusters=False, needs=("stream-cosine",),
        description="ShortGPT: lowest Block Influence 1 - cos(input, output)", source="Men et al. 2024, arXiv 2403.03853"))
    register(AllocationStrategy(
        "streamline", streamline, uses_clusters=False, needs=("stream-cosine",),
        description="LLM-Streamline selection: most similar contiguous span (no replacement layer)",
        source="Chen et al., ICLR 2025"))
    register(AllocationStrategy(
        "angular", angular, uses_clusters=False, needs=("angular-distance",),
        description="Gromov et al.: contiguous span of least last-token angular distance",
        source="Gromov et al. 2024, arXiv 2403.17887"))
    register(AllocationStrategy(
        "sleb", sleb, uses_clusters=False, needs_model=True,
        description="SLEB: greedy removal by calibration NLL, re-scored each step", source="Song et al., ICML 2024"))
    register(AllocationStrategy(
        "last", last_blocks, uses_clusters=False, description="naive: the deepest blocks before the final one"))
    register(AllocationStrategy(
        "random", random_blocks, uses_clusters=False, description="naive: seeded random blocks"))
