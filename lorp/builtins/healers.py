"""Builtin healers: training-free repairs of a pruned model (the healer hook, :class:`lorp.Healer`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError
from ..heal.linear import DEFAULT_ALPHAS, collect_stats, removed_runs, residual_error, ridge_to_identity
from ..heal.holdout import HOLDOUT_EVERY, HeldOutNLL, holdout_split
from ..heal.residual import fit_stream_maps
from ..heal.norm_fold import conjugated_map, fold_scale_stats, switched_on
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
    (:mod:`lorp.heal.linear`); every run's maps are fitted against the dense stream, independently.

    Which map, if any: every 4th calibration sequence is held out (:func:`lorp.heal.holdout.holdout_split`) and
    the maps are fitted on the others, one per ridge strength in ``alphas``. In depth order, each run keeps the
    candidate with the lowest held-out next-token NLL of the pruned model healed so far (earlier runs as chosen,
    later runs unhealed), and only if that beats no map (the identity, α = ∞); otherwise the run stays unhealed.
    So the healed model's held-out NLL is never above the unhealed one's. The maps are not refitted on the
    held-out rows: the weights written are the ones judged.

    Settings: ``alphas`` (the grid, multiples of ``tr(MᵀM)/d``; default :data:`lorp.heal.linear.DEFAULT_ALPHAS`),
    or ``alpha`` (one fixed strength: the map is fitted on every row and always written, nothing is held out
    and no identity check is made). A run starting at block 0 has no kept block before it: it is left unhealed
    and listed under ``"unhealed_runs"``.

    Returns:
        ``({down_proj weight name: Tᵀ W}, record)``. The record has ``holdout_rows``, ``fit_rows``,
        ``holdout_every``, ``alphas``, ``holdout_nll_unhealed`` and ``holdout_nll_healed`` (mean nats per held-out
        token, ``None`` with a fixed alpha) and, per run under ``"maps"``: the run, the block folded into,
        ``alpha`` (the chosen strength, or ``"identity"`` when no map beat none), ``best_alpha``, the held-out NLL
        per alpha (``holdout_nll``), of the identity (``holdout_nll_identity``) and of the choice
        (``holdout_nll_chosen``), the fit tokens, the solve seconds and the fold of the best candidate.
    Raises:
        ConfigError: an unknown setting, a bad alpha, or fewer than 2 calibration rows when alpha is to be
            chosen.

    Gemma 3 (``post_feedforward_layernorm``): each candidate is fitted on the normalised MLP branch and folded as
    :mod:`lorp.heal.norm_fold` states (not exact: one scalar per token, fitted on the fit rows; a switched-off
    gain channel cannot carry the map's output). The held-out NLL is the folded model's, so a fold worse than no
    map is not written. The record's ``"fold"`` gives the switched-off channels' count and the mean squared error
    of the explicit and the folded branch on the fit rows.
    """
    return linear_healing_memo(request, None)


@dataclass
class RunCandidates:
    """One run's candidate maps, one per ridge strength, ready to write.

    Attributes:
        weights: ``{alpha: {parameter name: new tensor}}`` (``down_proj``; on Gemma 3 also the post-MLP norm).
        folds: ``{alpha: the fold's record}`` (``{"kind": "exact"}`` where nothing follows ``down_proj``).
        tokens: calibration tokens the maps were fitted on.
        seconds: solve (and fold) wall time.
    """

    weights: dict[float, dict[str, torch.Tensor]]
    folds: dict[float, dict]
    tokens: int
    seconds: float


@dataclass
class LinearRunMemo:
    """Per-run candidate maps of :func:`linear_healing`, kept across calls on one model and one calibration set.

    ``linear``'s runs are fitted independently against the dense stream, so a run's candidate maps (one per
    alpha, and their folded weights) depend on the run, the fit rows and the settings only, not on the rest of
    the removed set; which candidate is kept does depend on the set (held-out NLL of the whole pruned model) and
    is chosen anew per call. A selector that heals many candidate sets (:mod:`lorp.run.healed_nll`) fits each
    distinct run once, and collects the statistics of every run in ``pending`` in the same dense pass. Valid only
    for one model, one ``calibration`` tensor and one settings mapping; the caller keeps it so.

    Attributes:
        pending: runs ``(first, last)`` whose statistics the next capture also collects.
        solved: ``{run: RunCandidates}`` of the runs fitted so far.
        passes: dense capture passes over the fit rows.
    """

    pending: set[tuple[int, int]] = field(default_factory=set)
    solved: dict[tuple[int, int], RunCandidates] = field(default_factory=dict)
    passes: int = 0


