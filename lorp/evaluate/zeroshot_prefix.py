"""Zero-shot accuracy of pruned variants restarted from the dense model's hidden states.

A pruned variant whose first removed block is ``f`` computes, on the same input, exactly
what the dense model computes up to block ``f``. lm-eval scores a task's requests in the
same padded batches whatever the model (it orders them by length alone), so the dense
zero-shot pass can keep, per batch, the hidden states entering chosen blocks
(:meth:`DensePrefixStates.record`), and a variant's zero-shot pass runs only the kept
blocks from ``f`` on (:meth:`DensePrefixStates.replay`): the perplexity stage's reuse
(:class:`lorp.evaluate.perplexity.SweepPerplexity`) applied to zero-shot accuracy. Same
log-likelihoods to float32 rounding (the blocks before ``f`` are not run again; tested to
1e-5), hence the same accuracies.

Both are handed to :func:`lorp.evaluate.zeroshot.zero_shot` as its ``forward``: a callable
``(input_ids [B, T], logits_to_keep | None) -> logits [B, T', V]`` that replaces the model
call of lm-eval's ``HFLM`` (:class:`lorp.evaluate.hflm.TrimmedHFLM`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..model.blocks import find_blocks
from ..model.forward import block_inputs, logits_from

#: ``(input_ids [B, T], logits_to_keep or None) -> logits [B, T', V]``: what lm-eval's model call becomes.
Forward = Callable[[torch.Tensor, "int | None"], torch.Tensor]


def batch_key(ids: torch.Tensor) -> tuple:
    """A key for a batch of token ids ``[B, T]`` (int64): its shape and a digest of its values."""
    data = ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
    return tuple(ids.shape), hashlib.blake2b(data, digest_size=16).digest()


class DensePrefixStates:
    """The dense model's zero-shot forwards, keeping the hidden states entering ``blocks``, per padded batch.

    Use :meth:`record` as the dense zero-shot pass's ``forward``; then :meth:`replay` gives a pruned
    variant's ``forward``. The model must stay unchanged in between in the blocks before each variant's
    restart (healed weights from the restart block on are fine: they run again).

    Reuse holds for models whose positions are applied inside the blocks (rotary: Llama, Gemma 3, Qwen2);
    the first recorded batch checks it (a restart from the states entering the highest kept block must give
    the plain pruned forward's logits to 1e-5), and without it nothing is kept and :meth:`replay` runs
    plainly. States are kept within ``max_bytes``: when a batch would pass it, the lowest kept block (the
    one that saves least) is dropped everywhere.

    Args:
        model: the causal LM, every block present.
        blocks: original block indices (``1..N-1``; others are ignored) whose input states to keep:
            each variant's first removed block.
        registry: plugin registry (block-finding adapters).
        max_bytes: bound on the kept states (float32: ``tokens × hidden × 4`` bytes per block).
    Attributes:
        blocks: the blocks still kept (sorted).
        reuse: ``None`` until the first batch is recorded, then whether the check passed.
        restarted, plain: replayed model calls that restarted / ran plainly (counters).
    """

    def __init__(self, model: nn.Module, blocks: Iterable[int], *, registry=None, max_bytes: int = 2 * 2**30):
        self.model, self.registry, self.max_bytes = model, registry, int(max_bytes)
        self.num_blocks = len(find_blocks(model, registry)[1])
        self.blocks = sorted({int(b) for b in blocks if 0 < int(b) < self.num_blocks})
        self.reuse: bool | None = None
        self.restarted = self.plain = 0
        self._states: dict[tuple, dict[int, torch.Tensor]] = {}
        self._bytes = 0

    @property
    def kept_bytes(self) -> int:
        """Bytes of the states kept now."""
        return self._bytes

    @torch.inference_mode()
    def record(self, ids: torch.Tensor, logits_to_keep: int | None) -> torch.Tensor:
        """The dense model's logits ``[B, T', V]`` for ``ids`` ``[B, T]``, keeping the states entering :attr:`blocks`."""
        states, logits = block_inputs(self.model, ids, self.blocks if self.reuse is not False else (),
                                      registry=self.registry, logits_to_keep=logits_to_keep)
        if self.reuse is None and self.blocks:
            self.reuse = self._check(ids, states[self.blocks[-1]], self.blocks[-1], logits_to_keep)
        if not self.reuse:
            return logits
        self._states[batch_key(ids)] = {b: s for b, s in states.items() if b in self.blocks}
        self._bytes += sum(s.numel() * s.element_size() for s in states.values() if s is not None)
        while self._bytes > self.max_bytes and self.blocks:
            self._drop(self.blocks[0])
        return logits

    def _check(self, ids: torch.Tensor, states: torch.Tensor, f: int, keep: int | None) -> bool:
        plain = block_inputs(self.model, ids, (), removed={f}, registry=self.registry, logits_to_keep=keep)[1]
        fast = logits_from(self.model, states, f, {f}, self.registry, keep)
        return bool(torch.allclose(fast, plain, rtol=1e-5, atol=1e-5))

    def _drop(self, block: int) -> None:
        self.blocks.remove(block)
        for kept in self._states.values():
            s = kept.pop(block, None)
            if s is not None:
                self._bytes -= s.numel() * s.element_size()

    def start_for(self, removed: Iterable[int], changed_from: int | None = None) -> int | None:
        """The block a variant restarts from: the highest kept block at or before its first removed one (and
        at or before ``changed_from``, the first block whose weights differ from the dense model's); ``None``
        when none is kept, reuse failed, or nothing would run after it."""
        removed = {int(b) for b in removed}
        if not self.reuse or not removed:
            return None
        limit = min(removed) if changed_from is None else min(min(removed), int(changed_from))
        start = max((b for b in self.blocks if b <= limit), default=None)
        if start is None or set(range(start, self.num_blocks)) <= removed:
            return None
        return start

    def replay(self, removed: Iterable[int], changed_from: int | None = None) -> Forward:
        """A pruned variant's ``forward``: logits of the model with ``removed`` deleted, from the kept dense states.

        The model must hold every block (nothing removed around the call): blocks are removed around each
        model call. A batch that was not recorded, or a variant without a restart block
        (:meth:`start_for`), runs the plain pruned forward.

        Args:
            removed: original indices of the deleted blocks.
            changed_from: the first block whose weights now differ from the dense model's (a healer's
                folded maps); ``None`` when none do.
        """
        removed = sorted({int(b) for b in removed})
        start = self.start_for(removed, changed_from)

        @torch.inference_mode()
        def forward(ids: torch.Tensor, logits_to_keep: int | None) -> torch.Tensor:
            states = self._states.get(batch_key(ids), {}).get(start) if start is not None else None
            if states is None:
                self.plain += 1
                return block_inputs(self.model, ids, (), removed=removed, registry=self.registry,
                                    logits_to_keep=logits_to_keep)[1]
            self.restarted += 1
            return logits_from(self.model, states, start, removed, self.registry, logits_to_keep)

        return forward


__all__ = ["DensePrefixStates", "Forward", "batch_key"]
