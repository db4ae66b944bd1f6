"""How a run's inputs enter cache keys: by name, or for a local model folder or text file by its content.

Above :mod:`lorp.store.cache` (which hashes bytes and knows nothing of models or
plugins), because telling a local input from a bundled model, a hub id or a
registered corpus needs the model resolver and the plugin registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..model.models import resolve_model
from ..plugins.registry import default_registry
from ..store.cache import content_digest


def content_id(spec: str, kind: str, registry=None) -> str:
    """How an input enters cache keys: by name, or for a local input by its content alone.

    Args:
        spec: a ``--model`` or corpus argument.
        kind: ``"model"`` or ``"corpus"``.
    Returns:
        ``"sha256:<hex>"`` of a local model folder's or text file's content (so a
        copy elsewhere has the same id, and a rewrite a new one); otherwise
        ``spec`` (bundled models are pinned by their GGUF sha256, registered corpora
        by their package versions, hub ids by id).
    """
    if kind == "model":
        source = resolve_model(spec)
        return f"sha256:{content_digest(source.location)}" if source.kind == "local" else spec
    registry = registry or default_registry()
    if spec not in registry.components["corpus"] and Path(spec).expanduser().is_file():
        return f"sha256:{content_digest(Path(spec).expanduser())}"
    return spec


def input_fingerprint(model: str, corpora: Iterable[str], registry=None) -> dict[str, str]:
    """Content ids of the *local* inputs of a run, by argument: ``{"model": "sha256:…", "<path>": "sha256:…"}``.

    Empty when nothing is local. Recorded in sweep folders, so a refusal can name
    the input whose content changed.
    """
    out = {}
    if (mid := content_id(model, "model")) != model:
        out["model"] = mid
    for name in dict.fromkeys(corpora):
        if (cid := content_id(name, "corpus", registry)) != name:
            out[name] = cid
    return out