def linear_healing_memo(request: HealRequest, memo: LinearRunMemo | None) -> tuple[dict[str, torch.Tensor], dict]:
    """:func:`linear_healing` that reuses and extends ``memo`` (``None``: a plain fit); identical results."""
    plan = _MapPlan(request, "linear")
    solved = memo.solved if memo is not None else {}
    todo = [run for run in plan.healed if run not in solved]
    if todo:
        runs = sorted(set(todo) | ((memo.pending - set(solved)) if memo is not None else set()))
        stats = collect_stats(request.model, *plan.fit_rows, runs, registry=request.registry)
        if memo is not None:
            memo.passes += 1
        fresh = {run: plan.candidates(run, stats[run]) for run in runs}
        solved = {**solved, **fresh}
        if memo is not None:
            memo.solved.update(fresh)
    for run in plan.healed:
        plan.choose(run, solved[run])
    return plan.weights, plan.record()


def sequential_healing(request: HealRequest) -> tuple[dict[str, torch.Tensor], dict]:
    """ReplaceMe's maps fitted in depth order on the partially pruned, healed model (:mod:`lorp.heal.sequential`,
    our design): run ``j``'s candidates see the stream after runs ``1..j−1`` are deleted and their chosen maps
    folded in, and are fitted toward the dense stream after run ``j``. The first run's choice equals ``linear``'s.

    Held-out rows, the choice among alphas and the identity, settings, record, the block-0 rule and errors: as
    :func:`linear_healing`. The held-out rows stay out of every fit, the earlier runs' maps included, so each
    run's held-out NLL is that of maps none of which saw those rows. The record adds ``"sequential": true``.
    Cost: about one ``linear`` capture per run.
    """
    plan = _MapPlan(request, "sequential")
    earlier: list[int] = []
    for run in removed_runs(request.removed):
        if run in plan.healed:
            healed = dict(plan.weights)
            stats = collect_run_stats(request.model, *plan.fit_rows, run, earlier=earlier, healed=healed,
                                      registry=request.registry)
            plan.choose(run, plan.candidates(run, stats, earlier, healed))
        earlier += range(run[0], run[1] + 1)
    return plan.weights, {**plan.record(), "sequential": True}


def residual_healing(request: HealRequest) -> tuple[dict, dict, dict[tuple[int, int], torch.Tensor]]:
    """One ``d × d`` map on the whole residual stream per maximal run of removed blocks, applied to the input of the
    first kept block after the run (:mod:`lorp.heal.residual`; the form of Ghosted Layers, arXiv 2605.15491).

    Fitted by least squares with a ridge toward I on the dense stream entering and leaving each run
    (:func:`lorp.heal.residual.fit_stream_maps`). Which map, if any, is kept: ``linear``'s rule (every 4th
    calibration sequence held out, one candidate per ridge strength, in depth order the lowest held-out NLL kept
    only if it beats no map), so the healed model's held-out NLL is never above the unhealed one's. Settings as
    ``linear`` (``alphas`` or a fixed ``alpha``). A run ending at the last block has no kept block after it and is
    left unhealed (``"unhealed_runs"``).

    The maps fold into no weight: the healed model is not a standard architecture. lorp evaluates it, and
    ``lorp prune --heal residual`` saves the maps beside the model (``heal_maps.safetensors``,
    :func:`lorp.load_healed`); a GGUF export is refused.

    Returns:
        ``({}, record, {(first, last): T float32 [d, d]})``, the record as
        :func:`lorp.heal.residual.fit_stream_maps` gives it.
    Raises:
        ConfigError: an unknown setting, a bad alpha, or fewer than 2 calibration rows when alpha is chosen.
    """
    check_least_squares_settings("residual")(request.settings)
    alphas = healer_alphas(request.settings, "residual")
    maps, record = fit_stream_maps(request.model, request.calibration, request.attention_mask, request.removed,
                                   alphas=alphas, fixed="alpha" in request.settings, registry=request.registry)
    return {}, record, {run: torch.as_tensor(t, dtype=torch.float32) for run, t in maps.items()}


