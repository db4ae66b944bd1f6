"""A pruned model as a GGUF file: the source GGUF's kept blocks, bit for bit, renumbered (issue 45, first step).

Every bundled model *is* a GGUF file (:mod:`lorp.model.models`), so a pruned model can keep the quantised
tensors of its kept blocks exactly as they are. :func:`export_pruned_gguf` copies the source file with:

* ``{arch}.block_count`` set to the kept blocks, and every per-layer metadata array (an array of
  ``block_count`` entries under ``{arch}.``) subset by the kept indices, not cut at the tail;
* the kept blocks' tensors (``blk.<i>.*``) copied with their type and bytes unchanged, renumbered ``blk.0 …``;
  every other tensor (embeddings, output norm, head) as in the source;
* ``general.lorp.*`` entries saying the file was pruned by lorp, which blocks were removed, and from which
  source (its sha256).

Healed tensors (``replaced``: what a healer changed, e.g. ``ffn_down`` and, on Gemma 3, ``post_ffw_norm``) are
the only new data. They are given in the model's Hugging Face layout and named by their Hugging Face parameter
(:func:`gguf_tensor_name` maps the name with gguf-py's own table; :func:`to_gguf_layout` applies the storage
conventions of llama.cpp's converter that transformers' GGUF loader undoes, e.g. Gemma's norm gains stored as
``1 + w``). A 2-D healed tensor is written in ``healed_type`` (F16 by default, Q8_0 through gguf-py's quantiser,
or F32), a 1-D one (a norm gain) in F32, as llama.cpp's converter keeps them.

Gemma 3's GGUF has no per-layer attention-type array, and llama.cpp's Gemma 3 loader reads none: llama.cpp and
transformers derive sliding-window or global attention from the block index (every 6th block global). A removal
that moves a kept block to an index of the other type would therefore change that block's attention (and its
RoPE base), so it is refused, naming the blocks.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import gguf
import numpy as np

from ..errors import ConfigError
from ..store.cache import file_sha256

#: Tensor names of a block: ``blk.<index>.<rest>``.
BLOCK_TENSOR = re.compile(r"^blk\.(\d+)\.(.+)$")
#: Architectures whose attention type follows the block index: ``{arch: period}``, the last block of each period
#: global, the others sliding-window (llama.cpp's ``set_swa_pattern``; transformers' ``sliding_window_pattern``).
INDEX_PATTERNED_ATTENTION = {"gemma3": 6}


def attention_type(arch: str, index: int) -> str | None:
    """``"global"`` or ``"sliding"`` for block ``index`` of an index-patterned architecture, else ``None``."""
    period = INDEX_PATTERNED_ATTENTION.get(arch)
    if period is None:
        return None
    return "global" if index % period == period - 1 else "sliding"


#: Types a healed 2-D tensor can be written in; 1-D tensors (norm gains) are always F32.
HEALED_TYPES = ("F16", "Q8_0", "F32")
#: The default, chosen by the perplexity cost measured in ``benchmarks/gguf_healed_types.py`` (docs/usage.md).
DEFAULT_HEALED_TYPE = "F16"
#: Architectures whose GGUF stores RMSNorm gains as ``1 + w`` (llama.cpp's converter; transformers subtracts 1).
GAIN_PLUS_ONE = frozenset({"gemma", "gemma2", "gemma3"})
#: Architectures whose GGUF permutes the query and key projections (llama.cpp's converter, for its RoPE layout).
PERMUTED_QK = frozenset({"llama"})
#: Architectures whose healed tensors lorp knows how to lay out (the bundled models').
HEALED_LAYOUT_KNOWN = frozenset({"llama", "qwen2", "gemma3"})


def gguf_tensor_name(arch: str, hf_name: str, block_count: int) -> str:
    """The GGUF tensor name of Hugging Face parameter ``hf_name`` (e.g. ``model.layers.3.mlp.down_proj.weight`` ->
    ``blk.3.ffn_down.weight``), by gguf-py's tensor-name table for ``arch`` with ``block_count`` blocks.

    Raises:
        ConfigError: ``arch`` is unknown to gguf-py, or ``hf_name`` has no GGUF name.
    """
    archs = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in archs:
        raise ConfigError(f"gguf-py knows no architecture {arch!r}")
    name = gguf.get_tensor_name_map(archs[arch], block_count).get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise ConfigError(f"parameter {hf_name!r} has no GGUF tensor name for {arch}")
    return name


def to_gguf_layout(arch: str, name: str, weights: np.ndarray) -> np.ndarray:
    """A healed tensor in the model's Hugging Face layout -> float32 in the GGUF's: Gemma's norm gains ``w`` are
    stored as ``1 + w``; every other tensor lorp writes is stored as it is.

    Args:
        arch: the GGUF architecture (``general.architecture``).
        name: the GGUF tensor name (``blk.3.ffn_down.weight``).
        weights: the tensor, any float dtype, in the Hugging Face shape (``[out, in]`` for a projection).
    Raises:
        ConfigError: an architecture whose layout lorp does not know, or a llama query/key projection (stored
            permuted; no builtin healer changes one).
    """
    if arch not in HEALED_LAYOUT_KNOWN:
        raise ConfigError(f"lorp writes healed tensors for {', '.join(sorted(HEALED_LAYOUT_KNOWN))} GGUFs, not {arch}; "
                          "export the unhealed model, or heal with 'none'")
    if arch in PERMUTED_QK and re.search(r"\.attn_[qk]\.", name):
        raise ConfigError(f"{name} is stored permuted in {arch} GGUFs and lorp does not write it; a healer that "
                          "changes query or key projections cannot be exported to GGUF")
    out = np.asarray(weights, dtype=np.float32)
    if arch in GAIN_PLUS_ONE and name.endswith("norm.weight"):
        out = out + np.float32(1.0)
    return np.ascontiguousarray(out)


def encode_tensor(weights: np.ndarray, type_name: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """``(data, type)`` to write for a float32 tensor: 1-D in F32; 2-D in ``type_name`` (F16, Q8_0 through gguf-py's
    quantiser, or F32).

    Raises:
        ConfigError: ``type_name`` not in :data:`HEALED_TYPES`, or a Q8_0 row length not a multiple of 32.
    """
    if type_name not in HEALED_TYPES:
        raise ConfigError(f"healed tensors are written as one of {', '.join(HEALED_TYPES)}, not {type_name!r}")
    qtype = gguf.GGMLQuantizationType[type_name] if weights.ndim > 1 else gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(weights, dtype=np.float32), qtype
    if qtype == gguf.GGMLQuantizationType.F16:
        return np.ascontiguousarray(weights, dtype=np.float16), qtype
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if weights.shape[-1] % block:
        raise ConfigError(f"a {type_name} tensor needs rows of a multiple of {block} values, got {weights.shape}; "
                          "write it as F16")
    return gguf.quants.quantize(np.ascontiguousarray(weights, dtype=np.float32), qtype), qtype


def logical_shape(tensor) -> tuple[int, ...]:
    """The numpy shape of a GGUF reader tensor's values (``[rows, columns]``), whatever its storage type."""
    return tuple(int(x) for x in reversed(tensor.shape.tolist()))


