"""Held-out calibration rows, and the held-out next-token NLL that decides whether a map is kept.

A least-squares healer (:mod:`lorp.heal.linear`, :mod:`lorp.heal.sequential`) fits its maps on part of
the calibration draw and judges them on the rest. The judge is what the study reports, the next-token NLL
(perplexity's logarithm) of the pruned model healed so far, not the residual-stream error the maps are
fitted on: on SmolLM2 with LoRP's 4-block set that error picks a weak ridge (α = 0.1) where the held-out
NLL picks a strong one (α = 1), and the strong one has about half the perplexity on held-out text.

Which rows are held out: every ``k``-th sequence (rows ``0, k, 2k, ...``), not a tail. A calibration draw
is sorted by position in its text (:func:`lorp.model.data.calibration_samples`), so a tail would hold out
the end of the text only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..model.blocks import input_device
from ..model.forward import block_inputs, logits_from
from .forward import weights_written

#: One calibration sequence in this many is held out (rows 0, 4, 8, ...): a quarter of the draw.
HOLDOUT_EVERY = 4


def holdout_split(rows: int, every: int = HOLDOUT_EVERY) -> tuple[list[int], list[int]]:
    """``(fit, held)``: row indices of a calibration draw of ``rows`` sequences; ``held`` is every ``every``-th
    row from row 0 (``ceil(rows / every)`` rows), ``fit`` the others, both in order.

    >>> holdout_split(9)
    ([1, 2, 3, 5, 6, 7], [0, 4, 8])

    Raises:
        ValueError: ``every < 2`` (nothing would be left to fit on).
    """
    if every < 2:
        raise ValueError(f"every must be at least 2, got {every}")
    held = list(range(0, rows, every))
    return [r for r in range(rows) if r % every], held


def token_nll(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token NLL (nats, float32) of ``ids`` ``[B, T]`` under ``logits`` ``[B, T, V]``, and the count of
    tokens scored: every token from the second on whose ``mask`` is 1."""
    targets = ids[:, 1:].to(logits.device)
    valid = mask[:, 1:].to(logits.device).bool()
    nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return float(nll[valid.reshape(-1)].sum()), int(valid.sum())


class HeldOutNLL:
    """Mean next-token NLL (nats) of held-out calibration rows for the model with ``removed`` deleted and some
    weights written in, computed row by row (one row's logits at a time).

    Use: :meth:`prefix` scores the model with the weights chosen so far and keeps, per row, the hidden states
    entering block ``start``; :meth:`candidate` then scores weights that differ from those only in block
    ``start`` and after, starting from the kept states (exact: the blocks before ``start`` see the same
    weights). The first :meth:`candidate` call after construction checks that the restart reproduces the
    full forward to 1e-5 for the prefix's own weights (true for rotary models: Llama, Gemma 3, Qwen2); where
    it does not, every candidate runs the full forward.

    Args:
        model: the dense model (every block present); weights are written only inside each scoring and restored.
        ids: int64 ``[S, T]`` held-out calibration sequences; ``mask``: ``[S, T]``, 1 for real tokens.
        removed: sorted original indices of the blocks deleted in every scoring.
        registry: the plugin registry (finds the blocks).

    Attributes:
        full_passes, partial_passes: forwards run over all held-out rows, whole or from block ``start``.

    Raises:
        ValueError: no held-out rows, or ``start`` is a removed block.
    """

    def __init__(self, model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, removed: Sequence[int], *,
                 registry=None):
        if ids.shape[0] < 1:
            raise ValueError("held-out NLL needs at least one held-out calibration sequence")
        device = input_device(model)
        self.model, self.ids, self.mask, self.registry = model, ids.to(device), mask.to(device), registry
        self.removed = tuple(sorted(int(b) for b in removed))
        self.full_passes = self.partial_passes = 0
        self.reuse: bool | None = None
        self._start: int | None = None
        self._weights: dict[str, torch.Tensor] = {}
        self._states: list[torch.Tensor] = []
        self._prefix_nll = float("nan")

    def prefix(self, weights: Mapping[str, torch.Tensor], start: int) -> float:
        """Mean held-out NLL with ``weights`` written, keeping the states entering block ``start`` for
        :meth:`candidate`."""
        if start in self.removed:
            raise ValueError(f"block {start} is removed; start from a kept block")
        states: list[torch.Tensor] = []

        def full_keeping_states(row: int) -> torch.Tensor:
            kept, logits = block_inputs(self.model, self.ids[row:row + 1], [start], removed=self.removed,
                                        registry=self.registry)
            states.append(kept[start])
            return logits

        nll = self._mean_nll(weights, full_keeping_states)
        self.full_passes += 1
        self._start, self._weights, self._states, self._prefix_nll = start, dict(weights), states, nll
        return nll

    def candidate(self, weights: Mapping[str, torch.Tensor]) -> float:
        """Mean held-out NLL with ``weights`` written, which must equal :meth:`prefix`'s in every block before
        its ``start``."""
        if self._start is None:
            raise ValueError("call prefix() first: it keeps the states a candidate starts from")
        if self.reuse is None:
            again = self._from_states(self._weights)
            self.reuse = abs(again - self._prefix_nll) <= 1e-5 * max(1.0, abs(self._prefix_nll))
        if self.reuse:
            return self._from_states(weights)
        self.full_passes += 1
        return self._mean_nll(weights, lambda row: block_inputs(self.model, self.ids[row:row + 1], (),
                                                                removed=self.removed, registry=self.registry)[1])

    def _from_states(self, weights: Mapping[str, torch.Tensor]) -> float:
        self.partial_passes += 1
        return self._mean_nll(weights, lambda row: logits_from(self.model, self._states[row], self._start,
                                                               self.removed, self.registry))

    def _mean_nll(self, weights: Mapping[str, torch.Tensor], logits_of: Callable[[int], torch.Tensor]) -> float:
        """Mean token NLL over the held-out rows with ``weights`` written; ``logits_of(row)`` gives one row's
        logits ``[1, T, V]`` (one row's logits at a time)."""
        total, count = 0.0, 0
        with weights_written(self.model, weights):
            for row in range(self.ids.shape[0]):
                s, n = token_nll(logits_of(row), self.ids[row:row + 1], self.mask[row:row + 1])
                total, count = total + s, count + n
        return total / max(count, 1)


__all__ = ["HOLDOUT_EVERY", "HeldOutNLL", "holdout_split", "token_nll"]
