"""Stage 1: the calibration pass (LoRP eqs. 3-4).

Forward pre-hooks on every decoder block read the block's input hidden states
(and a forward hook the last block's output); after each batch the states are
stacked into ``[N + 1, B, T, H]`` and fed to every requested similarity
accumulator, then dropped. Memory is bounded by one batch, whatever the number
of calibration sequences.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, PluginError
from ..model.blocks import find_blocks, input_device
from ..plugins.components import SimilarityMetric
from ..plugins.guard import plugin_code


@dataclass(frozen=True)
class CalibrationResult:
    """Matrices accumulated over one calibration pass.

    Attributes:
        matrices: metric name -> float64 ``[N, N]``.
        num_blocks: N.
        num_sequences: calibration sequences seen.
        num_tokens: real (unmasked) tokens seen.
        seconds: wall time of the pass.
        forward_passes: number of batched forward calls.
    """

    matrices: dict[str, np.ndarray]
    num_blocks: int
    num_sequences: int
    num_tokens: int
    seconds: float
    forward_passes: int


def _hidden_from(args: tuple, kwargs: dict) -> torch.Tensor:
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    raise RuntimeError("cannot find the hidden states among a block's inputs")


def _last_tokens(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N+1, B, T, H]`` -> ``[N+1, B, 1, H]`` holding each sequence's last real token."""
    last = mask.shape[1] - 1 - mask.flip(1).int().argmax(dim=1)  # [B]
    idx = last.view(1, -1, 1, 1).expand(states.shape[0], -1, 1, states.shape[-1])
    return states.gather(2, idx)


@torch.inference_mode()
def capture_similarities(
    model: nn.Module,
    input_ids: torch.Tensor,
    metrics: Mapping[str, SimilarityMetric],
    *,
    attention_mask: torch.Tensor | None = None,
    batch_size: int = 1,
    progress: bool = True,
    registry=None,
) -> CalibrationResult:
    """Run the calibration set through ``model`` once and accumulate every metric.

    Args:
        model: a causal LM whose blocks :func:`lorp.model.blocks.find_blocks` finds.
        input_ids: int64 ``[S, T]`` calibration token ids.
        metrics: name -> :class:`SimilarityMetric`; all fed from the same pass.
        attention_mask: optional ``[S, T]`` (1 = real token); padding is excluded.
        batch_size: sequences per forward call.
        progress: show a progress bar.
        registry: plugin registry whose model adapters find the blocks.
    Returns:
        :class:`CalibrationResult` with one ``[N, N]`` matrix per metric.
    Raises:
        ConfigError: empty calibration set, bad shapes, or no metric.
    """
    if input_ids.ndim != 2 or input_ids.shape[0] == 0:
        raise ConfigError(f"calibration input_ids must be [sequences, tokens] and non-empty, got {tuple(input_ids.shape)}")
    if not metrics:
        raise ConfigError("no similarity metric requested")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    _, blocks = find_blocks(model, registry)
    n = len(blocks)
    accumulators = {}
    for name, m in metrics.items():
        with plugin_code(f"similarity metric {name!r}"):
            accumulators[name] = m.create(n)
    states: list[torch.Tensor | None] = [None] * (n + 1)

    def pre_hook(index: int):
        def hook(_module, args, kwargs):
            states[index] = _hidden_from(args, kwargs)
        return hook

    def post_hook(_module, _args, output):
        states[n] = output[0] if isinstance(output, tuple) else output

    handles = [blk.register_forward_pre_hook(pre_hook(i), with_kwargs=True) for i, blk in enumerate(blocks)]
    handles.append(blocks[-1].register_forward_hook(post_hook))
    backbone = getattr(model, "base_model", model)  # skip the LM head: only hidden states are needed
    device = input_device(model)
    start = time.perf_counter()
    tokens = passes = 0
    try:
        for lo in tqdm(range(0, input_ids.shape[0], batch_size), desc="calibration pass", disable=not progress, unit="batch"):
            ids = input_ids[lo:lo + batch_size].to(device)
            mask = attention_mask[lo:lo + batch_size].to(device)
            backbone(input_ids=ids, attention_mask=mask, use_cache=False)
            passes += 1
            stacked = torch.stack(states).float()  # [N+1, B, T, H]
            bool_mask = mask.bool()
            last = None
            for name, acc in accumulators.items():
                with plugin_code(f"similarity metric {name!r}"):
                    if metrics[name].needs == "last_token":
                        if last is None:
                            last = _last_tokens(stacked, bool_mask)
                        acc.update(last, torch.ones(last.shape[1], 1, dtype=torch.bool, device=device))
                    else:
                        acc.update(stacked, bool_mask)
            tokens += int(bool_mask.sum())
            states[:] = [None] * (n + 1)
            del stacked, last
    finally:
        for h in handles:
            h.remove()
    matrices = {}
    for name, acc in accumulators.items():
        with plugin_code(f"similarity metric {name!r}"):
            result = np.asarray(acc.result(), dtype=np.float64)
        size = n if metrics[name].states == "blocks" else n + 1
        if result.shape != (size, size) or not np.isfinite(result).all():
            raise PluginError(f"similarity metric {name!r} must return a finite float [{size}, {size}] matrix "
                              f"({metrics[name].states} states of {n} blocks), got shape {result.shape}"
                              + ("" if np.isfinite(result).all() else " with NaN or infinite values"))
        if metrics[name].states == "blocks" and not np.allclose(result, result.T, atol=1e-6):
            raise PluginError(f"similarity metric {name!r} returned a matrix that is not symmetric; S[i, j] must "
                              "equal S[j, i]")
        matrices[name] = result
    return CalibrationResult(
        matrices=matrices,
        num_blocks=n,
        num_sequences=int(input_ids.shape[0]),
        num_tokens=tokens,
        seconds=time.perf_counter() - start,
        forward_passes=passes,
    )
