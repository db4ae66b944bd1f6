"""The ``sequential`` healer's capture: each run's map fitted on the stream the pruned, already healed model
actually produces.

Why (our design, for LoRP): LoRP spreads its budget over the depth-ordered clusters (eqs. 8-11), so its
removed set is several short runs, where a ranking baseline such as ShortGPT tends to remove one contiguous
span. ReplaceMe's fit (:mod:`lorp.heal.linear`) gives every run a map against the **dense** stream: the
kept block before a later run is assumed to see the dense stream, but in the pruned model it sees the
stream after every earlier removal and its map, so errors of the earlier runs add up with nothing fitted
to absorb them. Here runs are fitted in depth order, each on the partially pruned model: the earlier
runs deleted and their maps folded in, and the target is still the dense stream after the run. The first
run's map is ReplaceMe's; each later map also corrects the drift the earlier ones left, which matters
most where there are many runs, i.e. for LoRP's spread removals. It is the layer-by-layer sequential
fitting of post-training compression (e.g. GPTQ, Frantar et al., ICLR 2023; SliceGPT, Ashkboos et al.,
ICLR 2024) applied to ReplaceMe's maps.

Cost: per run and calibration row, one dense forward up to the run's last block and one pruned forward up
to the kept block before it (both stop there), so about ``runs`` times the capture of ``linear``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..model.blocks import find_blocks
from ..model.pruning import blocks_removed
from .forward import forward_until, weights_written
from .linear import RidgeStats, branch_output


def run_states(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, run: tuple[int, int], *,
               earlier: Sequence[int] = (), healed: Mapping[str, torch.Tensor] | None = None,
               registry=None) -> Iterator[dict[str, torch.Tensor]]:
    """Per calibration row, the states a map for run ``(a, b)`` (``a >= 1``) is fitted on, float32 ``[n, d]``
    over the row's real tokens (``mask``):

    - ``"u"``: block ``a − 1``'s ``mlp`` output; ``"m"``: its MLP branch (:func:`lorp.heal.linear.branch_output`,
      ``u`` itself unless the block normalises after its MLP); ``"h"``: its output minus ``m``. These come from
      the model with the blocks ``earlier`` deleted and the weights ``healed`` written in.
    - ``"y"``: the **dense** model's output of block ``b``, the target.

    Two forwards per row, each stopped once its last needed block has run; ``model`` is left as it was.
    Must run under ``torch.inference_mode()``.

    Raises:
        ConfigError: ``a`` is 0, an earlier block is not before ``a − 1``, or block ``a − 1`` has no ``mlp``.
    """
    a, b = run
    if a == 0:
        raise ConfigError("a run of removed blocks starting at block 0 has no kept block before it to fold a map "
                          "into; leave it out of the runs to heal")
    if any(e >= a - 1 for e in earlier):
        raise ConfigError(f"earlier removed blocks {sorted(earlier)} must all lie before block {a - 1}")
    _, blocks = find_blocks(model, registry)
    kept = blocks[a - 1]
    branch = branch_output(kept)
    grabbed: dict[str, torch.Tensor] = {}

    def keep(key: str):
        return lambda _m, _i, out: grabbed.__setitem__(key, out[0] if isinstance(out, tuple) else out)

    hooks = [kept.mlp.register_forward_hook(keep("u")), kept.register_forward_hook(keep("o")),
             blocks[b].register_forward_hook(keep("y"))]
    if branch is not kept.mlp:
        hooks.append(branch.register_forward_hook(keep("m")))
    try:
        for row in range(ids.shape[0]):
            x, row_mask = ids[row:row + 1], mask[row:row + 1]
            forward_until(model, x, row_mask, blocks[b])  # dense: y (the others too, replaced next)
            with weights_written(model, healed or {}), blocks_removed(model, list(earlier), registry):
                forward_until(model, x, row_mask, kept)  # partially pruned and healed: u, m, o
            real = row_mask[0].bool()
            u = grabbed["u"][0][real].float()
            m = grabbed["m"][0][real].float() if "m" in grabbed else u
            yield {"u": u, "m": m, "h": grabbed["o"][0][real].float() - m, "y": grabbed["y"][0][real].float()}
    finally:
        for hook in hooks:
            hook.remove()


@torch.inference_mode()
def collect_run_stats(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, run: tuple[int, int], *,
                      earlier: Sequence[int] = (), healed: Mapping[str, torch.Tensor] | None = None,
                      registry=None) -> RidgeStats:
    """:class:`lorp.heal.linear.RidgeStats` of run ``(a, b)`` on the partially pruned model (:func:`run_states`).

    With nothing earlier this equals ``collect_stats(model, ids, mask, [run])[run]``.

    Raises:
        ConfigError: as :func:`run_states`.
    """
    stats = None
    for s in run_states(model, ids, mask, run, earlier=earlier, healed=healed, registry=registry):
        stats = stats or RidgeStats.zeros(s["m"].shape[-1])
        stats.add(s["m"], s["y"] - s["h"])
    return stats


__all__ = ["collect_run_stats", "run_states"]