def export_pruned_gguf(source: str | os.PathLike, target: str | os.PathLike, removed: Iterable[int], *,
                       note: Mapping[str, str] | None = None, replaced: Mapping[str, np.ndarray] | None = None,
                       healed_type: str = DEFAULT_HEALED_TYPE) -> Path:
    """Write the GGUF of ``source`` with the blocks ``removed`` deleted; returns ``target``.

    Args:
        source: a GGUF model file (e.g. a bundled model's, ``<cache>/gguf/<key>.gguf``).
        target: the file to write (replaced atomically: a failed export leaves no half-written file).
        removed: 0-based indices of the blocks to delete.
        note: extra ``general.lorp.<key>`` strings (e.g. ``{"healer": "none", "method": "shortgpt"}``).
        replaced: healed tensors, ``{GGUF name in the source's numbering: float values in the GGUF layout}``
            (:func:`gguf_tensor_name`, :func:`to_gguf_layout`), each a tensor of a kept block or a non-block
            tensor, of its source tensor's shape; written in ``healed_type`` (:func:`encode_tensor`) and listed
            under ``general.lorp.healed_tensors`` (new names) and ``general.lorp.healed_type``.
        healed_type: one of :data:`HEALED_TYPES`.
    Raises:
        ConfigError: ``source`` is not a GGUF model with ``{arch}.block_count``; a removed index is out of
            range, or every block is removed; a kept block of an index-patterned architecture (Gemma 3)
            would change attention type; a replaced tensor is not in the source, belongs to a removed block,
            or has another shape; ``healed_type`` is unknown.
    """
    source, target = Path(source), Path(target)
    try:
        reader = gguf.GGUFReader(source)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{source} is not a readable GGUF file ({exc}); GGUF export starts from a GGUF model "
                          "(every bundled model is one; converting other checkpoints is llama.cpp's job)") from None
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    arch = arch_field.contents() if arch_field else None
    count_field = reader.get_field(f"{arch}.block_count") if arch else None
    if count_field is None:
        raise ConfigError(f"{source} names no architecture with a block count ({arch!r}); it is not a GGUF model")
    n = int(count_field.contents())
    gone = sorted({int(b) for b in removed})
    if any(not 0 <= b < n for b in gone) or len(gone) >= n:
        raise ConfigError(f"removed blocks {gone} must be distinct indices in 0..{n - 1}, leaving at least one block")
    kept = [b for b in range(n) if b not in set(gone)]
    moved = [f"block {old} ({attention_type(arch, old)}) would become block {new} ({attention_type(arch, new)})"
             for new, old in enumerate(kept) if attention_type(arch, old) != attention_type(arch, new)]
    if moved:
        raise ConfigError(f"{arch} derives each block's attention type from its index, and removing {gone} moves "
                          f"kept blocks across it: {'; '.join(moved[:3])}{' …' if len(moved) > 3 else ''}; "
                          "llama.cpp and transformers would run them with the other attention")
    new_index = {old: new for new, old in enumerate(kept)}
    replaced = dict(replaced or {})
    by_name = {t.name: t for t in reader.tensors}
    for name, values in replaced.items():
        m = BLOCK_TENSOR.match(name)
        if name not in by_name:
            raise ConfigError(f"healed tensor {name} is not in {source}")
        if m is not None and int(m.group(1)) not in new_index:
            raise ConfigError(f"healed tensor {name} belongs to removed block {m.group(1)}")
        if tuple(np.shape(values)) != logical_shape(by_name[name]):
            raise ConfigError(f"healed tensor {name} has shape {tuple(np.shape(values))}, the source's is "
                              f"{logical_shape(by_name[name])}")
    encoded = {name: encode_tensor(np.asarray(values, dtype=np.float32), healed_type)
               for name, values in replaced.items()}
    tensors = []  # (new name, source tensor, (data, type) or None when copied as it is)
    for t in reader.tensors:
        m = BLOCK_TENSOR.match(t.name)
        if m is None:
            tensors.append((t.name, t, encoded.get(t.name)))
        elif int(m.group(1)) in new_index:
            tensors.append((f"blk.{new_index[int(m.group(1))]}.{m.group(2)}", t, encoded.get(t.name)))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch, endianess=reader.endianess)
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            value = field.contents()
            if field.name == f"{arch}.block_count":
                value = len(kept)
            elif sub is not None and field.name.startswith(f"{arch}.") and len(value) == n:
                value = [value[b] for b in kept]  # a per-layer array: the kept blocks' entries
            writer.add_key_value(field.name, value, kind, sub_type=sub)
        writer.add_key_value("general.lorp.pruned", True, gguf.GGUFValueType.BOOL)
        writer.add_key_value("general.lorp.removed_blocks", gone, gguf.GGUFValueType.ARRAY,
                             sub_type=gguf.GGUFValueType.UINT32)
        writer.add_key_value("general.lorp.source_block_count", n, gguf.GGUFValueType.UINT32)
        writer.add_key_value("general.lorp.source_sha256", file_sha256(source), gguf.GGUFValueType.STRING)
        for key, value in (note or {}).items():
            writer.add_key_value(f"general.lorp.{key}", str(value), gguf.GGUFValueType.STRING)
        if replaced:
            writer.add_key_value("general.lorp.healed_tensors", [name for name, _t, new in tensors if new is not None],
                                 gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING)
            writer.add_key_value("general.lorp.healed_type", healed_type, gguf.GGUFValueType.STRING)
        for name, t, new in tensors:
            data, qtype = new if new is not None else (t.data, t.tensor_type)
            writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _name, t, new in tensors:
            writer.write_tensor_data(new[0] if new is not None else t.data, tensor_endianess=reader.endianess)
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


__all__ = ["BLOCK_TENSOR", "DEFAULT_HEALED_TYPE", "HEALED_TYPES", "INDEX_PATTERNED_ATTENTION", "attention_type",
           "encode_tensor", "export_pruned_gguf", "gguf_tensor_name", "logical_shape", "to_gguf_layout"]
