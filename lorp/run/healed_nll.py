"""Calibration NLL of candidate removed sets after a ``linear`` repair: what a healing-aware selector scores.

A selector that prefers removed sets a linear map can repair (``span-heal-nll``,
:mod:`lorp.builtins.heal_selector`) needs, for each candidate set, the calibration NLL of the pruned model
*after* the ``linear`` healer repaired it. Scoring on the rows the maps were fitted on would favour sets
with more maps (more fitted parameters), so the calibration draw is split: the first ``score_rows``
sequences are scored, the others fit the maps (``linear``'s own held-out rows, every 4th of those, choose
each map's ridge strength or no map). Both parts are calibration text; no evaluation window is read.

Cost: ``linear``'s maps are fitted per run of removed blocks against the dense stream, independently, so a
run shared by several candidates is fitted once, and the statistics of every candidate's runs are collected
in one dense pass over the fit rows (:class:`lorp.builtins.healers.LinearRunMemo`). Each candidate then
costs one partial pass over the scored rows, from the dense states entering the block its first map is
folded into (:meth:`lorp.evaluate.perplexity.CalibrationNLL.changed_from`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..builtins.healers import LinearRunMemo, linear_healing_memo
from ..errors import ConfigError
from ..evaluate.perplexity import CalibrationNLL
from ..heal.fit import check_removed
from ..heal.forward import weights_written
from ..heal.linear import removed_runs
from ..plugins.components import HealRequest


class HealedCalibrationNLL:
    """``healed_nll(sets) -> [mean token NLL, nats]``: each set deleted after ``linear`` repaired it.

    Args:
        model: the dense model, eval mode; its weights are changed only inside each scoring and restored.
        score_ids: int64 ``[S, T]`` calibration sequences that are scored (none of them fits a map).
        fit_ids: int64 ``[F, T]`` other calibration sequences of the same draw, to fit the maps (``F >= 2``:
            ``linear`` holds out every 4th to choose the ridge strength or no map).
        scored_tokens: score only each scored sequence's last that many tokens (``None``: all).
        registry: the plugin registry (finds the blocks).

    Attributes:
        records: ``{sorted removed set: linear's record}`` of every set scored (maps, alphas).
        memo: the per-run fits shared between sets.

    Raises:
        ConfigError: fewer than 2 fit rows, or no score rows.

    Source: the maps are ReplaceMe's least-squares form (Shopkhoev et al., NeurIPS 2025), as the ``linear``
    healer fits them; the scoring is SLEB's calibration NLL (Song et al., ICML 2024).
    """

    def __init__(self, model: nn.Module, score_ids: torch.Tensor, fit_ids: torch.Tensor, *,
                 scored_tokens: int | None = None, registry=None):
        if score_ids.shape[0] < 1 or fit_ids.shape[0] < 2:
            raise ConfigError(f"healed calibration NLL needs at least 1 scored and 2 fitting calibration sequences, "
                              f"got {score_ids.shape[0]} and {fit_ids.shape[0]}; raise --num-samples")
        self.model, self.registry, self.fit_ids = model, registry, fit_ids
        self.nll = CalibrationNLL(model, score_ids, registry=registry, scored_tokens=scored_tokens, prefix="dense")
        self.memo = LinearRunMemo()
        self.records: dict[tuple[int, ...], dict] = {}
        self._scores: dict[tuple[int, ...], float] = {}

    def __call__(self, sets: Iterable[Iterable[int]]) -> list[float]:
        """Healed calibration NLL of each removed set, in order (memoised per set)."""
        wanted = [check_removed(self.model, s, self.registry) for s in sets]
        self.memo.pending |= {run for s in wanted for run in removed_runs(s) if run[0] > 0}
        return [self._score(s) for s in wanted]

    def _score(self, removed: tuple[int, ...]) -> float:
        if removed not in self._scores:
            request = HealRequest(model=self.model, removed=removed, calibration=self.fit_ids,
                                  attention_mask=torch.ones_like(self.fit_ids), registry=self.registry)
            weights, record = linear_healing_memo(request, self.memo)
            self.records[removed] = record
            start = max(removed[0] - 1, 0)  # the first map is folded into the block before the first run
            with weights_written(self.model, weights):
                self._scores[removed] = float(self.nll.changed_from(frozenset(removed), start))
        return self._scores[removed]

    @property
    def passes(self) -> dict[str, int]:
        """Forward work so far: dense capture passes over the fit rows, full and partial scoring passes."""
        return {"capture": self.memo.passes, "full": self.nll.forward_passes, "partial": self.nll.partial_passes}


def split_rows(ids: torch.Tensor, score_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scored, fitting)``: the first ``score_rows`` sequences of a calibration draw and the rest."""
    return ids[:score_rows], ids[score_rows:]


__all__: Sequence[str] = ["HealedCalibrationNLL", "split_rows"]
