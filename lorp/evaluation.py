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
