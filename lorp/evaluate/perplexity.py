"""Evaluation of dense and pruned models: perplexity."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from tqdm.auto import tqdm

from ..model.blocks import find_blocks, input_device
from ..model.forward import block_inputs, logits_from
from ..store.cache import cache_key
from ..store.hidden_states import load_hidden_states, save_hidden_states


@dataclass(frozen=True)
class Perplexity:
    """Perplexity over non-overlapping windows.

    Attributes:
        perplexity: ``exp(mean token NLL)`` (dimensionless).
        nll: mean token negative log-likelihood in nats.
        tokens: predicted tokens (``windows * (T - 1)``).
        windows: number of windows of ``T`` tokens.
        seconds: wall time.
        window_nll: summed token NLL (nats) of each window, in window order: ``windows`` floats over
            ``T - 1`` predicted tokens each (empty in records written before it was kept). It is what
            paired comparisons pair (:func:`lorp.evaluate.perplexity_uncertainty.paired_t_nll`). With
            ``batch_size`` 1 the entries are the very terms summed into ``nll``; with larger batches each
            is its window's own float32 sum, equal to the batch share up to float32 rounding.
    """

    perplexity: float
    nll: float
    tokens: int
    windows: int
    seconds: float
    window_nll: list[float] = field(default_factory=list)


def geometric_mean_perplexity(per_corpus: Mapping[str, Any]) -> float:
    """Geometric mean of perplexity over corpora: ``exp`` of the mean over corpora of the mean token NLL.

    The study's across-corpus figure. Unlike the arithmetic mean, it does not let the corpus
    of highest perplexity (PTB, for most models) set the result: a method that doubles
    perplexity on one corpus moves it by the same factor whatever that corpus's level.

    Args:
        per_corpus: ``{corpus: Perplexity}``, ``{corpus: {"perplexity": float}}`` or ``{corpus: float}``
            (perplexities, each > 0).
    Returns:
        the geometric mean (dimensionless, > 0).
    Raises:
        ValueError: no corpora, or a perplexity that is not a positive number.
    """
    values = [v.perplexity if isinstance(v, Perplexity) else v["perplexity"] if isinstance(v, Mapping) else v
              for v in per_corpus.values()]
    if not values or not all(isinstance(v, (int, float)) and v > 0 for v in values):
        raise ValueError(f"perplexities must be positive numbers, one per corpus, got {values}")
    return math.exp(sum(math.log(v) for v in values) / len(values))


@torch.inference_mode()
def perplexity(model: nn.Module, windows: torch.Tensor, *, batch_size: int = 1, progress: bool = True,
               desc: str = "perplexity") -> Perplexity:
    """Standard perplexity: mean token NLL (float32 logits) over windows, exponentiated.

    Each window ``[T]`` predicts its tokens 2..T from the preceding ones; no
    context is carried across windows.

    Args:
        model: causal LM returning ``.logits`` ``[B, T, V]``.
        windows: int64 ``[W, T]`` token ids (see :func:`lorp.model.data.evaluation_windows`).
        batch_size: windows per forward call.
    """
    batches = tqdm(range(0, windows.shape[0], batch_size), desc=desc, disable=not progress, unit="batch")
    return _windows_perplexity(windows, batch_size, input_device(model),
                               lambda _i, ids: model(input_ids=ids, use_cache=False).logits, batches)


def perplexities(model: nn.Module, windows: dict[str, torch.Tensor], *, batch_size: int = 1,
                 progress: bool = True, tag: str = "") -> dict[str, dict]:
    """:func:`perplexity` on every evaluation corpus: ``{corpus: asdict(Perplexity)}``."""
    from dataclasses import asdict

    return {name: asdict(perplexity(model, w, batch_size=batch_size, progress=progress,
                                    desc=f"perplexity {tag} {name}".replace("  ", " ")))
            for name, w in windows.items()}


def _mean_nll(logits: torch.Tensor, ids: torch.Tensor) -> tuple[float, int]:
    """Summed token NLL (nats, float32 logits) of ``ids`` ``[B, T]`` under ``logits`` ``[B, T', V]``, and the token count.

    ``T' = T``: every token from the second on is scored. ``T' < T``: the logits of the
    last ``T'`` positions (``logits_to_keep``), which score the last ``T' - 1`` tokens.
    """
    return _nll_sums(logits, ids, per_window=False)[:2]


def _nll_sums(logits: torch.Tensor, ids: torch.Tensor, *, per_window: bool = True) -> tuple[float, int, list[float]]:
    """Summed token NLL (nats, float32 logits) of ``ids`` ``[B, T]``, the token count, and the sum per row.

    ``logits`` ``[B, T', V]`` as in :func:`_mean_nll`. The total is one float32
    ``cross_entropy(reduction="sum")`` over the whole batch, as it always was. The
    per-row sums (``B`` floats; empty unless ``per_window``) are that total itself
    when ``B == 1``, else each row's own ``reduction="sum"``.
    """
    logits = logits[:, :-1].float()
    targets = ids[:, ids.shape[1] - logits.shape[1]:]
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum").item()
    rows: list[float] = []
    if per_window:
        rows = [total] if targets.shape[0] == 1 else [
            F.cross_entropy(logits[r], targets[r], reduction="sum").item() for r in range(targets.shape[0])]
    return total, targets.numel(), rows


def _windows_perplexity(windows: torch.Tensor, batch_size: int, device: torch.device,
                        logits_of: Callable[[int, torch.Tensor], torch.Tensor], batches: Iterable[int] | None = None
                        ) -> Perplexity:
    """Perplexity over ``windows`` ``[W, T]``: ``logits_of(batch_index, ids)`` gives each batch's logits.

    The total NLL is accumulated batch by batch exactly as before per-window NLL was
    kept, so ``perplexity`` and ``nll`` do not depend on it; ``window_nll`` holds ``W``
    per-window sums in window order.
    """
    start, total, count, per_window = time.perf_counter(), 0.0, 0, []
    for i, lo in enumerate(batches if batches is not None else range(0, windows.shape[0], batch_size)):
        ids = windows[lo:lo + batch_size].to(device)
        t, c, rows = _nll_sums(logits_of(i, ids), ids)
        total, count = total + t, count + c
        per_window.extend(rows)
    return Perplexity(math.exp(total / count), total / count, count, int(windows.shape[0]), time.perf_counter() - start,
                      per_window)


def _states_key(fields: Mapping[str, Any], windows: Mapping[str, torch.Tensor], batch_size: int,
                device: torch.device) -> str:
    """Cache key of a dense pass (:class:`SweepPerplexity`): the caller's model fields, each corpus's
    window token ids (sha256 of their bytes and shape), the batch size, the device type and torch's and
    transformers' versions (a new version may compute the same model's states in another order of float ops)."""
    digest = {name: hashlib.sha256(str(tuple(w.shape)).encode() + w.to(torch.int64).cpu().numpy().tobytes()).hexdigest()
              for name, w in windows.items()}
    return cache_key({"dense_states": 1, **dict(fields), "windows": digest, "batch_size": int(batch_size),
                      "device": device.type, "torch": torch.__version__,
                      "transformers": transformers.__version__})


class SweepPerplexity:
    """Perplexity of many pruned variants of one model, each restarted from the dense model's hidden states.

    A pruned variant that first removes block ``f`` computes exactly what the
    dense model computes up to block ``f``; so the dense evaluation pass keeps the
    hidden states entering the blocks in ``first_blocks`` and each variant runs
    only from there (:func:`logits_from`). Reuse is enabled only if a probe on the
    first window reproduces the plain forward to 1e-5 (rotary-position models;
    not GPT-2), and states are kept only within ``max_state_bytes`` (the blocks
    that save most first); variants without kept states run plainly.

    On-disk cache (``cache_fields``): the dense pass of the same windows is asked for by
    several workers and processes (the sweep's cells, the random floor, SLEB's check, the
    ablation notebook). With ``cache_fields`` (what identifies the model, e.g. its content id
    and dtype) the dense pass keeps the states entering *every* block within
    ``max_state_bytes`` (``first_blocks`` first, then from the top block down) and stores them with
    the dense perplexity (:mod:`lorp.store.hidden_states`, keyed by ``cache_fields``, the windows'
    token ids, the batch size and the device); a later scorer of the same key whose
    ``first_blocks`` are all stored loads them instead of running the dense model. Stored
    float32 states are bit-identical to recomputed ones, so every number is the same. Only a
    float32 model uses the cache.

    Attributes:
        dense: ``{corpus: asdict(Perplexity)}`` of the dense model (``seconds`` as first computed).
        reuse: whether reuse passed the probe.
        stored_blocks: blocks whose dense input states are kept.
        from_cache: whether the dense pass was loaded from the on-disk cache.
        cache_key: the key of its entry (``None``: no cache used).
    """

    def __init__(self, model: nn.Module, windows: dict[str, torch.Tensor], first_blocks: Iterable[int] = (), *,
                 batch_size: int = 1, registry=None, reuse: bool = True, max_state_bytes: int = 2 * 2**30,
                 cache_fields: Mapping[str, Any] | None = None):
        from dataclasses import asdict

        self.model, self.windows, self.batch_size, self.registry = model, windows, batch_size, registry
        num_blocks = self._num_blocks = len(find_blocks(model, registry)[1])
        config = getattr(model.config, "text_config", None) or model.config
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd")
        param = next(model.parameters())
        per_block = sum(w.numel() for w in windows.values()) * hidden * param.element_size()
        room = max(0, max_state_bytes // max(per_block, 1))
        wanted = sorted({b for b in first_blocks if 0 < b < num_blocks} if reuse else set(), reverse=True)[:room]
        key = (_states_key(cache_fields, windows, batch_size, input_device(model))
               if cache_fields is not None and param.dtype == torch.float32 else None)
        self.from_cache, self.cache_key = False, key
        if key is not None and self._load(key, wanted, reuse):
            return
        extra = [b for b in range(num_blocks - 1, 0, -1) if b not in wanted] if key is not None and reuse else []
        self.stored_blocks = sorted((wanted + extra)[:room])
        self._states: dict[str, list[dict[int, torch.Tensor]]] = {}
        self.dense = {}
        for name, w in windows.items():
            kept: list[dict[int, torch.Tensor]] = []

            def dense_logits(_i: int, ids: torch.Tensor, kept: list = kept) -> torch.Tensor:
                states, logits = block_inputs(model, ids, self.stored_blocks, registry=registry)
                kept.append(states)
                return logits

            self.dense[name] = asdict(_windows_perplexity(w, batch_size, input_device(model), dense_logits))
            self._states[name] = kept
        self.reuse, probed = False, bool(self.stored_blocks)
        if probed:
            name, f = next(iter(windows)), self.stored_blocks[0]
            ids = windows[name][: batch_size].to(input_device(model))
            plain = _mean_nll(block_inputs(model, ids, (), removed={f}, registry=registry)[1], ids)[0]
            fast = _mean_nll(logits_from(model, self._states[name][0][f], f, {f}, registry), ids)[0]
            self.reuse = abs(fast - plain) <= 1e-5 * max(1.0, abs(plain))
        if not self.reuse:
            self._states, self.stored_blocks = {}, []
        if key is not None:
            save_hidden_states(key, {n: [{b: t.detach().cpu().numpy() for b, t in batch.items()} for batch in kept]
                                     for n, kept in self._states.items()} if self.reuse else {},
                               {"dense": self.dense, "reuse": self.reuse, "stored_blocks": self.stored_blocks,
                                "probed": probed})

    def _load(self, key: str, wanted: list[int], reuse: bool) -> bool:
        """Take the dense pass from the cache entry ``key`` when it serves this scorer: same corpora, and every
        block of ``wanted`` stored (or reuse off here, or the entry's probe found reuse inexact)."""
        hit = load_hidden_states(key)
        if hit is None:
            return False
        states, meta = hit
        if set(meta.get("dense", {})) != set(self.windows):
            return False
        stored = [int(b) for b in meta.get("stored_blocks", [])]
        probed_inexact = meta.get("probed") and not meta.get("reuse")
        if reuse and not probed_inexact and not set(wanted) <= set(stored):
            return False
        device = input_device(self.model)
        self.dense = {name: dict(meta["dense"][name]) for name in self.windows}
        self.reuse = bool(reuse and meta.get("reuse") and stored)
        self.stored_blocks = stored if self.reuse else []
        self._states = ({name: [{b: torch.from_numpy(a).to(device) for b, a in batch.items()} for batch in states[name]]
                         for name in self.windows} if self.reuse else {})
        self.from_cache = True
        return True

    @torch.inference_mode()
    def __call__(self, removed: Iterable[int]) -> dict[str, dict]:
        """``{corpus: asdict(Perplexity)}`` with ``removed`` blocks deleted (same numbers as :func:`perplexities`)."""
        from dataclasses import asdict

        removed = set(removed)
        first = min(removed) if removed else None
        restart = first in self.stored_blocks and not set(range(first, self._num_blocks)) <= removed
        out = {}
        for name, w in self.windows.items():
            def variant_logits(i: int, ids: torch.Tensor, name: str = name) -> torch.Tensor:
                if restart:
                    return logits_from(self.model, self._states[name][i][first], first, removed, self.registry)
                return block_inputs(self.model, ids, (), removed=removed, registry=self.registry)[1]

            out[name] = asdict(_windows_perplexity(w, self.batch_size, input_device(self.model), variant_logits))
        return out


class CalibrationNLL:
    """Mean token NLL (nats) of a calibration set with a set of blocks removed.

    ``nll(removed)`` is what SLEB-style strategies call many times
    (:attr:`lorp.AllocationRequest.nll`). Nothing is copied: blocks are removed
    temporarily (:func:`lorp.model.pruning.blocks_removed`).

    Prefix reuse: when ``removed`` is a previously seen *base* set plus one
    block ``x``, the hidden states entering ``x`` are those of the base model,
    so they are computed once per base and the forward starts at ``x``
    (``inputs_embeds``). Reuse is enabled only if a check at construction shows
    it reproduces the plain forward to 1e-5 (true for rotary-position models
    such as Llama, Gemma 3 and Qwen2; not for GPT-2's learned positions).

    Results are memoised per removed set, so greedy searches that share a
    prefix (SLEB at several budgets) pay for each set once.

    ``prefix="dense"`` suits unrelated candidate sets (a selector scoring a few
    structured candidates): the dense states entering every block are kept from the
    reuse probe's pass, and each set runs from those entering its first removed
    block (exact for the same reason), one partial pass per set instead of a full
    pass to re-base plus a partial one. ``"greedy"`` (default) is SLEB's path above.

    ``scored_tokens``: score only the last that many tokens of each sequence (the
    whole sequence is still their context); the LM head then runs on those
    positions only (``logits_to_keep``), which is most of a candidate's cost on
    large-vocabulary models. ``None``: every token from the second on.

    Attributes:
        forward_passes: full calibration forwards run.
        partial_passes: forwards that started mid-model from cached states.
    """

    def __init__(self, model: nn.Module, input_ids: torch.Tensor, *, registry=None, reuse: bool = True,
                 scored_tokens: int | None = None, prefix: str = "greedy"):
        if scored_tokens is not None and not 1 <= scored_tokens < input_ids.shape[1]:
            raise ValueError(f"scored_tokens must be in 1..{input_ids.shape[1] - 1} (or None for all), got {scored_tokens}")
        if prefix not in ("greedy", "dense"):
            raise ValueError(f"prefix must be 'greedy' or 'dense', got {prefix!r}")
        self.prefix = prefix
        self.model, self.ids, self.registry = model, input_ids, registry
        self.keep = scored_tokens + 1 if scored_tokens else None
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
        self._dense = self._states if self.reuse and prefix == "dense" else None

    def _plain(self, removed: frozenset[int]) -> float:
        self.forward_passes += 1
        total, count = _mean_nll(block_inputs(self.model, self.ids, (), removed=removed, registry=self.registry,
                                              logits_to_keep=self.keep)[1], self.ids)
        return total / count

    def _set_base(self, base: frozenset[int]) -> None:
        """Run the base model once, keeping every kept block's input states.

        When the base set's own NLL is not memoised yet, the same pass scores it (LM head
        on the scored positions only); otherwise the LM head runs on one position. In a
        greedy search only the first base, the dense model (built by the reuse probe at
        construction), is unscored: every later base was a candidate the step before. So
        the dense NLL ``self(frozenset())`` costs no forward pass of its own.
        """
        score = base not in self._memo
        states, logits = block_inputs(self.model, self.ids, range(self.num_blocks), removed=base,
                                      registry=self.registry, logits_to_keep=self.keep if score else 1)
        self.forward_passes += 1
        self._states, self._base = states, base
        if score:
            total, count = _mean_nll(logits, self.ids)
            self._memo[base] = total / count

    def _from_base(self, x: int) -> float:
        """NLL with ``base | {x}`` removed, starting from the base model's input to block ``x``."""
        self.partial_passes += 1
        logits = logits_from(self.model, self._states[x], x, set(self._base) | {x}, self.registry, self.keep)
        total, count = _mean_nll(logits, self.ids)
        return total / count

    def __call__(self, removed: frozenset[int]) -> float:
        """Mean token NLL with ``removed`` deleted; answers are memoised per set."""
        removed = frozenset(removed)
        if removed not in self._memo:
            self._memo[removed] = self._compute(removed)
        return self._memo[removed]

    def changed_from(self, removed: frozenset[int], start: int) -> float:
        """Mean token NLL with ``removed`` deleted, for the model as it is now, whose weights may differ from
        those at construction in blocks ``start`` and after only (a healer's folded maps); not memoised.

        Runs from the dense states entering block ``start`` (kept with ``prefix="dense"``), else plainly.
        Exact for the same reason as the prefix reuse: the blocks before ``start`` are unchanged and kept.

        Raises:
            ValueError: ``start`` is after the first removed block or outside ``0..N-1``.
        """
        removed = frozenset(int(b) for b in removed)
        if not 0 <= start < self.num_blocks or (removed and start > min(removed)):
            raise ValueError(f"start must be a block at or before the first removed block ({sorted(removed)}), "
                             f"got {start}")
        if self._dense is None or start == 0:
            return self._plain(removed)
        self.partial_passes += 1
        total, count = _mean_nll(logits_from(self.model, self._dense[start], start, removed, self.registry,
                                             self.keep), self.ids)
        return total / count

    def _compute(self, removed: frozenset[int]) -> float:
        try:
            if not self.reuse or not removed:
                return self._plain(removed)
            if self._dense is not None:  # prefix="dense": from the dense states entering the first removed block
                x = min(removed)
                if all(b in removed for b in range(x, self.num_blocks)):
                    return self._plain(removed)
                self.partial_passes += 1
                total, count = _mean_nll(logits_from(self.model, self._dense[x], x, removed, self.registry,
                                                     self.keep), self.ids)
                return total / count
            if self._base is None or not (self._base < removed and len(removed - self._base) == 1):
                common = removed & self._last
                self._set_base(common if len(removed - common) == 1 else removed - {max(removed)})
            (x,) = removed - self._base
            if all(b in removed for b in range(x, self.num_blocks)):
                return self._plain(removed)  # nothing left to run after x
            return self._from_base(x)
        finally:
            self._last = removed


def single_removal_nll(nll: CalibrationNLL, blocks: Iterable[int] | None = None) -> tuple[float, dict[int, float]]:
    """The single-block removal profile: dense calibration NLL and the NLL with each one block removed.

    ``nll(frozenset({b}))`` for every block ``b`` (default ``0..N-1``), on the same
    :class:`CalibrationNLL` that SLEB uses, so its memo answers the sets SLEB's first
    greedy step already scored (every unprotected block) at no cost; the others cost
    one partial pass each from the dense states entering ``b`` (a full pass for the
    last block, and every one without prefix reuse). The dense NLL comes from the
    reuse probe's base pass (see :meth:`CalibrationNLL._set_base`), or one full pass
    without reuse.

    Args:
        nll: the scorer (its calibration text fixes what the numbers mean).
        blocks: block indices to profile.
    Returns:
        ``(dense, {block: nll})``: mean token NLL in nats (scored tokens of ``nll.ids``).
    Raises:
        ValueError: a block outside ``0..N-1``.
    """
    blocks = range(nll.num_blocks) if blocks is None else [int(b) for b in blocks]
    bad = [b for b in blocks if not 0 <= b < nll.num_blocks]
    if bad:
        raise ValueError(f"blocks {bad} do not exist: the model has {nll.num_blocks} blocks (0..{nll.num_blocks - 1})")
    profile = {b: nll(frozenset({b})) for b in blocks}
    return nll(frozenset()), profile
