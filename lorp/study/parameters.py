"""Study notebook parameters: from papermill's typed values or command-line text to a sweep and an executor.

The study notebook (``notebooks/lorp_study.ipynb``) is the one place that declares the parameters
(:func:`notebook_parameters` reads them with papermill); :func:`coerce_parameters` checks values
against it, :func:`study_config` turns them into a :class:`lorp.run.sweep.SweepConfig`,
:func:`study_executor` into an executor. The notebooks call these directly.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..method.allocation import check_seed
from ..paths import NOTEBOOKS_DIR
from ..run.executors import make_executor
from ..run.pipeline import PruneConfig
from ..run.sweep import SweepConfig

STUDY_NOTEBOOK = NOTEBOOKS_DIR / "lorp_study.ipynb"
ABLATION_NOTEBOOK = NOTEBOOKS_DIR / "ablation.ipynb"
SUMMARY_NOTEBOOK = NOTEBOOKS_DIR / "summary.ipynb"


def notebook_parameters(notebook: str | Path = STUDY_NOTEBOOK) -> dict[str, dict[str, Any]]:
    """The notebook's papermill parameters: name -> ``{"type", "default", "help"}``."""
    import papermill as pm  # a library, imported on use as before the move

    return {p["name"]: {"type": p["inferred_type_name"], "default": p["default"], "help": p["help"]}
            for p in pm.inspect_notebook(str(notebook)).values()}


def notebook_defaults(known: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The default value of each notebook parameter (its literal in the parameters cell)."""
    return {name: ast.literal_eval(spec["default"]) for name, spec in known.items()}


def split_list(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``; a list passes through. Empty items are dropped."""
    if isinstance(value, (int, float)):
        value = str(value)  # papermill -p budgets 2 passes a number
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(v).strip() for v in items if str(v).strip())


def split_ints(value: str | Sequence[int], what: str) -> tuple[int, ...]:
    """``"3,6,9"`` -> ``(3, 6, 9)``.

    Raises:
        ConfigError: an item is not a whole number, or an item between two others is empty (``"0,,1"``).
    """
    out = []
    parts = [item.strip() for item in value.split(",")] if isinstance(value, str) else []
    while parts and not parts[0]:
        parts.pop(0)
    while parts and not parts[-1]:
        parts.pop()
    if "" in parts:  # "0,,1": an item was forgotten (a leading or trailing comma is harmless)
        raise ConfigError(f"{what} must be comma-separated whole numbers with nothing between two commas, "
                          f"got {value!r}")
    if isinstance(value, (list, tuple)):
        value = [str(v) for v in value]
    for item in split_list(value, what):
        try:
            out.append(int(item))
        except ValueError:
            raise ConfigError(f"{what} must be comma-separated whole numbers, got {item!r} in {value!r}") from None
    return tuple(out)


