"""Run a healer and check its weights before any is written (the healer hook's contract)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, PluginError
from ..model.blocks import find_blocks
from ..plugins.components import Healer, HealRequest
from ..plugins.guard import plugin_code


@dataclass(frozen=True)
class HealFit:
    """A healer's checked output.

    Attributes:
        healer: the healer's registry name.
        weights: ``{parameter name of the dense model: new float tensor}``, each of its parameter's shape
            and dtype, in kept blocks only (empty for ``none``).
        record: the healer's JSON-able record of what it fitted (settings, maps).
        seconds: wall time of the fit.
    """

    healer: str
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def check_removed(model: nn.Module, removed: Iterable[int], registry=None) -> tuple[int, ...]:
    """The removed blocks, sorted, checked against the model: at least one, each an existing block, not all.

    Raises:
        ConfigError: nothing removed (a healer has nothing to repair), an index out of range, or every block.
    """
    blocks = sorted(set(int(b) for b in removed))
    n = len(find_blocks(model, registry)[1])
    if not blocks:
        raise ConfigError("a healer repairs removed blocks, but nothing is removed; give a budget of at least 1 "
                          "(or heal with 'none')")
    bad = [b for b in blocks if not 0 <= b < n]
    if bad:
        raise ConfigError(f"removed blocks {bad} are not blocks of this model (0..{n - 1})")
    if len(blocks) == n:
        raise ConfigError(f"all {n} blocks are removed; keep at least one")
    return tuple(blocks)


def fit_healer(healer: Healer, request: HealRequest) -> HealFit:
    """Run ``healer`` on ``request`` and check what it returns; nothing is written to the model.

    Returns:
        a :class:`HealFit` whose weights are detached float tensors on the parameters' devices.
    Raises:
        ConfigError: the request removes nothing or every block, or the healer rejects its settings.
        PluginError: the healer broke its contract: not a ``(weights, record)`` pair, a name that is not a
            parameter of the dense model, a parameter of a removed block, a wrong shape, or a value that is
            not finite. The message names the healer and the first offending entry.
    """
    removed = check_removed(request.model, request.removed, request.registry)
    if tuple(request.removed) != removed:
        raise ConfigError(f"HealRequest.removed must be sorted and distinct, got {request.removed}")
    before = _fingerprint(request.model)
    t = time.perf_counter()
    with plugin_code(f"healer {healer.name!r}"):
        out = healer.heal(request)
    seconds = time.perf_counter() - t
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], Mapping) and isinstance(out[1], Mapping)):
        raise PluginError(f"healer {healer.name!r} must return (weights: dict, record: dict), got "
                          f"{type(out).__name__}")
    weights, record = out
    params = dict(request.model.named_parameters())
    path = find_blocks(request.model, request.registry)[0]
    inside = re.compile(rf"^{re.escape(path)}\.(\d+)\.")
    checked: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        where = f"healer {healer.name!r}: weight {name!r}"
        if name not in params:
            raise PluginError(f"{where} is not a parameter of the model; use names from model.named_parameters()")
        m = inside.match(name)
        if m and int(m.group(1)) in removed:
            raise PluginError(f"{where} belongs to removed block {m.group(1)}; heal kept blocks only")
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(params[name].shape):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise PluginError(f"{where} has shape {got}, the parameter has {tuple(params[name].shape)}")
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise PluginError(f"{where} holds non-finite or non-float values")
        checked[name] = value.detach().to(dtype=params[name].dtype, device=params[name].device)
    changed = [n for n, v in _fingerprint(request.model).items() if v != before.get(n)]
    if changed:
        raise PluginError(f"healer {healer.name!r} changed the model itself ({changed[0]}); return new "
                          "weights instead")
    record = dict(record)
    try:
        json.dumps(record)
    except (TypeError, ValueError) as err:
        raise PluginError(f"healer {healer.name!r} returned a record that is not JSON-able ({err}): "
                          f"{record!r:.200}") from None
    return HealFit(healer=healer.name, weights=checked, record=record, seconds=seconds)


@torch.no_grad()
def apply_healing(model: nn.Module, fit: HealFit) -> None:
    """Write a checked :class:`HealFit`'s weights into ``model`` (the dense model, before its blocks are deleted)."""
    params = dict(model.named_parameters())
    for name, value in fit.weights.items():
        params[name].copy_(value)


@torch.no_grad()
def _fingerprint(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Per parameter: float64 sum and sum of squares, to see that a healer left the model untouched
    without copying its weights (an in-place change that keeps both is not caught)."""
    return {n: (float(p.double().sum()), float(p.double().square().sum())) for n, p in model.named_parameters()}


__all__ = ["HealFit", "apply_healing", "check_removed", "fit_healer"]
