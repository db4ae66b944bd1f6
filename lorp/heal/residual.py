"""The ``residual`` healer's maths: one ``d × d`` map on the whole residual stream at each cut (issue 46, step 1).

Ghosted Layers (arXiv 2605.15491, the LoRP authors' follow-up) repairs a pruned model with a linear operator on
the residual stream where blocks were removed. lorp's form of it: for a maximal run ``(a, b)`` of removed blocks,
with ``x`` the stream entering the run (block ``a − 1``'s output; the embeddings' when ``a = 0``) and ``y`` the
dense stream leaving it (block ``b``'s output), ``T`` ``[d, d]`` is fitted so that ``x T`` best matches ``y``,
by least squares with a ridge toward the identity (``T = I`` is "no repair", the unhealed pruned model):

    T(λ) = argmin ||y − x T||² + λ ||T − I||²  =  (XᵀX + λ I)⁻¹ (XᵀY + λ I),   λ = α · tr(XᵀX) / d,

the same solve as ``linear`` (:func:`lorp.heal.linear.ridge_to_identity`) with the stream in place of one MLP's
output. Unlike ``linear``'s map, ``T`` acts on everything the earlier blocks wrote, not only on one MLP's part
of it; the price is that it folds into no standard weight, so it is a module of its own: :class:`StreamMap`,
applied to the input of the first kept block after the run by :class:`MappedBlock`, which ``print(model)``
shows. A pruned model carrying maps is not a standard architecture: saving it needs the maps beside the weights.

States are the dense model's, every run fitted independently (as ``linear``'s). Which ``α`` (or the identity)
is kept is decided on held-out calibration rows, the rule ``linear`` uses (the healer's step, to come).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..model.blocks import find_blocks, set_blocks
from .forward import forward_until
from .linear import RidgeStats


class StreamMap(nn.Module):
    """``x ↦ x T`` on the residual stream: ``T`` float ``[d, d]`` (a buffer: nothing here is trained).

    Args:
        t: the map, any float tensor or array ``[d, d]``; stored as float32.
        run: the removed blocks ``(first, last)`` (dense indices) that ``T`` stands in for, for ``print(model)``.
    """

    def __init__(self, t, run: tuple[int, int]):
        super().__init__()
        self.register_buffer("t", torch.as_tensor(t, dtype=torch.float32).clone())
        self.run = (int(run[0]), int(run[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., d]`` -> ``x T`` in ``x``'s dtype."""
        return (x.to(self.t.dtype) @ self.t).to(x.dtype)

    def extra_repr(self) -> str:
        return f"d={self.t.shape[0]}, replaces removed blocks {self.run[0]}..{self.run[1]}"


class MappedBlock(nn.Module):
    """A kept block whose input hidden states first pass through a :class:`StreamMap`.

    Called as the block is (hidden states first, then the block's own arguments), it returns the block's output;
    every attribute the model reads from a block (``attention_type``, ``layer_idx`` of its submodules) is the
    wrapped block's, so the model's forward, generation with the KV cache and :func:`lorp.model.pruning.remove_blocks`
    see a block.
    """

    def __init__(self, stream_map: StreamMap, block: nn.Module):
        super().__init__()
        self.stream_map = stream_map
        self.block = block

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        return self.block(self.stream_map(hidden_states), *args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("block"), name)


@torch.inference_mode()
def collect_stream_stats(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, runs: Sequence[tuple[int, int]], *,
                         registry=None) -> dict[tuple[int, int], RidgeStats]:
    """One dense forward per calibration row, accumulating each run's :class:`lorp.heal.linear.RidgeStats` with
    ``M`` the stream entering the run and ``R`` the stream leaving it, over real tokens (``mask``) only.

    Args:
        model: the dense causal LM.
        ids, mask: int64 ``[rows, T]`` calibration tokens and their attention mask.
        runs: maximal runs of removed blocks (:func:`lorp.heal.linear.removed_runs`), each with a kept block after
            it (the stream leaving the last block goes through the final norm, which no map here precedes).
    Raises:
        ConfigError: a run ends at the last block.
    """
    _, blocks = find_blocks(model, registry)
    if any(b >= len(blocks) - 1 for _, b in runs):
        raise ConfigError(f"a run of removed blocks ending at the last block ({len(blocks) - 1}) has no kept block "
                          "after it to map the stream into; leave it out of the runs to heal")
    if not runs:
        return {}
    grabbed: dict[str, torch.Tensor] = {}

    def keep(key: str, inputs: bool):
        """A forward pre-hook (a block's input) or hook (its first output) storing the hidden states."""
        if inputs:
            return lambda _m, args, kwargs: grabbed.__setitem__(key, args[0] if args else kwargs["hidden_states"])
        return lambda _m, _i, out: grabbed.__setitem__(key, out[0] if isinstance(out, tuple) else out)

    hooks = []
    try:
        for a, b in runs:
            hooks += [blocks[a].register_forward_pre_hook(keep(f"x{a}", True), with_kwargs=True),  # entering the run
                      blocks[b].register_forward_hook(keep(f"y{a}", False))]  # leaving it, in the dense model
        stats: dict[tuple[int, int], RidgeStats] = {}
        for row in range(ids.shape[0]):
            grabbed.clear()
            forward_until(model, ids[row:row + 1], mask[row:row + 1], blocks[max(b for _, b in runs)])
            real = mask[row].bool()
            for a, b in runs:
                x, y = grabbed[f"x{a}"][0][real].float(), grabbed[f"y{a}"][0][real].float()
                stats.setdefault((a, b), RidgeStats.zeros(x.shape[-1])).add(x, y)
    finally:
        for hook in hooks:
            hook.remove()
    return stats


def insert_stream_maps(model: nn.Module, maps: Mapping[tuple[int, int], torch.Tensor], *, registry=None) -> nn.Module:
    """Wrap, in the **dense** model, the first block after each run in ``maps`` (``{(first, last): T [d, d]}``) in a
    :class:`MappedBlock`; returns ``model``. Delete the runs' blocks afterwards
    (:func:`lorp.model.pruning.remove_blocks`): the wrapped blocks are kept ones.

    Raises:
        ConfigError: a run has no block after it, or a block is already wrapped.
    """
    path, blocks = find_blocks(model, registry)
    new = list(blocks)
    for (a, b), t in maps.items():
        if b + 1 >= len(new):
            raise ConfigError(f"removed blocks {a}..{b} have no kept block after them to carry a stream map")
        if isinstance(new[b + 1], MappedBlock):
            raise ConfigError(f"block {b + 1} already carries a stream map")
        new[b + 1] = MappedBlock(StreamMap(t, (a, b)), new[b + 1])
    set_blocks(model, path, nn.ModuleList(new))
    return model


__all__ = ["MappedBlock", "StreamMap", "collect_stream_stats", "insert_stream_maps"]
