"""Builtin model adapters: where transformers causal LMs keep their decoder blocks."""

from __future__ import annotations

from torch import nn

from ..plugins.components import ModelAdapter
from ..plugins.hookspecs import hookimpl


def at_path(path: str):
    """An adapter function that finds a non-empty ``nn.ModuleList`` at dotted ``path``."""
    def find(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return (path, obj) if isinstance(obj, nn.ModuleList) and len(obj) > 0 else None
    return find


#: (adapter name, block path, families) of the builtin adapters, tried in this order.
BUILTIN_PATHS: tuple[tuple[str, str, str], ...] = (
    ("decoder-layers", "model.layers", "Llama, Gemma 3, Qwen2, Mistral, Phi-3, OLMo, ..."),
    ("gpt2", "transformer.h", "GPT-2, GPT-J, Falcon, Bloom, ..."),
    ("gpt-neox", "gpt_neox.layers", "GPT-NeoX, Pythia"),
    ("opt", "model.decoder.layers", "OPT"),
)


@hookimpl
def lorp_register_model_adapters(register):
    for name, path, families in BUILTIN_PATHS:
        register(ModelAdapter(name=name, find_blocks=at_path(path), description=f"blocks at {path} ({families})"))
