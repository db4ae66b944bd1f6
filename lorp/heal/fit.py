"""Run a healer and check its output before any is written (the healer hook's contract), and apply it.

A healer returns new weights for existing parameters (``linear``: a map folded into ``down_proj``) and,
optionally, residual-stream maps (``residual``: one ``d × d`` module per run of removed blocks,
:mod:`lorp.heal.residual`). :func:`healing_applied` puts both into a model for the length of a ``with``;
:func:`apply_healing` for good.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, PluginError
from ..model.blocks import find_blocks
from ..plugins.components import Healer, HealRequest
from ..plugins.guard import plugin_code
from .forward import weights_written
from .linear import removed_runs
from .residual import insert_stream_maps, stream_maps_inserted, stream_width, valid_map


@dataclass(frozen=True)
class HealFit:
    """A healer's checked output.

    Attributes:
        healer: the healer's registry name.
        weights: ``{parameter name of the dense model: new float tensor}``, each of its parameter's shape
            and dtype, in kept blocks only (empty for ``none``).
        record: the healer's JSON-able record of what it fitted (settings, maps).
        seconds: wall time of the fit.
        stream_maps: ``{(first, last): T float32 [d, d]}`` on the CPU: residual-stream maps, each applied to the
            input of block ``last + 1`` in place of the removed run ``first..last``
            (:class:`lorp.heal.residual.StreamMap`); empty for healers that only change weights. A fit with
            stream maps is not a standard architecture: it folds into no weight.
    """

    healer: str
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stream_maps: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    @property
    def foldable(self) -> bool:
        """Whether the healed model is a standard architecture (no stream maps): saved by ``save_pretrained``
        and exported to GGUF as it is."""
        return not self.stream_maps


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
        a :class:`HealFit` whose weights are detached float tensors on the parameters' devices and whose stream
        maps are float32 CPU tensors.
    Raises:
        ConfigError: the request removes nothing or every block, or the healer rejects its settings.
        PluginError: the healer broke its contract: not a ``(weights, record)`` pair or a ``(weights, record,
            stream_maps)`` triple, a name that is not a parameter of the dense model, a parameter of a removed
            block, a wrong shape, or a value that is not finite; a stream map keyed by anything but a maximal
            run of removed blocks with a kept block after it, or not a finite ``[d, d]`` float. The message names
            the healer and the first offending entry.
    """
    removed = check_removed(request.model, request.removed, request.registry)
    if tuple(request.removed) != removed:
        raise ConfigError(f"HealRequest.removed must be sorted and distinct, got {request.removed}")
    before = _fingerprint(request.model)
    t = time.perf_counter()
    with plugin_code(f"healer {healer.name!r}"):
        out = healer.heal(request)
    seconds = time.perf_counter() - t
    if not (isinstance(out, tuple) and len(out) in (2, 3) and all(isinstance(x, Mapping) for x in out)):
        raise PluginError(f"healer {healer.name!r} must return (weights: dict, record: dict) or (weights, record, "
                          f"stream_maps: dict), got {type(out).__name__}")
    weights, record = out[0], out[1]
    maps = check_stream_maps(request.model, removed, out[2] if len(out) == 3 else {}, healer.name, request.registry)
    if maps and healer.foldable:
        raise PluginError(f"healer {healer.name!r} returned stream maps but is registered foldable; register it "
                          "with foldable=False (its model is then refused a GGUF export before any work)")
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
    return HealFit(healer=healer.name, weights=checked, record=record, seconds=seconds, stream_maps=maps)


def check_stream_maps(model: nn.Module, removed: tuple[int, ...], maps: Mapping, healer: str, registry=None
                      ) -> dict[tuple[int, int], torch.Tensor]:
    """A healer's ``stream_maps`` checked against the dense ``model`` and its sorted ``removed`` blocks; returned
    as ``{(first, last): float32 CPU tensor [d, d]}`` in depth order (``d``: the input embeddings' width).

    Raises:
        PluginError: a key that is not a maximal run of removed blocks (:func:`lorp.heal.linear.removed_runs`), a
            run ending at the last block (no kept block after it to carry the map), or a value that is not a
            finite float ``[d, d]`` tensor or array.
    """
    runs = removed_runs(removed)
    last = len(find_blocks(model, registry)[1]) - 1
    d = stream_width(model)
    checked: dict[tuple[int, int], torch.Tensor] = {}
    for key, value in maps.items():
        where = f"healer {healer!r}: stream map {key!r}"
        run = tuple(int(x) for x in key) if isinstance(key, tuple) and len(key) == 2 else None
        if run not in runs:
            raise PluginError(f"{where} is not keyed by a maximal run of removed blocks (first, last); the runs "
                              f"are {runs}")
        if run[1] == last:
            raise PluginError(f"{where} ends at the last block; no kept block follows it to carry the map")
        if not valid_map(value, d):
            got = tuple(value.shape) if isinstance(value, (torch.Tensor, np.ndarray)) else type(value).__name__
            raise PluginError(f"{where} must be a finite float [{d}, {d}] tensor, got {got}")
        checked[run] = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float32).clone()
    return dict(sorted(checked.items()))


@torch.no_grad()
def apply_healing(model: nn.Module, fit: HealFit, registry=None) -> None:
    """Write a checked :class:`HealFit` into ``model`` for good: its weights, and its stream maps as
    :class:`lorp.heal.residual.MappedBlock` wrappers (:func:`lorp.heal.residual.insert_stream_maps`). ``model`` is
    the dense model, before its blocks are deleted."""
    params = dict(model.named_parameters())
    for name, value in fit.weights.items():
        params[name].copy_(value)
    if fit.stream_maps:
        insert_stream_maps(model, fit.stream_maps, registry=registry)


@contextmanager
def healing_applied(model: nn.Module, fit: HealFit, registry=None) -> Iterator[nn.Module]:
    """Inside the ``with``, the dense ``model`` holds ``fit``'s weights (:func:`lorp.heal.forward.weights_written`)
    and carries its stream maps (:func:`lorp.heal.residual.stream_maps_inserted`); both are restored on exit, the
    weights bit for bit (also on error). Delete the removed blocks inside it
    (:func:`lorp.model.pruning.blocks_removed`) to evaluate the healed pruned model."""
    with weights_written(model, fit.weights), stream_maps_inserted(model, fit.stream_maps, registry=registry):
        yield model


@torch.no_grad()
def _fingerprint(model: nn.Module) -> dict[str, tuple[float, float]]:
    """Per parameter: float64 sum and sum of squares, to see that a healer left the model untouched
    without copying its weights (an in-place change that keeps both is not caught)."""
    return {n: (float(p.double().sum()), float(p.double().square().sum())) for n, p in model.named_parameters()}


__all__ = ["HealFit", "apply_healing", "check_removed", "check_stream_maps", "fit_healer", "healing_applied"]