def coerce_parameters(p: Mapping[str, Any], known: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Check each study-notebook parameter against the type its parameters cell declares; return them typed.

    The notebook is the one place that declares the parameters (read with
    papermill, :func:`notebook_parameters`). ``int`` parameters take
    whole numbers or their decimal strings (``"32"``), never booleans or
    fractions; ``str`` parameters take text, and a number or a list (as
    papermill's ``-p budgets 4`` or YAML lists give) is turned into
    comma-separated text; ``bool`` parameters take ``True``/``False`` (or the text
    ``"true"``/``"false"``). Names the notebook does not declare pass unchanged.

    Raises:
        ConfigError: a value of the wrong type, naming the parameter and its type.
    """
    if known is None:
        known = notebook_parameters()
    out = dict(p)
    for name, value in p.items():
        kind = known.get(name, {}).get("type")
        if kind == "int":
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"notebook parameter {name} takes a whole number (int), got {value!r}; "
                                  f"e.g. -p {name} {known[name].get('default', 0)}")
        elif kind == "bool":
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                value = value.strip().lower() == "true"
            if not isinstance(value, bool):
                raise ConfigError(f"notebook parameter {name} takes True or False (bool), got {value!r}")
        elif kind == "str":
            if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                        for v in value):
                value = ",".join(str(v) for v in value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise ConfigError(f"notebook parameter {name} takes text (str), got {value!r}")
        out[name] = value
    return out


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"notebook parameter {name} takes True or False (bool), got {value!r}")
    return value


def study_config(p: Mapping[str, Any]) -> SweepConfig:
    """The :class:`lorp.run.sweep.SweepConfig` of the study notebook's parameters ``p``.

    Comma-separated strings (or a single number) become tuples; 0 means "none" or
    "all" where the notebook says so (``k``, ``eval_tokens``, ``zero_shot_limit``,
    ``detail_budget``). ``allocation`` is added to ``methods`` if missing;
    ``detail_methods`` filters the compared methods (names not compared are skipped).
    ``attribution`` (default ``True``) asks for the single-block removal profile.
    ``seeds`` (comma-separated, empty: ``seed`` alone) are run seeds: calibration draw,
    clustering and random baselines (:attr:`lorp.run.sweep.SweepConfig.seeds`); ``seed_methods``
    (comma-separated, empty: all) the methods run at every seed, the others at the first only
    (names not compared are skipped).

    Raises:
        ConfigError: a value of the wrong type (:func:`coerce_parameters`),
            malformed lists or values (checked again by the sweep).
    """
    p = coerce_parameters(p)
    methods = split_list(p["methods"], "methods")
    if p["allocation"] not in methods:
        methods = (p["allocation"], *methods)
    budgets = split_ints(p["budgets"], "budgets")
    if not budgets:
        raise ConfigError("give at least one budget, e.g. budgets='4,8'")
    detail = int(p["detail_budget"])
    if detail and detail not in budgets:
        raise ConfigError(f"detail_budget {detail} must be one of the budgets {list(budgets)} (or 0 for none)")
    base = PruneConfig(
        model=p["model"], calibration=p["calibration"], num_samples=int(p["num_samples"]), seq_len=int(p["seq_len"]),
        seed=int(p["seed"]), eval_corpora=split_list(p["eval_corpora"], "eval_corpora"),
        eval_seq_len=int(p["eval_seq_len"]), eval_tokens=int(p["eval_tokens"]) or None,
        similarity=p["similarity"], clustering=p["clustering"], allocation=p["allocation"], k=int(p["k"]) or None,
        save_model=False, device=p["device"], progress=False, sleb_samples=int(p["sleb_samples"]),
        sleb_tokens=int(p.get("sleb_tokens", 0)), zero_shot_tasks=split_list(p["zero_shot_tasks"], "zero_shot_tasks"),
        zero_shot_limit=int(p["zero_shot_limit"]) or None)
    base.validate()
    detail_methods = split_list(p["detail_methods"], "detail_methods") or None
    if detail_methods:  # a filter on the compared methods: names not compared are skipped
        detail_methods = tuple(m for m in methods if m in detail_methods or m == p["allocation"])
    seed_methods = split_list(p.get("seed_methods", ""), "seed_methods") or None
    if seed_methods:  # a filter on the compared methods, like detail_methods
        seed_methods = tuple(m for m in methods if m in seed_methods)
    return SweepConfig(base=base, methods=methods, budgets=budgets, detail_budgets=(detail,) if detail else (),
                       detail_methods=detail_methods, decode_tokens=int(p["decode_tokens"]),
                       attribution=_flag(p.get("attribution", True), "attribution"),
                       seeds=tuple(check_seed(s, "each seed") for s in split_ints(p.get("seeds", ""), "seeds")),
                       seed_methods=seed_methods)


def evidence_settings(p: Mapping[str, Any]) -> dict[str, Any]:
    """The study notebook's evidence parameters, checked: the held-out windows, the floors, SLEB's check, the corpora.

    Returns ``{"confirmation_windows", "random_draws", "sleb_check_factor", "calibration_corpora",
    "healed_zero_shot_tasks"}``: three whole numbers >= 0 (0: none), a tuple of corpus names (empty: none) and
    the zero-shot tasks scored after healing (:func:`healed_zero_shot_tasks`). Missing parameters take the
    notebook's defaults.

    Raises:
        ConfigError: a count that is not a whole number >= 0; SLEB's check scoring more calibration
            sequences (``sleb_samples × sleb_check_factor``) than the draw has while SLEB is among the
            methods; a single calibration corpus (nothing to compare); a healed zero-shot task that is not
            one of ``zero_shot_tasks``.
    """
    p = coerce_parameters({**notebook_defaults(notebook_parameters()), **p})
    out = {}
    for name in ("confirmation_windows", "random_draws", "sleb_check_factor"):
        value = p[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number >= 0 (0: none), got {value!r}")
        out[name] = value
    methods = split_list(p["methods"], "methods")
    factor, samples = out["sleb_check_factor"], int(p["sleb_samples"])
    if factor and "sleb" in methods and samples * factor > int(p["num_samples"]):
        raise ConfigError(f"sleb_check_factor {factor} x sleb_samples {samples} exceeds the {p['num_samples']} "
                          "calibration samples; lower sleb_check_factor (0: no check) or raise num_samples")
    corpora = split_list(p["calibration_corpora"], "calibration_corpora")
    if len(corpora) == 1:
        raise ConfigError(f"calibration_corpora needs at least two corpora to compare, got {corpora[0]!r} "
                          "(empty: none)")
    out["calibration_corpora"] = corpora
    out["healed_zero_shot_tasks"] = healed_zero_shot_tasks(p["healed_zero_shot_tasks"], p["zero_shot_tasks"])
    return out


def healed_zero_shot_tasks(value: str, study_tasks: str) -> tuple[str, ...]:
    """The zero-shot tasks the selection × healing grid scores after healing (its first healer's models).

    ``""``: the study's ``zero_shot_tasks``; ``"none"``: no zero-shot after healing; else comma-separated tasks,
    each one of the study's, so that healed and unhealed accuracy are paired on the same items (each task's
    items are drawn alone, with the first run seed: :func:`lorp.evaluate.zeroshot.chosen_items`).

    Raises:
        ConfigError: a task that is not among ``study_tasks``.
    """
    tasks = split_list(study_tasks, "zero_shot_tasks")
    if not value.strip():
        return tasks
    if value.strip().lower() == "none":
        return ()
    chosen = split_list(value, "healed_zero_shot_tasks")
    unknown = [t for t in chosen if t not in tasks]
    if unknown:
        raise ConfigError(f"healed_zero_shot_tasks {', '.join(unknown)} not among zero_shot_tasks "
                          f"({', '.join(tasks) or 'none'}): healed and unhealed accuracy are compared on the same "
                          "items; pick from those, 'none' for no zero-shot after healing, or empty for all of them")
    return tuple(t for t in tasks if t in chosen)


def study_executor(executor: str = "serial", ray_address: str = "", ray_workers: int = 0):
    """The executor of the study notebook's ``executor``, ``ray_address`` and ``ray_workers`` parameters.

    ``ray_address`` empty and ``ray_workers`` 0 mean Ray's own choice (a local Ray) and
    lorp's default worker count.

    Raises:
        ConfigError: unknown executor, or Ray settings with ``executor="serial"``.
    """
    if executor == "serial" and (ray_address or ray_workers):
        raise ConfigError("ray_address and ray_workers only apply with executor=ray")
    return make_executor(executor, address=ray_address or None, num_workers=int(ray_workers) or None)


__all__ = ["coerce_parameters", "evidence_settings", "healed_zero_shot_tasks", "split_ints", "split_list", "study_config", "study_executor"]
