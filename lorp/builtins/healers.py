"""Builtin healers: training-free repairs of a pruned model (the healer hook, :class:`lorp.Healer`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..errors import ConfigError
from ..heal.linear import DEFAULT_ALPHAS, collect_stats, removed_runs, residual_error, ridge_to_identity
from ..heal.norm_fold import ZERO_GAIN, conjugated_map, fold_scale_stats
from ..heal.sequential import collect_run_stats
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
    (:mod:`lorp.heal.linear`); every run is fitted against the dense stream, independently.

    Settings: ``alpha`` (a fixed ridge strength, multiples of ``tr(MᵀM)/d``; default: chosen per map on the
    held-out quarter of the calibration rows among ``alphas``), ``alphas`` (the grid, default
    :data:`lorp.heal.linear.DEFAULT_ALPHAS`). A run starting at block 0 has no kept block before it: it is
    left unhealed and listed under ``"unhealed_runs"``.

    Returns:
        ``({down_proj weight name: Tᵀ W}, record)``; the record has, per map, the run, the block folded into,
        the chosen alpha, the held-out mean squared residual error per alpha and of the identity (no repair),
        the tokens and the solve seconds.
    Raises:
        ConfigError: an unknown setting, a bad alpha, or fewer than 2 calibration rows when alpha is to be
            chosen.

    Gemma 3 (``post_feedforward_layernorm``): the map is fitted on the normalised MLP branch and folded as
    :mod:`lorp.heal.norm_fold` states (not exact: one scalar per token, and a channel whose gain is zero
    cannot carry the map's output; the record's ``"fold"`` gives those channels' count and the mean squared
    error of the explicit and the folded branch on the calibration rows).
    """
    return linear_healing_memo(request, None)


@dataclass
class LinearRunMemo:
    """Per-run results of :func:`linear_healing` kept across calls on one model and one calibration set.

    ``linear``'s runs are fitted independently against the dense stream, so a run's map (and its folded
    weights) depends on the run, the rows and the settings only, not on the rest of the removed set. A selector
    that heals many candidate sets (:mod:`lorp.run.healed_nll`) fits each distinct run once, and collects the
    statistics of every run in ``pending`` in the same dense pass. Valid only for one model, one
    ``calibration`` tensor and one settings mapping; the caller keeps it so.

    Attributes:
        pending: runs ``(first, last)`` whose statistics the next capture also collects.
        solved: ``{run: (weights, map record)}`` of the runs fitted so far.
        passes: dense capture passes run (fit rows and held-out rows count one each).
    """

    pending: set[tuple[int, int]] = field(default_factory=set)
    solved: dict[tuple[int, int], tuple[dict[str, torch.Tensor], dict]] = field(default_factory=dict)
    passes: int = 0


