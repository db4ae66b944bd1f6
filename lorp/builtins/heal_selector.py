"""Builtin selector of our own: ``span-heal-nll``, the candidate removed set a linear map repairs best.

Why this design. The study's selection × healing grid (:mod:`lorp.study.healing`) shows that the ``linear``
healer (ReplaceMe's least-squares map per run of removed blocks) closes most of the perplexity gap of
LoRP's spread removals (about 0.7 of the log-gap on SmolLM2-135M at budget 8) but little of ShortGPT's
(about 0.1), so the ranking of the *unhealed* sets is a poor guide to the ranking of the *healed* ones. A
selector that will be followed by a repair should judge each candidate after the repair. One map per run
favours few long runs (one map stands in for many blocks) but a long run is harder to map linearly; which
wins depends on the model, so the calibration text decides.

Candidates (a locality-aware family: contiguous runs of neighbouring blocks, whose states agree, and
LoRP's cluster-covering set):

1. every candidate of ``span-bi-nll`` (:func:`lorp.builtins.selectors.candidates`): the lowest Block
   Influence set, the most similar contiguous runs of ``budget`` blocks (LLM-Streamline's and the angular
   distance's span), and a most similar run plus lowest-Block-Influence blocks;
2. LoRP's own set (eqs. 8-11 on this run's clusters).

Each is scored by ``request.healed_nll``: the mean NLL of the first :data:`SCORING_SAMPLES` calibration
sequences (their last ``sleb_tokens`` tokens) with the set deleted after ``linear`` repaired it, the maps
fitted on the draw's other sequences (:mod:`lorp.run.healed_nll`). The lowest wins (ties: the earlier
candidate). Every setting (the family, :data:`SCORING_SAMPLES`, ``linear``'s own choice of ridge, or of no map,
on every 4th fit row) is fixed from calibration data and the design above; nothing reads an evaluation
window. Caveat: the design was made after this study's healed and unhealed results on the same models were
known, so its evaluation there is not a held-out test. Its selection is meant to be evaluated *healed by
``linear``*; unhealed, its set is just another candidate.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..plugins.components import AllocationRequest, AllocationStrategy, Removal
from ..plugins.hookspecs import hookimpl
from .allocation import lorp_allocate
from .selectors import candidates, lowest_score

#: Calibration sequences each candidate is scored on after the repair (the rest of the draw fits the maps).
SCORING_SAMPLES = 4


def heal_candidates(request: AllocationRequest) -> list[tuple[str, tuple[int, ...]]]:
    """``span-bi-nll``'s candidates, then LoRP's set when it is new: ``[(description, sorted blocks)]``.

    Raises:
        ConfigError: fewer unprotected blocks than the budget, or no cluster labels.
    """
    if request.labels is None:
        raise ConfigError("span-heal-nll needs the run's cluster labels (it includes LoRP's set); it registers "
                          "uses_clusters=True, so select it through lorp's selection")
    family = candidates(request)
    lorp = tuple(sorted(r.block for r in lorp_allocate(request)))
    if lorp not in {blocks for _, blocks in family}:
        family.append(("LoRP's set (eqs. 8-11)", lorp))
    return family


def span_heal_nll(request: AllocationRequest) -> list[Removal]:
    """Remove the candidate (:func:`heal_candidates`) of lowest calibration NLL after a ``linear`` repair.

    A candidate whose healed NLL is not finite never wins.

    Returns:
        ``budget`` removals, shallowest first, each with the winning set's healed NLL (nats/token) as score.
    Raises:
        ConfigError: no healed scorer (``request.healed_nll`` is ``None``), too few unprotected blocks, or no
            candidate with a finite healed NLL.
    """
    if request.healed_nll is None:
        raise ConfigError("span-heal-nll needs the model and its calibration draw: run it through `lorp prune` / "
                          "`lorp sweep`, which provide request.healed_nll")
    family = heal_candidates(request)
    return lowest_score(family, [float(v) for v in request.healed_nll([blocks for _, blocks in family])],
                        "span-heal-nll", "calibration NLL after a linear repair")


@hookimpl
def lorp_register_allocation_strategies(register):
    register(AllocationStrategy(
        "span-heal-nll", span_heal_nll, uses_clusters=True, needs=("stream-cosine",), needs_model=True,
        nll_samples=SCORING_SAMPLES, nll_prefix="dense", nll_healer="linear",
        description="ours: the locality-aware candidate (runs, lowest Block Influence, LoRP's set) of lowest "
                    "calibration NLL after a linear repair; evaluate it healed by linear",
        source="lorp (this study): motivated by the selection x healing grid"))
