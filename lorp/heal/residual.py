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

States are the dense model's, every run fitted independently (as ``linear``'s). Which ``α``, or no map at all,
is kept is decided on held-out calibration rows by the rule ``linear`` uses (:func:`fit_stream_maps`), so the
healed model's held-out NLL is never above the unhealed one's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..model.blocks import find_blocks, set_blocks
from .forward import forward_until
from .holdout import HOLDOUT_EVERY, HeldOutNLL, holdout_split
from .linear import DEFAULT_ALPHAS, RidgeStats, removed_runs, residual_error, ridge_to_identity


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
        """``x`` ``[..., d]`` -> ``x T`` in ``x``'s dtype, on ``x``'s device (``T`` stays where it is)."""
        return (x.to(self.t.dtype) @ self.t.to(x.device)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"d={self.t.shape[0]}, replaces removed blocks {self.run[0]}..{self.run[1]}"


def stream_width(model: nn.Module) -> int:
    """``d``, the width of ``model``'s residual stream (its input embeddings'): a stream map is ``[d, d]``."""
    return int(model.get_input_embeddings().weight.shape[-1])


def valid_map(t: object, d: int) -> bool:
    """Whether ``t`` can be a stream map of a width-``d`` stream: a float tensor or array ``[d, d]``, all finite."""
    if not isinstance(t, (torch.Tensor, np.ndarray)):
        return False
    t = torch.as_tensor(t)
    return tuple(t.shape) == (d, d) and t.is_floating_point() and bool(torch.isfinite(t).all())


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


@contextmanager
def stream_maps_inserted(model: nn.Module, maps: Mapping[tuple[int, int], object], *, registry=None
                         ) -> Iterator[nn.Module]:
    """Inside the ``with``, the dense ``model`` carries ``maps`` (``{(first, last): T}``) as
    :func:`insert_stream_maps` puts them; the original block list is back afterwards (also on error). Nothing is
    copied but the list: the blocks are the model's own. No maps: the model is left exactly as it is."""
    if not maps:
        yield model
        return
    path, original = find_blocks(model, registry)
    try:
        insert_stream_maps(model, maps, registry=registry)
        yield model
    finally:
        set_blocks(model, path, original)


def fit_stream_maps(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, removed: Sequence[int], *,
                    alphas: Sequence[float] = DEFAULT_ALPHAS, fixed: bool = False, registry=None
                    ) -> tuple[dict[tuple[int, int], np.ndarray], dict]:
    """The residual-stream maps to keep for ``removed``, and a JSON-able record of the choice.

    Every ``HOLDOUT_EVERY``-th calibration row is held out (:func:`lorp.heal.holdout.holdout_split`); one map per
    ridge strength in ``alphas`` is fitted on the other rows (:func:`collect_stream_stats`,
    :func:`lorp.heal.linear.ridge_to_identity`). In depth order, each run keeps the candidate whose pruned model
    (earlier runs' maps as chosen, later runs unmapped) has the lowest next-token NLL on the held-out rows, and
    only if it beats no map; ties keep no map. With ``fixed`` (one alpha), the map is fitted on every row and
    always kept. A run ending at the last block has no kept block after it and stays unhealed.

    Args:
        model: the dense causal LM (unchanged on return).
        ids, mask: int64 ``[rows, T]`` calibration tokens and their attention mask.
        removed: the blocks to delete, dense indices.
        alphas: ridge strengths, multiples of ``tr(XᵀX) / d``; exactly one when ``fixed``.
    Returns:
        ``({(first, last): T float64 [d, d]}, record)``; the record has ``holdout_rows``, ``fit_rows``,
        ``holdout_every``, ``alphas``, ``holdout_nll_unhealed`` and ``holdout_nll_healed`` (mean nats per
        held-out token; ``None`` when fixed), ``unhealed_runs``, ``kept_maps`` and per run under ``"maps"``: the
        run, the block the map precedes, ``alpha`` (or ``"identity"``), ``best_alpha``, the held-out NLL per
        alpha, of the identity and of the choice, the fit tokens, the mean squared error per token of the
        identity and of the chosen map on the fit rows, and the solve seconds.
    Raises:
        ConfigError: fewer than 2 calibration rows when alpha is to be chosen, or ``fixed`` with other than one
            alpha.
    """
    alphas = tuple(float(x) for x in alphas)
    if fixed and len(alphas) != 1:
        raise ConfigError(f"a fixed ridge strength is one alpha, got {list(alphas)}")
    _, blocks = find_blocks(model, registry)
    runs = removed_runs(removed)
    healable = [(a, b) for a, b in runs if b < len(blocks) - 1]
    rows = int(ids.shape[0])
    if fixed:
        fit, held = list(range(rows)), []
    elif rows < 2:
        raise ConfigError(f"the residual maps' strength is chosen on held-out calibration sequences (every "
                          f"{HOLDOUT_EVERY}th) and needs at least 2; give more, or fix alpha")
    else:
        fit, held = holdout_split(rows)
    stats = collect_stream_stats(model, ids[fit], mask[fit], healable, registry=registry)
    scorer = HeldOutNLL(model, ids[held], mask[held], removed, registry=registry) if held and healable else None
    chosen: dict[tuple[int, int], np.ndarray] = {}
    entries, unhealed_nll, healed_nll = [], None, None
    for a, b in healable:
        t0 = time.perf_counter()
        candidates = {x: ridge_to_identity(stats[(a, b)], x) for x in alphas}
        entry = {"run": [a, b], "block": b + 1, "tokens": stats[(a, b)].tokens,
                 "solve_seconds": time.perf_counter() - t0,
                 "mse_identity": residual_error(stats[(a, b)], np.eye(candidates[alphas[0]].shape[0]))}
        if scorer is None:
            chosen[(a, b)] = candidates[alphas[0]]
            entry.update(alpha=alphas[0], best_alpha=alphas[0], holdout_nll={}, holdout_nll_identity=None,
                         holdout_nll_chosen=None, mse_chosen=residual_error(stats[(a, b)], chosen[(a, b)]))
        else:
            with stream_maps_inserted(model, chosen, registry=registry):
                identity = scorer.prefix({}, b + 1)
                scorer.candidate({})  # the restart check, before any candidate map wraps block b + 1
            scores = {}
            for x, t in candidates.items():
                with stream_maps_inserted(model, {**chosen, (a, b): t}, registry=registry):
                    scores[x] = scorer.candidate({})
            best = min(scores, key=scores.get)  # ties: the first in the grid
            keep = scores[best] < identity
            if keep:
                chosen[(a, b)] = candidates[best]
            unhealed_nll = identity if unhealed_nll is None else unhealed_nll
            healed_nll = scores[best] if keep else identity
            entry.update(alpha=best if keep else "identity", best_alpha=best,
                         holdout_nll={str(x): v for x, v in scores.items()}, holdout_nll_identity=identity,
                         holdout_nll_chosen=healed_nll,
                         mse_chosen=residual_error(stats[(a, b)], candidates[best] if keep else
                                                   np.eye(candidates[best].shape[0])))
        entries.append(entry)
    record = {"holdout_rows": len(held), "holdout_every": HOLDOUT_EVERY if held else None, "fit_rows": len(fit),
              "alphas": list(alphas), "maps": entries, "unhealed_runs": [[a, b] for a, b in runs if (a, b) not in healable],
              "holdout_nll_unhealed": unhealed_nll, "holdout_nll_healed": healed_nll, "kept_maps": len(chosen)}
    return chosen, record


__all__ = ["MappedBlock", "StreamMap", "collect_stream_stats", "fit_stream_maps", "insert_stream_maps",
           "stream_maps_inserted", "stream_width", "valid_map"]
