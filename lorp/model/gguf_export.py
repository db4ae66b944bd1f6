"""A pruned model as a GGUF file: the source GGUF's kept blocks, bit for bit, renumbered (issue 45, first step).

Every bundled model *is* a GGUF file (:mod:`lorp.model.models`), so a pruned model can keep the quantised
tensors of its kept blocks exactly as they are. :func:`export_pruned_gguf` copies the source file with:

* ``{arch}.block_count`` set to the kept blocks, and every per-layer metadata array (an array of
  ``block_count`` entries under ``{arch}.``) subset by the kept indices, not cut at the tail;
* the kept blocks' tensors (``blk.<i>.*``) copied with their type and bytes unchanged, renumbered ``blk.0 …``;
  every other tensor (embeddings, output norm, head) as in the source;
* ``general.lorp.*`` entries saying the file was pruned by lorp, which blocks were removed, and from which
  source (its sha256).

Gemma 3's GGUF has no per-layer attention-type array: llama.cpp and transformers derive sliding-window or
global attention from the block index (every 6th block global). A removal that moves a kept block to an
index of the other type would therefore change that block's attention, so it is refused, naming the blocks.
Healed tensors (which need new data) are the next step of issue 45.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import gguf

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


def export_pruned_gguf(source: str | os.PathLike, target: str | os.PathLike, removed: Iterable[int], *,
                       note: Mapping[str, str] | None = None) -> Path:
    """Write the GGUF of ``source`` with the blocks ``removed`` deleted; returns ``target``.

    Args:
        source: a GGUF model file (e.g. a bundled model's, ``<cache>/gguf/<key>.gguf``).
        target: the file to write (replaced atomically: a failed export leaves no half-written file).
        removed: 0-based indices of the blocks to delete.
        note: extra ``general.lorp.<key>`` strings (e.g. ``{"healer": "none", "method": "shortgpt"}``).
    Raises:
        ConfigError: ``source`` is not a GGUF model with ``{arch}.block_count``; a removed index is out of
            range, or every block is removed; a kept block of an index-patterned architecture (Gemma 3)
            would change attention type.
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
    tensors = []
    for t in reader.tensors:
        m = BLOCK_TENSOR.match(t.name)
        if m is None:
            tensors.append((t.name, t))
        elif int(m.group(1)) in new_index:
            tensors.append((f"blk.{new_index[int(m.group(1))]}.{m.group(2)}", t))
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
        for name, t in tensors:
            writer.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _name, t in tensors:
            writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


__all__ = ["BLOCK_TENSOR", "INDEX_PATTERNED_ATTENTION", "attention_type", "export_pruned_gguf"]
