"""Folding a map into a block that normalises after its MLP (Gemma 3): what is exact, and what is not.

Gemma 3's block adds ``m = N(u) ⊙ γ`` to the residual stream, with ``u = z Wᵀ`` the ``down_proj`` output
``[.., d]``, ``N(u) = u / sqrt(mean(u²) + ε)`` (``post_feedforward_layernorm``) and ``γ = 1 + w`` its gain.
A map ``T`` on that branch (``m ↦ m T``, :mod:`lorp.heal.linear`) cannot be folded exactly: the norm
divides by the size of its own input, and no weight outside the residual stream sees ``m T``. Folding
``A = diag(γ) T diag(γ)⁻¹`` into ``down_proj`` (``W ← Aᵀ W``) and a scalar ``c`` into the gain
(``γ ← c γ``) gives, per token,

    m' = N(u A) ⊙ c γ  =  (m T) · c · rms(u) / rms(u A)        (rms with the norm's ε),

so the folded branch is the explicit map's output times one scalar per token (in the channels where
``γ`` is not negligible against the largest gain; a switched-off channel adds nothing in any model, and its part
of the map is dropped: :func:`conjugated_map`). It is exact where
``rms(u A) / rms(u)`` is the same for every token (``T`` a multiple of an orthogonal map conjugated by
``diag(γ)``, e.g. ``T = s I``); otherwise the per-token factor is the approximation. ``c`` is chosen in
closed form to minimise the folded branch's squared error against the target on the rows the map was
fitted on, ``c = Σ ⟨R, m'₁⟩ / Σ ‖m'₁‖²`` (``m'₁`` the folded branch at ``c = 1``), and both mean squared
errors, explicit and folded, are recorded, so every healed Gemma 3 run states what the fold cost. Whether the
folded map is kept at all is decided on held-out rows by the NLL of the folded model (:mod:`lorp.heal.holdout`):
a fold worse than no map is not written.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .sequential import run_states


#: A gain channel with ``|γ_k|`` below this fraction of the largest ``|γ|`` of its norm is switched off. Gemma 3 270M
#: has channels whose gain is exactly 0 (weight −1); a tiny but non-zero gain would otherwise divide the map by it.
ZERO_GAIN_RELATIVE = 1e-3


def switched_on(gamma: np.ndarray) -> np.ndarray:
    """Boolean ``[d]``: the channels whose gain ``|γ_k|`` is at least :data:`ZERO_GAIN_RELATIVE` times the largest
    ``|γ|`` (none when every gain is 0)."""
    top = float(np.max(np.abs(gamma))) if gamma.size else 0.0
    return np.abs(gamma) >= ZERO_GAIN_RELATIVE * top if top > 0 else np.zeros(gamma.shape, dtype=bool)


def conjugated_map(t: np.ndarray, gain: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(A, γ)``: ``A = diag(γ) T diag(γ)⁺`` float64 ``[d, d]`` and ``γ = 1 + w`` float64 ``[d]``, from ``T`` and
    the norm's weight ``w``.

    ``diag(γ)⁺`` is the pseudo-inverse: ``1/γ_k`` in the switched-on channels (:func:`switched_on`), 0 in the
    others. A switched-off channel adds (next to) nothing to the stream, in the dense model and in any folded one,
    so the map's output in channel ``k`` cannot be carried and is dropped (column ``k`` of ``A`` is 0, which also
    keeps it out of ``rms(u A)``). The other channels keep the stated relation to the explicit map; what the
    dropped channels cost is in the fold's recorded mean squared error.
    """
    gamma = 1.0 + gain.detach().double().cpu().numpy()
    on = switched_on(gamma)
    inverse = np.where(on, 1.0 / np.where(on, gamma, 1.0), 0.0)
    return gamma[:, None] * t * inverse[None, :], gamma


@dataclass
class FoldScale:
    """Sums over calibration tokens of the folded branch at ``c = 1`` (``m'₁``) against the target ``R``:
    ``⟨R, m'₁⟩``, ``‖m'₁‖²``, ``‖R‖²`` and the token count (float64)."""

    rm: float = 0.0
    mm: float = 0.0
    rr: float = 0.0
    tokens: int = 0

    @property
    def scale(self) -> float:
        """The least-squares ``c`` (1 when the folded branch is zero)."""
        return self.rm / self.mm if self.mm > 0 else 1.0

    def mse(self, c: float) -> float:
        """Mean squared error per token of ``R − c m'₁``."""
        return max(self.rr - 2 * c * self.rm + c * c * self.mm, 0.0) / max(self.tokens, 1)


def folded_branch(u: torch.Tensor, a: torch.Tensor, gamma: torch.Tensor, eps: float) -> torch.Tensor:
    """``N(u A) ⊙ γ``, float64 ``[n, d]``: what the folded block adds at ``c = 1`` (as Gemma3RMSNorm computes)."""
    ua = u.double() @ a
    return ua * torch.rsqrt(ua.pow(2).mean(-1, keepdim=True) + eps) * gamma


@torch.inference_mode()
def fold_scale_stats(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, run: tuple[int, int],
                     maps: Mapping[Hashable, np.ndarray], gamma: np.ndarray, eps: float, *, earlier: Sequence[int] = (),
                     healed: Mapping[str, torch.Tensor] | None = None, registry=None) -> dict[Hashable, FoldScale]:
    """:class:`FoldScale` of each map ``A`` in ``maps`` (``{key: A}``) folded into block ``run[0] − 1``, over the
    calibration rows ``ids``, on the model the maps were fitted on (``earlier`` deleted and ``healed`` written, as
    :func:`run_states`): one pass over the rows for every map."""
    out = {key: FoldScale() for key in maps}
    g_t = torch.from_numpy(gamma)
    mats = {key: torch.from_numpy(a) for key, a in maps.items()}
    for s in run_states(model, ids, mask, run, earlier=earlier, healed=healed, registry=registry):
        r = (s["y"] - s["h"]).double()
        rr = float((r * r).sum())
        for key, a_t in mats.items():
            folded = folded_branch(s["u"], a_t, g_t, eps)
            scale = out[key]
            scale.rm += float((r * folded).sum())
            scale.mm += float((folded * folded).sum())
            scale.rr += rr
            scale.tokens += int(r.shape[0])
    return out


__all__ = ["ZERO_GAIN_RELATIVE", "FoldScale", "conjugated_map", "fold_scale_stats", "folded_branch", "switched_on"]
