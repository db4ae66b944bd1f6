"""Builtin healers: training-free repairs of a pruned model (the healer hook, :class:`lorp.Healer`)."""

from __future__ import annotations

from ..errors import ConfigError
from ..plugins.components import Healer, HealRequest
from ..plugins.hookspecs import hookimpl


def no_healing(request: HealRequest) -> tuple[dict, dict]:
    """The unhealed model: no weight changes, an empty record. The reference every healer is measured against."""
    if request.settings:
        raise ConfigError(f"healer 'none' takes no settings, got {dict(request.settings)}")
    return {}, {}


@hookimpl
def lorp_register_healers(register):
    register(Healer(name="none", heal=no_healing, version="1",
                    description="no repair: the blocks are deleted and nothing else changes",
                    source="the unhealed reference (LoRP, arXiv 2605.27786, evaluates without repair)"))
