"""Evaluation of dense and pruned models: perplexity."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Perplexity:
    """Perplexity over non-overlapping windows.

    Attributes:
        perplexity: ``exp(mean token NLL)`` (dimensionless).
        nll: mean token negative log-likelihood in nats.
        tokens: predicted tokens (``windows * (T - 1)``).
        windows: number of windows of ``T`` tokens.
        seconds: wall time.
    """

    perplexity: float
    nll: float
    tokens: int
    windows: int
    seconds: float


@torch.inference_mode()
def perplexity(model: nn.Module, windows: torch.Tensor, *, batch_size: int = 1, progress: bool = True,
               desc: str = "perplexity") -> Perplexity:
    """Standard perplexity: mean token NLL (float32 logits) over windows, exponentiated.

    Each window ``[T]`` predicts its tokens 2..T from the preceding ones; no
    context is carried across windows.

    Args:
        model: causal LM returning ``.logits`` ``[B, T, V]``.
        windows: int64 ``[W, T]`` token ids (see :func:`lorp.data.evaluation_windows`).
        batch_size: windows per forward call.
    """
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    start = time.perf_counter()
    for lo in tqdm(range(0, windows.shape[0], batch_size), desc=desc, disable=not progress, unit="batch"):
        ids = windows[lo:lo + batch_size].to(device)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
        targets = ids[:, 1:]
        total_nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum").item()
        total_tokens += targets.numel()
    nll = total_nll / total_tokens
    return Perplexity(math.exp(nll), nll, total_tokens, int(windows.shape[0]), time.perf_counter() - start)


def perplexities(model: nn.Module, windows: dict[str, torch.Tensor], *, batch_size: int = 1,
                 progress: bool = True, tag: str = "") -> dict[str, dict]:
    """:func:`perplexity` on every evaluation corpus: ``{corpus: asdict(Perplexity)}``."""
    from dataclasses import asdict

    return {name: asdict(perplexity(model, w, batch_size=batch_size, progress=progress,
                                    desc=f"perplexity {tag} {name}".replace("  ", " ")))
            for name, w in windows.items()}


def _mean_nll(logits: torch.Tensor, ids: torch.Tensor) -> tuple[float, int]:
    logits = logits[:, :-1].float()
    targets = ids[:, 1:]
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum").item()
    return total, targets.numel()


class CalibrationNLL:
    """Mean token NLL (nats) of a calibration set with a set of blocks removed.

    ``nll(removed)`` is what SLEB-style strategies call many times
    (:attr:`lorp.AllocationRequest.nll`). Nothing is copied: blocks are removed
    temporarily (:func:`lorp.pruning.blocks_removed`).

    Prefix reuse: when ``removed`` is a previously seen *base* set plus one
    block ``x``, the hidden states entering ``x`` are those of the base model,
    so they are computed once per base and the forward starts at ``x``
    (``inputs_embeds``). Reuse is enabled only if a check at construction shows
    it reproduces the plain forward to 1e-5 (true for rotary-position models
    such as Llama, Gemma 3 and Qwen2; not for GPT-2's learned positions).

    Results are memoised per removed set, so greedy searches that share a
    prefix (SLEB at several budgets) pay for each set once.

    Attributes:
        forward_passes: full calibration forwards run.
        partial_passes: forwards that started mid-model from cached states.
    """

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, *, registry=None, reuse: bool = True):
        from .blocks import find_blocks

        self.model, self.ids, self.registry = model, input_ids, registry
        self.num_blocks = len(find_blocks(model, registry)[1])
        self.forward_passes = self.partial_passes = 0
        self._base: frozenset[int] | None = None
        self._states: dict[int, torch.Tensor] = {}
        self._last: frozenset[int] = frozenset()
        self._memo: dict[frozenset[int], float] = {}
        self.reuse = False
        if reuse and self.num_blocks > 2:
            probe = frozenset({1})
            plain = self._plain(probe)
            self._set_base(frozenset())
            self.reuse = abs(self._from_base(1) - plain) <= 1e-5 * max(1.0, abs(plain))

    @torch.inference_mode()
    def _plain(self, removed: frozenset[int]) -> float:
        from .pruning import blocks_removed

        self.forward_passes += 1
        with blocks_removed(self.model, sorted(removed), self.registry):
            total, count = _mean_nll(self.model(input_ids=self.ids, use_cache=False).logits, self.ids)
        return total / count

    @torch.inference_mode()
    def _set_base(self, base: frozenset[int]) -> None:
        """Run the base model once, keeping every kept block's input states."""
        from .blocks import find_blocks
        from .pruning import blocks_removed

        kept = [b for b in range(self.num_blocks) if b not in base]
        states: dict[int, torch.Tensor] = {}
        with blocks_removed(self.model, sorted(base), self.registry):
            _, blocks = find_blocks(self.model, self.registry)
            hooks = [blk.register_forward_pre_hook(
                lambda _m, args, kwargs, b=b: states.__setitem__(b, (kwargs.get("hidden_states", args[0] if args else None))),
                with_kwargs=True) for b, blk in zip(kept, blocks)]
            try:
                self.model.base_model(input_ids=self.ids, use_cache=False)
            finally:
                for h in hooks:
                    h.remove()
        self.forward_passes += 1
        self._base, self._states = base, states

    @torch.inference_mode()
    def _from_base(self, x: int) -> float:
        """NLL with ``base | {x}`` removed, starting from the base model's input to block ``x``."""
        from .pruning import blocks_removed

        self.partial_passes += 1
        skip = sorted(set(self._base) | {x} | set(range(x)))
        with blocks_removed(self.model, skip, self.registry):
            logits = self.model(inputs_embeds=self._states[x], use_cache=False).logits
        total, count = _mean_nll(logits, self.ids)
        return total / count

    def __call__(self, removed: frozenset[int]) -> float:
        """Mean token NLL with ``removed`` deleted; answers are memoised per set."""
        removed = frozenset(removed)
        if removed not in self._memo:
            self._memo[removed] = self._compute(removed)
        return self._memo[removed]

    def _compute(self, removed: frozenset[int]) -> float:
        try:
            if not self.reuse or not removed:
                return self._plain(removed)
            if self._base is None or not (self._base < removed and len(removed - self._base) == 1):
                common = removed & self._last
                self._set_base(common if len(removed - common) == 1 else removed - {max(removed)})
            (x,) = removed - self._base
            if all(b in removed for b in range(x, self.num_blocks)):
                return self._plain(removed)  # nothing left to run after x
            return self._from_base(x)
        finally:
            self._last = removed
