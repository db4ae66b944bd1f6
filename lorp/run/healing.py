"""Healing one pruned run: fit a healer on the run's calibration draw, write its weights, evaluate the result.

What ``lorp prune --heal NAME`` adds to a run (:func:`lorp.run.prune.run_prune`): the healer (a
:class:`lorp.Healer` plugin, :mod:`lorp.heal`) is fitted on the dense model with the same calibration
sequences the selection used, its checked weights are written into the loaded model, and the healed
pruned model is evaluated with plain perplexity (no dense prefix states: the healed blocks change the
stream) and, when asked, zero-shot accuracy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..errors import ConfigError
from ..evaluate.perplexity import Perplexity, perplexity
from ..evaluate.zeroshot import zero_shot
from ..heal.fit import HealFit, apply_healing, fit_healer, healing_applied
from ..model.data import calibration_samples, load_corpus
from ..model.pruning import blocks_removed
from ..plugins.components import HealRequest
from ..plugins.guard import plugin_code
from .records import EvalSettings, Evaluation, ZeroShot


@dataclass
class HealedRun:
    """A healed run: the checked fit and the healed pruned model's evaluation.

    Attributes:
        fit: the healer's checked output (:class:`lorp.heal.fit.HealFit`: weights, record, fit seconds).
        settings: the healer settings the run asked for (``{}``: the healer's defaults).
        perplexity: ``{corpus: Perplexity}`` of the healed pruned model, on the run's evaluation windows.
        zero_shot: its zero-shot accuracy (``None`` when the run asks for no tasks).
        evaluation_seconds: wall time of that evaluation.
    """

    fit: HealFit
    settings: dict[str, Any]
    perplexity: dict[str, Perplexity]
    zero_shot: ZeroShot | None
    evaluation_seconds: float


def parse_heal_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``["alpha=0.1", "alphas=[0, 0.01]"]`` -> ``{"alpha": 0.1, "alphas": [0, 0.01]}``: each value read as JSON,
    else kept as text.

    Raises:
        ConfigError: an entry without ``=``, an empty key, or a key given twice.
    """
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"a healer setting is KEY=VALUE (e.g. --heal-setting alpha=0.01), got {pair!r}")
        if key in settings:
            raise ConfigError(f"healer setting {key!r} is given twice")
        try:
            settings[key] = json.loads(text)
        except ValueError:
            settings[key] = text.strip()
    return settings


def check_heal(registry: Any, name: str, settings: Mapping[str, Any]) -> None:
    """Before the model loads: the healer exists, its settings are a JSON-able mapping, and the healer's own
    check (:attr:`lorp.Healer.check_settings`) accepts them.

    Raises:
        UnknownNameError: no healer called ``name`` (the message lists the registered ones).
        ConfigError: settings that are not a mapping of names to JSON values, settings for ``none``, or
            settings the healer refuses.
    """
    healer = registry.healer(name)
    if not isinstance(settings, Mapping) or not all(isinstance(k, str) for k in settings):
        raise ConfigError(f"healer settings must map names to values, got {settings!r}")
    try:
        json.dumps(dict(settings))
    except (TypeError, ValueError):
        raise ConfigError(f"healer settings must be JSON values (numbers, text, lists), got {settings!r}") from None
    if name == "none" and settings:
        raise ConfigError(f"healer settings {sorted(settings)} were given, but no healer was chosen; add --heal NAME")
    if healer.check_settings is not None:
        with plugin_code(f"healer {name!r}"):
            healer.check_settings(dict(settings))


def check_healers(registry: Any, healers: str | Sequence[str], what: str = "healers") -> tuple[str, ...]:
    """Healer names from a comma-separated string or a sequence, each checked with its default settings
    (:func:`check_heal`) before any work; empty items dropped, order kept.

    Raises:
        UnknownNameError: an unknown healer (the message lists the registered ones).
        ConfigError: a name given twice, a name that is not text, or a healer that refuses its defaults.
    """
    items = healers.split(",") if isinstance(healers, str) else list(healers)
    if not all(isinstance(h, str) for h in items):
        raise ConfigError(f"{what} must be healer names, e.g. 'none,linear'; got {healers!r}")
    names = [h.strip() for h in items if h.strip()]
    twice = sorted({h for h in names if names.count(h) > 1})
    if twice:
        raise ConfigError(f"{what}: give each healer once, got {twice[0]!r} twice in {healers!r}")
    for name in names:
        check_heal(registry, name, {})
    return tuple(names)


def heal_run(worker: Any, config: Any, removed: Sequence[int], settings: EvalSettings) -> HealedRun:
    """Fit ``config.heal`` on the worker's dense model, write its weights into that model, evaluate it pruned.

    Calibration: ``config.num_samples`` × ``config.seq_len`` tokens of ``config.calibration`` drawn with
    ``config.seed`` (:func:`lorp.model.data.calibration_samples`), the draw the selection used. The healed
    model is evaluated with ``removed`` deleted temporarily (:func:`lorp.model.pruning.blocks_removed`):
    perplexity on the run's windows, zero-shot per ``settings``.

    Afterwards the worker's model holds the healed weights with every block still present; its dense
    prefix states no longer describe it, so call this after the worker's last unhealed evaluation.

    Raises:
        ConfigError, PluginError: as :func:`lorp.heal.fit.fit_healer`; the model is unchanged then.
    """
    loaded, registry = worker.load(), worker.registry
    ids = calibration_samples(loaded.tokenizer, load_corpus(config.calibration, registry), config.num_samples,
                              config.seq_len, config.seed)
    request = HealRequest(model=loaded.model, removed=tuple(sorted(int(b) for b in removed)), calibration=ids,
                          attention_mask=torch.ones_like(ids), settings=dict(config.heal_settings), seed=config.seed,
                          registry=registry)
    fit = fit_healer(registry.healer(config.heal), request)
    apply_healing(loaded.model, fit, registry)
    t = time.perf_counter()
    zs = None
    with blocks_removed(loaded.model, list(removed), registry) as model:
        ppl = {name: perplexity(model, windows, batch_size=config.batch_size, progress=config.progress,
                                desc=f"perplexity healed {name}")
               for name, windows in worker.windows.items()}
        if settings.zero_shot_tasks:
            zs = ZeroShot.from_dict(zero_shot(model, loaded.tokenizer, settings.zero_shot_tasks,
                                              limit=settings.zero_shot_limit, seed=settings.zero_shot_seed))
    return HealedRun(fit, dict(config.heal_settings), ppl, zs, time.perf_counter() - t)


