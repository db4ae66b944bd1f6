"""The ``linear`` healer's maths: one least-squares map per run of removed blocks, folded into ``down_proj``.

ReplaceMe (Shopkhoev et al., NeurIPS 2025, "ReplaceMe: network simplification via depth pruning and
transformer block linearization", the least-squares form of its eq. 5) replaces a run of removed blocks
by a linear map ``T`` ``[d, d]`` applied to the MLP output of the last kept block ``p`` before the run:
with ``h`` the residual stream after ``p``'s attention and ``m`` its MLP output (so ``p``'s output is
``h + m``), ``T`` is fitted so that ``h + m T`` best matches the dense residual stream after the run,
``y``. Least squares with a ridge toward the identity (``T = I`` is "no repair"):

    T(λ) = argmin ||(y − h) − m T||² + λ ||T − I||²  =  (MᵀM + λ I)⁻¹ (MᵀR + λ I),   R = y − h.

``λ = α · tr(MᵀM) / d``. One map per ``α`` of a grid is fitted on three quarters of the calibration
sequences; the held-out quarter (every 4th sequence) keeps the one whose pruned, healed model has the lowest
next-token NLL there, or none at all when no map beats the identity (:mod:`lorp.heal.holdout`). Folding: the MLP output is
``m = z Wᵀ`` with ``W`` the ``down_proj`` weight ``[d, d_ff]``, so ``m T = z (Tᵀ W)ᵀ`` and
``W ← Tᵀ W`` is exact where nothing follows ``down_proj`` inside the block (Llama, Qwen2); behind a
post-MLP norm (Gemma 3) ``m`` is the norm's output and the fold is :mod:`lorp.heal.norm_fold`'s. States
are the dense model's: every run is fitted against the dense residual stream, as in ReplaceMe
(:mod:`lorp.heal.sequential` fits on the pruned stream instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..model.blocks import find_blocks
from .forward import forward_until

#: Ridge strengths tried, as multiples of ``tr(MᵀM) / d`` (0 is plain least squares, via lstsq).
DEFAULT_ALPHAS = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def branch_output(block: nn.Module) -> nn.Module:
    """The module whose output is the MLP branch added to the residual stream: ``post_feedforward_layernorm``
    where the block normalises after its MLP (Gemma 3), else ``mlp`` (Llama, Qwen2).

    Raises:
        ConfigError: the block has no ``mlp`` module.
    """
    if getattr(block, "mlp", None) is None:
        raise ConfigError("this block has no 'mlp' module; the linear healers need one to fold into")
    norm = getattr(block, "post_feedforward_layernorm", None)
    return norm if norm is not None else block.mlp


def removed_runs(removed: Iterable[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive removed blocks, ``[(first, last), ...]`` in depth order.

    >>> removed_runs([3, 4, 7, 9, 10])
    [(3, 4), (7, 7), (9, 10)]
    """
    runs: list[list[int]] = []
    for b in sorted(set(removed)):
        if runs and b == runs[-1][1] + 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    return [(a, b) for a, b in runs]


@dataclass
class RidgeStats:
    """Sufficient statistics of one map's least squares, float64: ``MᵀM`` ``[d, d]``, ``MᵀR`` ``[d, d]``,
    ``tr(RᵀR)`` and the token count."""

    mm: np.ndarray
    mr: np.ndarray
    rr: float = 0.0
    tokens: int = 0

    @classmethod
    def zeros(cls, d: int) -> RidgeStats:
        return cls(np.zeros((d, d)), np.zeros((d, d)))

    def add(self, m: torch.Tensor, r: torch.Tensor) -> None:
        """Accumulate tokens: ``m``, ``r`` float ``[n, d]``."""
        m64, r64 = m.detach().double().cpu(), r.detach().double().cpu()
        self.mm += (m64.T @ m64).numpy()
        self.mr += (m64.T @ r64).numpy()
        self.rr += float((r64 * r64).sum())
        self.tokens += int(m64.shape[0])

    def __add__(self, other: RidgeStats) -> RidgeStats:
        return RidgeStats(self.mm + other.mm, self.mr + other.mr, self.rr + other.rr, self.tokens + other.tokens)