def check_least_squares_settings(name: str):
    """The settings check of a least-squares healer (:attr:`lorp.Healer.check_settings`): only ``alpha`` or
    ``alphas``, valid as :func:`healer_alphas` says.

    Raises:
        ConfigError: an unknown setting or a bad value, naming the healer.
    """
    def check(settings) -> None:
        unknown = set(settings) - {"alpha", "alphas"}
        if unknown:
            raise ConfigError(f"healer {name!r} takes the settings alpha and alphas, got unknown {sorted(unknown)}")
        healer_alphas(settings, name)
    return check


class _MapPlan:
    """What the two least-squares healers share: settings, the held-out split, the candidates per alpha and
    their fold, and the choice on held-out NLL."""

    def __init__(self, request: HealRequest, name: str):
        check_least_squares_settings(name)(request.settings)
        self.alphas = healer_alphas(request.settings, name)
        self.fixed = "alpha" in request.settings
        self.model, self.registry = request.model, request.registry
        _, self.blocks = find_blocks(request.model, request.registry)
        self.runs = removed_runs(request.removed)
        self.healed = [(a, b) for a, b in self.runs if a > 0]
        ids, mask = request.calibration, request.attention_mask
        rows = int(ids.shape[0])
        if self.fixed:
            fit, held = list(range(rows)), []
        else:
            if rows < 2:
                raise ConfigError(f"healer {name!r} chooses alpha on held-out calibration sequences (every "
                                  f"{HOLDOUT_EVERY}th) and needs at least 2; give more (--num-samples) or fix "
                                  "alpha (--heal-setting alpha=0.1)")
            fit, held = holdout_split(rows)
        self.fit_rows = (ids[fit], mask[fit])
        self.held = len(held)
        self.scorer = HeldOutNLL(request.model, ids[held], mask[held], request.removed, registry=request.registry) \
            if held and self.healed else None
        self.names = {id(p): n for n, p in request.model.named_parameters()}
        self.weights: dict[str, torch.Tensor] = {}
        self.maps: list[dict] = []
        self.nll_unhealed: float | None = None
        self.nll_healed: float | None = None

    def candidates(self, run: tuple[int, int], stats, earlier=(), healed=None) -> RunCandidates:
        """One map per alpha fitted on ``stats`` (the fit rows) and folded into the kept block before ``run``:
        ``W ← Tᵀ W`` (exact), or behind a post-MLP norm :mod:`lorp.heal.norm_fold`'s ``W ← Aᵀ W``, ``γ ← c γ``
        with ``c`` fitted on the fit rows of the model ``T`` was fitted on (``earlier`` deleted, ``healed``
        written; the dense model for ``linear``)."""
        t0 = time.perf_counter()
        maps = {x: ridge_to_identity(stats, x) for x in self.alphas}
        block = self.blocks[run[0] - 1]
        down = block.mlp.down_proj.weight
        w = down.detach().double().cpu().numpy()
        norm = getattr(block, "post_feedforward_layernorm", None)
        weights: dict[float, dict[str, torch.Tensor]] = {}
        folds: dict[float, dict] = {}
        if norm is None:
            for x, t in maps.items():
                weights[x] = {self.names[id(down)]: torch.from_numpy(t.T @ w).to(down.dtype)}
                folds[x] = {"kind": "exact"}
        else:
            conjugated = {x: conjugated_map(t, norm.weight) for x, t in maps.items()}
            gamma = next(iter(conjugated.values()))[1]
            scales = fold_scale_stats(self.model, *self.fit_rows, run, {x: a for x, (a, _) in conjugated.items()},
                                      gamma, float(norm.eps), earlier=earlier, healed=healed, registry=self.registry)
            identity = residual_error(stats, np.eye(w.shape[0]))
            for x, (a, _) in conjugated.items():
                c = scales[x].scale
                weights[x] = {self.names[id(norm.weight)]: torch.from_numpy(c * gamma - 1.0).to(norm.weight.dtype),
                              self.names[id(down)]: torch.from_numpy(a.T @ w).to(down.dtype)}
                folds[x] = {"kind": "post-norm, scaled", "scale": c,
                            "zero_gain_channels": int((~switched_on(gamma)).sum()),
                            "mse_explicit": residual_error(stats, maps[x]), "mse_folded": scales[x].mse(c),
                            "mse_identity": identity}
        return RunCandidates(weights, folds, stats.tokens, time.perf_counter() - t0)

    def choose(self, run: tuple[int, int], cands: RunCandidates) -> None:
        """Keep the candidate with the lowest held-out NLL if it beats no map (ties keep no map); with a fixed
        alpha, write its map."""
        a, b = run
        entry: dict = {"run": [a, b], "block": a - 1, "tokens": cands.tokens, "solve_seconds": cands.seconds}
        if self.scorer is None:
            (alpha,) = self.alphas
            self.weights.update(cands.weights[alpha])
            entry.update(alpha=alpha, best_alpha=alpha, holdout_nll={}, holdout_nll_identity=None,
                         holdout_nll_chosen=None, fold=cands.folds[alpha])
        else:
            identity = self.scorer.prefix(self.weights, a - 1)
            if self.nll_unhealed is None:
                self.nll_unhealed = identity
            scores = {x: self.scorer.candidate({**self.weights, **cands.weights[x]}) for x in self.alphas}
            best = min(scores, key=scores.get)  # ties: the first in the grid
            keep = scores[best] < identity
            if keep:
                self.weights.update(cands.weights[best])
            self.nll_healed = scores[best] if keep else identity
            entry.update(alpha=best if keep else "identity", best_alpha=best,
                         holdout_nll={str(x): v for x, v in scores.items()}, holdout_nll_identity=identity,
                         holdout_nll_chosen=self.nll_healed, fold=cands.folds[best])
        self.maps.append(entry)

    def record(self) -> dict:
        return {"holdout_rows": self.held, "holdout_every": HOLDOUT_EVERY if self.held else None,
                "fit_rows": int(self.fit_rows[0].shape[0]), "alphas": list(self.alphas), "maps": self.maps,
                "unhealed_runs": [[a, b] for a, b in self.runs if a == 0],
                "holdout_nll_unhealed": self.nll_unhealed, "holdout_nll_healed": self.nll_healed,
                "kept_maps": sum(m["alpha"] != "identity" for m in self.maps)}