def evaluate_healed(worker: Any, removed: Sequence[int], settings: EvalSettings, healer: str, seed: int,
                    confirmation: int = 0) -> Evaluation:
    """A sweep cell's healed evaluation: the worker's model with ``removed`` deleted after ``healer`` repaired it.

    The healer is fitted on the dense model with the calibration draw of run seed ``seed``
    (``base.num_samples`` × ``base.seq_len`` tokens of ``base.calibration``,
    :func:`lorp.model.data.calibration_samples`), its checked weights are written in for the evaluation
    only (:func:`lorp.heal.fit.healing_applied`) and restored after, so the worker's dense prefix
    states stay valid. Perplexity is plain (the healed blocks change the stream); zero-shot accuracy and
    decode speed as the worker measures them when ``settings`` asks. Stage seconds add ``heal_fit``. A healer's
    residual-stream maps are inserted the same way, for the evaluation only (:func:`lorp.heal.fit.healing_applied`),
    and their ``d²`` values each are counted in the evaluation's parameters.
    ``confirmation`` > 0: the same healed model is also scored on that many held-out confirmation windows per
    corpus (:meth:`lorp.run.worker.CellWorker.confirmation_windows`), one fit for both window sets.

    Returns:
        an :class:`lorp.run.records.Evaluation` with ``healing`` =
        ``{"healer", "settings", "record", "fit_seconds", "calibration_seed"}``, plus ``"confirmation":
        {"windows": count, "perplexity": {corpus: Perplexity as a dict}}`` when asked.
    Raises:
        UnknownNameError, ConfigError, PluginError: as :func:`lorp.heal.fit.fit_healer`.
    """
    loaded, registry, base = worker.load(), worker.registry, worker.base
    ctx = worker.context()
    t = time.perf_counter()
    ids = calibration_samples(loaded.tokenizer, load_corpus(base.calibration, registry), base.num_samples,
                              base.seq_len, int(seed))
    fit = fit_healer(registry.healer(healer), HealRequest(
        model=loaded.model, removed=tuple(sorted(int(b) for b in removed)), calibration=ids,
        attention_mask=torch.ones_like(ids), seed=int(seed), registry=registry))
    stages = {"heal_fit": time.perf_counter() - t}
    with healing_applied(loaded.model, fit, registry), blocks_removed(loaded.model, list(removed), registry) as model:
        t0 = time.perf_counter()
        ppl = {c: perplexity(model, w, batch_size=base.batch_size, progress=False) for c, w in worker.windows.items()}
        stages["perplexity"] = time.perf_counter() - t0
        zs, speed = worker.detail_measures(settings, stages) if settings.detailed else (None, None)
        held_out = None
        if confirmation:
            t0 = time.perf_counter()
            held_out = {c: asdict(perplexity(model, w, batch_size=base.batch_size, progress=False))
                        for c, w in worker.confirmation_windows(int(confirmation)).items()}
            stages["confirmation"] = time.perf_counter() - t0
    healing = {"healer": healer, "settings": {}, "record": fit.record, "fit_seconds": fit.seconds,
               "calibration_seed": int(seed)}
    if held_out is not None:
        healing["confirmation"] = {"windows": int(confirmation), "perplexity": held_out}
    maps = sum(t.numel() for t in fit.stream_maps.values())  # a residual map's d² values count as parameters
    return Evaluation(tuple(sorted(int(b) for b in removed)), ppl, ctx.parameters_without(removed) + maps, zs, speed,
                      time.perf_counter() - t, stages, healing)


def healing_record(healed: HealedRun, unhealed: Any, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """``results.json``'s ``"healing"`` entry: the healer, its settings and record, the dense model's parameters it
    changed (``"weights"``, names), its residual-stream maps (``"stream_maps"``, runs ``[first, last]``; a
    non-empty list means the saved model needs :func:`lorp.load_healed`), the fit time, and the pruned model's
    perplexity (and zero-shot accuracy) unhealed and healed."""
    fit = healed.fit
    return {
        "healer": fit.healer, "settings": healed.settings, "plugin": dict(provenance), "record": fit.record,
        "weights": sorted(fit.weights), "stream_maps": [list(run) for run in fit.stream_maps],
        "fit_seconds": fit.seconds, "evaluation_seconds": healed.evaluation_seconds,
        "perplexity": {"unhealed": {c: asdict(v) for c, v in unhealed.perplexity.items()},
                       "healed": {c: asdict(v) for c, v in healed.perplexity.items()}},
        "zero_shot": None if healed.zero_shot is None else {
            "unhealed": asdict(unhealed.zero_shot) if unhealed.zero_shot is not None else None,
            "healed": asdict(healed.zero_shot)},
    }


__all__ = ["HealedRun", "check_heal", "check_healers", "evaluate_healed", "heal_run", "healing_record", "parse_heal_settings"]