def ridge_to_identity(stats: RidgeStats, alpha: float) -> np.ndarray:
    """``T = (MᵀM + λ I)⁻¹ (MᵀR + λ I)`` with ``λ = alpha · tr(MᵀM) / d``; float64 ``[d, d]``.

    ``alpha`` 0 is least squares (``lstsq``, minimum-norm where ``MᵀM`` is singular); as ``alpha`` grows,
    ``T`` tends to the identity.

    Raises:
        ConfigError: ``alpha`` is negative or not finite.
    """
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"the ridge strength alpha must be a finite number >= 0, got {alpha!r}")
    d = stats.mm.shape[0]
    lam = alpha * float(np.trace(stats.mm)) / d
    eye = np.eye(d)
    if lam == 0:
        return np.linalg.lstsq(stats.mm, stats.mr, rcond=None)[0]
    return np.linalg.solve(stats.mm + lam * eye, stats.mr + lam * eye)


def residual_error(stats: RidgeStats, t: np.ndarray) -> float:
    """Mean squared error per token of ``R − M T`` from the statistics: ``(tr(RᵀR) − 2 tr(Tᵀ MᵀR) + tr(Tᵀ MᵀM T)) / n``."""
    total = stats.rr - 2.0 * float(np.sum(t * stats.mr)) + float(np.sum(t * (stats.mm @ t)))
    return max(total, 0.0) / max(stats.tokens, 1)


@torch.inference_mode()
def collect_stats(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, runs: Sequence[tuple[int, int]], *,
                  registry=None) -> dict[tuple[int, int], RidgeStats]:
    """One dense forward per calibration row, accumulating each run's :class:`RidgeStats`.

    For run ``(a, b)`` (``a >= 1``): ``m`` is block ``a − 1``'s MLP branch (:func:`branch_output`), ``h``
    that block's output minus ``m``, ``y`` the output of block ``b`` in the dense model (the residual stream
    entering block ``b + 1``, or the last block's output); ``R = y − h``. Only real tokens (``mask``) count. Holds one row's
    states for the runs' blocks at a time.

    Raises:
        ConfigError: a run starts at block 0 (nothing before it to fold into), or a block has no ``mlp``.
    """
    _, blocks = find_blocks(model, registry)
    if any(a == 0 for a, _ in runs):
        raise ConfigError("a run of removed blocks starting at block 0 has no kept block before it to fold a map "
                          "into; leave it out of the runs to heal")
    grabbed: dict[str, torch.Tensor] = {}

    def keep(key: str):
        """A forward hook storing a module's output (a block's first output when it returns a tuple)."""
        return lambda _m, _i, out: grabbed.__setitem__(key, out[0] if isinstance(out, tuple) else out)

    if not runs:
        return {}
    hooks = []
    last = blocks[max(b for _, b in runs)]
    try:
        for a, b in runs:
            hooks += [branch_output(blocks[a - 1]).register_forward_hook(keep(f"m{a}")),  # m: the MLP branch
                      blocks[a - 1].register_forward_hook(keep(f"o{a}")),  # h + m: the kept block's output
                      blocks[b].register_forward_hook(keep(f"y{a}"))]  # y: the dense stream after the run
        stats: dict[tuple[int, int], RidgeStats] = {}
        for row in range(ids.shape[0]):
            grabbed.clear()
            forward_until(model, ids[row:row + 1], mask[row:row + 1], last)  # the later blocks and LM head skipped
            real = mask[row].bool()
            for a, b in runs:
                m = grabbed[f"m{a}"][0][real].float()
                h = grabbed[f"o{a}"][0][real].float() - m
                y = grabbed[f"y{a}"][0][real].float()
                stats.setdefault((a, b), RidgeStats.zeros(m.shape[-1])).add(m, y - h)
    finally:
        for hook in hooks:
            hook.remove()
    return stats
