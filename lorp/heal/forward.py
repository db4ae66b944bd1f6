"""Forward passes the healers' captures need: stop after a given block, or run with some weights written in."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass once the blocks it needs have run."""


def _raise_stop(_module, _inputs, _output):
    raise _Stop


def forward_until(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, last: nn.Module) -> None:
    """Run ``model`` on ``ids`` ``[1, T]`` and stop right after module ``last`` has run (its forward hooks
    registered earlier still fire); the blocks after it and the LM head are skipped."""
    hook = last.register_forward_hook(_raise_stop)
    try:
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    except _Stop:
        pass
    finally:
        hook.remove()


@contextmanager
def weights_written(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Inside the ``with``, ``model``'s parameters named in ``weights`` hold those values; restored bit for bit
    on exit (also on error)."""
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in weights}
    try:
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


__all__ = ["forward_until", "weights_written"]