def linear_healing_memo(request: HealRequest, memo: LinearRunMemo | None) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`linear_healing` that reuses and extends ``memo`` (``None``: a plain fit); identical results."""
    plan = _MapPlan(request, "linear")
    todo = [run for run in plan.healed if memo is None or run not in memo.solved]
    if todo:
        runs = sorted(set(todo) | ((memo.pending - set(memo.solved)) if memo else set()))
        fit = collect_stats(request.model, *plan.fit_rows, runs, registry=request.registry)
        hold = collect_stats(request.model, *plan.held_rows, runs, registry=request.registry) if plan.held else {}
        if memo is not None:
            memo.passes += 1 + bool(plan.held)
    for run in plan.healed:
        if memo is not None and run in memo.solved:
            weights, entry = memo.solved[run]
            plan.weights.update(weights)
            plan.maps.append(entry)
            continue
        before = set(plan.weights)
        plan.solve(run, fit[run], hold.get(run))
        if memo is not None:
            memo.solved[run] = ({k: plan.weights[k] for k in set(plan.weights) - before}, plan.maps[-1])
    if memo is not None:  # the other pending runs' statistics were collected in the same pass: fit them now
        for run in sorted(memo.pending - set(memo.solved)):
            if todo and run in fit:
                side = _MapPlan(replace(request, removed=tuple(range(run[0], run[1] + 1))), "linear")
                side.solve(run, fit[run], hold.get(run))
                memo.solved[run] = (side.weights, side.maps[-1])
    return plan.weights, plan.record()


def sequential_healing(request: HealRequest) -> tuple[dict[str, torch.Tensor], dict]:
    """ReplaceMe's maps fitted in depth order on the partially pruned, healed model (:mod:`lorp.heal.sequential`,
    our design): run ``j``'s map sees the stream after runs ``1..j−1`` are deleted and their maps folded in, and
    is fitted toward the dense stream after run ``j``. The first run's map equals ``linear``'s.

    Settings, record, the block-0 rule and errors: as :func:`linear_healing`; the record adds ``"sequential":
    true``. Cost: about one ``linear`` capture per run.
    """
    plan = _MapPlan(request, "sequential")
    earlier: list[int] = []
    runs = removed_runs(request.removed)
    for run in runs:
        if run in plan.healed:
            kw = dict(earlier=earlier, healed=plan.weights, registry=request.registry)
            fit = collect_run_stats(request.model, *plan.fit_rows, run, **kw)
            hold = collect_run_stats(request.model, *plan.held_rows, run, **kw) if plan.held else None
            plan.solve(run, fit, hold, earlier, dict(plan.weights))
        earlier += range(run[0], run[1] + 1)
    return plan.weights, {**plan.record(), "sequential": True}


class _MapPlan:
    """What the two least-squares healers share: settings, the held-out split, the alpha choice and the fold."""

    def __init__(self, request: HealRequest, name: str):
        unknown = set(request.settings) - {"alpha", "alphas"}
        if unknown:
            raise ConfigError(f"healer {name!r} takes the settings alpha and alphas, got unknown {sorted(unknown)}")
        fixed = request.settings.get("alpha")
        alphas = tuple(float(a) for a in request.settings.get("alphas", DEFAULT_ALPHAS)) if fixed is None \
            else (float(fixed),)
        if not alphas or not all(math.isfinite(a) and a >= 0 for a in alphas):
            raise ConfigError(f"alphas must be finite numbers >= 0, got {alphas}")
        self.alphas, self.model = alphas, request.model
        _, self.blocks = find_blocks(request.model, request.registry)
        self.runs = removed_runs(request.removed)
        self.healed = [(a, b) for a, b in self.runs if a > 0]
        ids, mask = request.calibration, request.attention_mask
        rows = int(ids.shape[0])
        self.held = 0 if len(alphas) == 1 else math.ceil(rows / 4)
        if self.held and rows < 2:
            raise ConfigError("choosing alpha needs at least 2 calibration sequences (a quarter held out); "
                              "give more or fix alpha")
        self.rows, self.all_rows, self.registry = rows, (ids, mask), request.registry
        self.fit_rows = (ids[:rows - self.held], mask[:rows - self.held])
        self.held_rows = (ids[rows - self.held:], mask[rows - self.held:])
        self.names = {id(p): n for n, p in request.model.named_parameters()}
        self.weights: dict[str, torch.Tensor] = {}
        self.maps: list[dict] = []

    def solve(self, run: tuple[int, int], fit, hold, earlier=(), healed=None) -> None:
        """Choose alpha on ``hold`` (when held out), refit on every row, fold the map into the kept block:
        ``W ← Tᵀ W`` (exact), or behind a post-MLP norm :mod:`lorp.heal.norm_fold`'s ``W ← Aᵀ W``, ``γ ← c γ``
        with ``c`` fitted on every row of the model ``T`` was fitted on (``earlier`` deleted, ``healed`` written;
        the dense model for ``linear``)."""
        a, b = run
        t0 = time.perf_counter()
        errors = {x: residual_error(hold, ridge_to_identity(fit, x)) for x in self.alphas} if hold is not None else {}
        alpha = min(errors, key=errors.get) if errors else self.alphas[0]
        stats = fit + hold if hold is not None else fit
        t = ridge_to_identity(stats, alpha)
        solve_seconds = time.perf_counter() - t0
        block = self.blocks[a - 1]
        down = block.mlp.down_proj.weight
        norm = getattr(block, "post_feedforward_layernorm", None)
        if norm is None:
            fold, into = {"kind": "exact"}, t
        else:
            into, gamma = conjugated_map(t, norm.weight)
            scale = fold_scale_stats(self.model, *self.all_rows, run, into, gamma, float(norm.eps), earlier=earlier,
                                     healed=healed, registry=self.registry)
            c = scale.scale
            self.weights[self.names[id(norm.weight)]] = torch.from_numpy(c * gamma - 1.0).to(norm.weight.dtype)
            fold = {"kind": "post-norm, scaled", "scale": c, "zero_gain_channels": int((abs(gamma) < ZERO_GAIN).sum()),
                    "mse_explicit": residual_error(stats, t),
                    "mse_folded": scale.mse(c), "mse_identity": residual_error(stats, np.eye(t.shape[0]))}
        self.weights[self.names[id(down)]] = torch.from_numpy(into.T @ down.detach().double().cpu().numpy()).to(down.dtype)
        self.maps.append({"run": [a, b], "block": a - 1, "alpha": alpha, "tokens": stats.tokens,
                          "holdout_mse": {str(k): v for k, v in errors.items()},
                          "holdout_mse_identity": residual_error(hold, np.eye(t.shape[0])) if hold is not None else None,
                          "solve_seconds": solve_seconds, "fold": fold})

    def record(self) -> dict:
        return {"holdout_rows": self.held, "fit_rows": self.rows - self.held, "alphas": list(self.alphas),
                "maps": self.maps, "unhealed_runs": [[a, b] for a, b in self.runs if a == 0]}


@hookimpl
def lorp_register_healers(register):
    register(Healer(name="none", heal=no_healing, version="1",
                    description="no repair: the blocks are deleted and nothing else changes",
                    source="the unhealed reference (LoRP, arXiv 2605.27786, evaluates without repair)"))
    register(Healer(name="linear", heal=linear_healing, version="1",
                    description="least-squares map per run of removed blocks, ridge toward I chosen on held-out "
                                "calibration, folded into down_proj",
                    source="ReplaceMe (Shopkhoev et al., NeurIPS 2025), least-squares form; lorp/heal/linear.py"))
    register(Healer(name="sequential", heal=sequential_healing, version="1",
                    description="linear's maps fitted in depth order on the partially pruned, healed model, so "
                                "each map also absorbs the earlier runs' drift (for LoRP's spread removals)",
                    source="lorp's own design (lorp/heal/sequential.py): ReplaceMe's maps with the sequential "
                           "fitting of GPTQ/SliceGPT"))
