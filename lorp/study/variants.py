"""Study presets and per-model variants: one YAML file, merged into notebook parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnknownNameError
from ..paths import NOTEBOOKS_DIR

VARIANTS_FILE = NOTEBOOKS_DIR / "variants.yaml"


@dataclass(frozen=True)
class Preset:
    """A named study setting.

    Attributes:
        name: ``quick``, ``default``, ``paper`` or another key of the file.
        description: one line for ``--help`` and the reports.
        models: models the preset runs when none are given.
        parameters: notebook parameters for every model.
        model_parameters: per-model notebook parameters of this preset (win over the variants).
        variants: per-model notebook parameters shared by every preset.
    """

    name: str
    description: str
    models: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    model_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def parameters_for(self, model: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Notebook parameters for ``model``: preset < model variant < preset's model entry < ``overrides``."""
        return {**self.parameters, **self.variants.get(model, {}), **self.model_parameters.get(model, {}),
                **(overrides or {}), "model": model}


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the variants file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("presets"), dict):
        raise ConfigError(f"{path} must hold a mapping with a 'presets' section (and optionally 'models')")
    return data


def preset_names(path: str | Path = VARIANTS_FILE) -> list[str]:
    """Names of the presets in the variants file."""
    return list(_read(Path(path))["presets"])


def load_preset(name: str, path: str | Path = VARIANTS_FILE, *, known_parameters: Sequence[str] | None = None) -> Preset:
    """Read preset ``name`` from the variants file (default ``notebooks/variants.yaml``).

    Args:
        known_parameters: the notebook's parameter names; when given, every
            parameter the file sets is checked against them.
    Raises:
        UnknownNameError: no such preset.
        ConfigError: the file is malformed or sets a parameter the notebook does not take.
    """
    path = Path(path)
    data = _read(path)
    presets = data["presets"]
    if name not in presets:
        raise UnknownNameError("preset", name, list(presets))
    entry = presets[name] or {}
    variants = data.get("models") or {}
    preset = Preset(name=name, description=str(entry.get("description", "")),
                    models=tuple(entry.get("models") or variants),
                    parameters=dict(entry.get("parameters") or {}),
                    model_parameters={m: dict(p or {}) for m, p in (entry.get("models_parameters") or {}).items()},
                    variants={m: dict(p or {}) for m, p in variants.items()})
    if known_parameters is not None:
        known = set(known_parameters)
        sections = {f"presets.{name}.parameters": preset.parameters,
                    **{f"models.{m}": p for m, p in preset.variants.items()},
                    **{f"presets.{name}.models_parameters.{m}": p for m, p in preset.model_parameters.items()}}
        for where, params in sections.items():
            bad = sorted(set(params) - known)
            if bad:
                raise ConfigError(f"{path}: {where} sets {bad}, which the study notebook does not take; "
                                  f"its parameters are: {', '.join(sorted(known))}")
    return preset