def healer_alphas(settings, name: str) -> tuple[float, ...]:
    """The ridge strengths a least-squares healer tries, from its settings: ``(alpha,)`` when fixed, else
    ``alphas`` (default :data:`lorp.heal.linear.DEFAULT_ALPHAS`).

    Raises:
        ConfigError: both given, or a value that is not a finite number >= 0 (an empty grid included).
    """
    if "alpha" in settings and "alphas" in settings:
        raise ConfigError(f"healer {name!r}: give alpha (one fixed strength) or alphas (a grid to choose from), "
                          "not both")
    raw = [settings["alpha"]] if "alpha" in settings else settings.get("alphas", DEFAULT_ALPHAS)
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    try:
        alphas = tuple(float(x) for x in items)
    except (TypeError, ValueError):
        alphas = ()
    if not alphas or not all(math.isfinite(x) and x >= 0 for x in alphas) or isinstance(raw, str) \
            or any(isinstance(x, (bool, str)) for x in items):  # true is no strength, though float(True) is 1
        raise ConfigError(f"healer {name!r}: alpha must be a number >= 0 and alphas a non-empty list of them "
                          f"(e.g. alphas=[0.01,0.1,1]), got {raw!r}")
    return alphas


@hookimpl
def lorp_register_healers(register):
    register(Healer(name="none", heal=no_healing, version="1",
                    description="no repair: the blocks are deleted and nothing else changes",
                    source="the unhealed reference (LoRP, arXiv 2605.27786, evaluates without repair)"))
    register(Healer(name="linear", heal=linear_healing, version="2",
                    description="least-squares map per run of removed blocks, ridge toward I chosen, or no map kept, "
                                "by held-out calibration NLL (every 4th sequence), folded into down_proj",
                    source="ReplaceMe (Shopkhoev et al., NeurIPS 2025), least-squares form; lorp/heal/linear.py",
                    check_settings=check_least_squares_settings("linear")))
    register(Healer(name="sequential", heal=sequential_healing, version="2",
                    description="linear's maps fitted in depth order on the partially pruned, healed model, so "
                                "each map also absorbs the earlier runs' drift (for LoRP's spread removals)",
                    source="lorp's own design (lorp/heal/sequential.py): ReplaceMe's maps with the sequential "
                           "fitting of GPTQ/SliceGPT",
                    check_settings=check_least_squares_settings("sequential")))
    register(Healer(name="residual", heal=residual_healing, version="1",
                    description="least-squares d x d map on the whole residual stream per run of removed blocks, "
                                "ridge toward I chosen, or no map kept, by held-out calibration NLL; a module "
                                "before the next kept block (not foldable into the weights)",
                    source="Ghosted Layers (arXiv 2605.15491), least-squares form with linear's held-out choice; "
                           "lorp/heal/residual.py",
                    check_settings=check_least_squares_settings("residual"), foldable=False))
