"""Builtin healers: training-free repairs of a pruned model (the healer hook, :class:`lorp.Healer`)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import ConfigError
from ..heal.linear import DEFAULT_ALPHAS, collect_stats, removed_runs, residual_error, ridge_to_identity
from ..model.blocks import find_blocks
from ..plugins.components import Healer, HealRequest
from ..plugins.hookspecs import hookimpl


def no_healing(request: HealRequest) -> tuple[dict, dict]:
    """The unhealed model: no weight changes, an empty record. The reference every healer is measured against."""
    if request.settings:
        raise ConfigError(f"healer 'none' takes no settings, got {dict(request.settings)}")
    return {}, {}


def linear_healing(request: HealRequest) -> tuple[dict[str, torch.Tensor], dict]:
    """ReplaceMe's least-squares map per maximal run of removed blocks, folded into ``down_proj``
    (:mod:`lorp.heal.linear`).

    Settings: ``alpha`` (a fixed ridge strength, multiples of ``tr(MᵀM)/d``; default: chosen per map on the
    held-out quarter of the calibration rows among ``alphas``), ``alphas`` (the grid, default
    :data:`lorp.heal.linear.DEFAULT_ALPHAS`). A run starting at block 0 has no kept block before it: it is
    left unhealed and listed under ``"unhealed_runs"``.

    Returns:
        ``({down_proj weight name: Tᵀ W}, record)``; the record has, per map, the run, the block folded into,
        the chosen alpha, the held-out mean squared residual error per alpha and of the identity (no repair),
        the tokens and the solve seconds.
    Raises:
        ConfigError: an unknown setting, a bad alpha, fewer than 2 calibration rows when alpha is to be chosen,
            or a block with a norm after its MLP (Gemma 3's ``post_feedforward_layernorm``), where this fold
            is not exact.
    """
    unknown = set(request.settings) - {"alpha", "alphas"}
    if unknown:
        raise ConfigError(f"healer 'linear' takes the settings alpha and alphas, got unknown {sorted(unknown)}")
    fixed = request.settings.get("alpha")
    alphas = tuple(float(a) for a in request.settings.get("alphas", DEFAULT_ALPHAS)) if fixed is None \
        else (float(fixed),)
    if not alphas or not all(math.isfinite(a) and a >= 0 for a in alphas):
        raise ConfigError(f"alphas must be finite numbers >= 0, got {alphas}")
    model, registry = request.model, request.registry
    _, blocks = find_blocks(model, registry)
    runs = removed_runs(request.removed)
    healed = [(a, b) for a, b in runs if a > 0]
    for a, _ in healed:
        if hasattr(blocks[a - 1], "post_feedforward_layernorm"):
            raise ConfigError(f"block {a - 1} normalises after its MLP (post_feedforward_layernorm, Gemma 3): "
                              "folding a map into down_proj is not exact there; the linear healer does not "
                              "support this architecture yet")
    ids, mask = request.calibration, request.attention_mask
    rows = int(ids.shape[0])
    held = 0 if len(alphas) == 1 else math.ceil(rows / 4)
    if held and rows < 2:
        raise ConfigError("choosing alpha needs at least 2 calibration sequences (a quarter held out); "
                          "give more or fix alpha")
    fit = collect_stats(model, ids[:rows - held], mask[:rows - held], healed, registry=registry) if healed else {}
    hold = collect_stats(model, ids[rows - held:], mask[rows - held:], healed, registry=registry) \
        if healed and held else {}
    names = {id(p): n for n, p in model.named_parameters()}
    weights: dict[str, torch.Tensor] = {}
    maps = []
    for a, b in healed:
        t0 = time.perf_counter()
        errors = {}
        if held:
            errors = {x: residual_error(hold[(a, b)], ridge_to_identity(fit[(a, b)], x)) for x in alphas}
        alpha = min(errors, key=errors.get) if errors else alphas[0]
        stats = fit[(a, b)] + hold[(a, b)] if held else fit[(a, b)]
        t = ridge_to_identity(stats, alpha)
        down = blocks[a - 1].mlp.down_proj.weight
        weights[names[id(down)]] = torch.from_numpy(t.T @ down.detach().double().cpu().numpy()).to(down.dtype)
        maps.append({"run": [a, b], "block": a - 1, "alpha": alpha, "tokens": stats.tokens,
                     "holdout_mse": {str(k): v for k, v in errors.items()},
                     "holdout_mse_identity": residual_error(hold[(a, b)], np.eye(t.shape[0])) if held else None,
                     "solve_seconds": time.perf_counter() - t0})
    record = {"holdout_rows": held, "fit_rows": rows - held, "alphas": list(alphas), "maps": maps,
              "unhealed_runs": [[a, b] for a, b in runs if a == 0]}
    return weights, record


@hookimpl
def lorp_register_healers(register):
    register(Healer(name="none", heal=no_healing, version="1",
                    description="no repair: the blocks are deleted and nothing else changes",
                    source="the unhealed reference (LoRP, arXiv 2605.27786, evaluates without repair)"))
    register(Healer(name="linear", heal=linear_healing, version="1",
                    description="least-squares map per run of removed blocks, ridge toward I chosen on held-out "
                                "calibration, folded into down_proj",
                    source="ReplaceMe (Shopkhoev et al., NeurIPS 2025), least-squares form; lorp/heal/linear.py"))
