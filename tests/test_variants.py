"""Presets and per-model variants (notebooks/variants.yaml) and how they merge into notebook parameters."""

import ast

import pytest

from lorp.errors import ConfigError, UnknownNameError
from lorp.model.models import BUNDLED_MODELS
from lorp.study.parameters import evidence_settings, split_ints, study_config
from lorp.study.runner import notebook_parameters
from lorp.study.variants import load_preset, preset_names

NAMES = list(notebook_parameters())


def defaults():
    return {n: ast.literal_eval(s["default"]) for n, s in notebook_parameters().items()}


def test_the_three_presets_exist_and_only_set_notebook_parameters():
    assert {"quick", "default", "paper"} <= set(preset_names())
    for name in preset_names():
        load_preset(name, known_parameters=NAMES)  # raises on a parameter the notebook does not take


@pytest.mark.parametrize("name", ["quick", "default", "sensitivity", "paper"])
def test_every_preset_gives_each_of_its_models_a_valid_study(name):
    preset = load_preset(name)
    for model in preset.models:
        params = {**defaults(), **preset.parameters_for(model, {"device": "cpu"})}  # paper sets cuda
        config = study_config(params)
        evidence = evidence_settings(params)  # SLEB's check fits in the calibration draw
        assert evidence["sleb_check_factor"] * config.base.sleb_samples <= config.base.num_samples
        n = BUNDLED_MODELS[model].num_blocks
        assert max(config.budgets) <= n - 2, (model, config.budgets)
        assert config.detail_budgets and config.detail_budgets[0] in config.budgets


def test_default_covers_three_architectures_and_paper_uses_the_paper_protocol():
    default = load_preset("default")
    assert len({BUNDLED_MODELS[m].architecture for m in default.models}) == 3
    paper = load_preset("paper").parameters
    assert (paper["num_samples"], paper["seq_len"], paper["eval_tokens"], paper["zero_shot_limit"]) == (128, 2048, 0, 0)
    config = study_config({**defaults(), **load_preset("paper").parameters_for("qwen2.5-1.5b"), "device": "cpu"})
    assert config.base.eval_tokens is None and config.base.zero_shot_limit is None
    assert {"lorp", "shortgpt", "streamline", "sleb"} <= set(config.methods)


def test_merge_order_preset_then_variant_then_preset_model_entry_then_overrides(tmp_path):
    f = tmp_path / "v.yaml"
    f.write_text("models:\n  m: {budgets: '1,2', seed: 5}\n"
                 "presets:\n  p:\n    models: [m]\n    parameters: {budgets: '9', seed: 1, k: 3}\n"
                 "    models_parameters:\n      m: {seed: 7}\n")
    p = load_preset("p", f, known_parameters=NAMES)
    assert p.parameters_for("m") == {"budgets": "1,2", "seed": 7, "k": 3, "model": "m"}
    assert p.parameters_for("m", {"seed": 8})["seed"] == 8
    assert p.parameters_for("other") == {"budgets": "9", "seed": 1, "k": 3, "model": "other"}


def test_unknown_preset_and_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown preset 'quik'.*quick"):
        load_preset("quik")
    bad = tmp_path / "bad.yaml"
    bad.write_text("presets:\n  p:\n    parameters: {budgetz: '1'}\n")
    with pytest.raises(ConfigError, match=r"presets.p.parameters sets \['budgetz'\]"):
        load_preset("p", bad, known_parameters=NAMES)
    bad.write_text("presets: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read the variants file"):
        load_preset("p", bad)
    bad.write_text("models: {}\n")
    with pytest.raises(ConfigError, match="'presets' section"):
        load_preset("p", bad)


def test_evidence_settings_refuse_what_cannot_work_before_any_notebook():
    base = {"methods": "lorp,sleb", "num_samples": 16, "sleb_samples": 2}  # the default check: 8 x 2 = 16
    assert evidence_settings(base)["calibration_corpora"] == ("lambada", "ptb", "wiki-paragraphs")
    with pytest.raises(ConfigError, match="sleb_check_factor 9 x sleb_samples 2 exceeds the 16 calibration samples"):
        evidence_settings({**base, "sleb_check_factor": 9})
    assert evidence_settings({**base, "methods": "lorp", "sleb_check_factor": 9})["sleb_check_factor"] == 9
    with pytest.raises(ConfigError, match="random_draws must be a whole number >= 0"):
        evidence_settings({**base, "random_draws": -1})
    with pytest.raises(ConfigError, match="calibration_corpora needs at least two corpora"):
        evidence_settings({**base, "calibration_corpora": "ptb"})
    assert evidence_settings({**base, "calibration_corpora": ""})["calibration_corpora"] == ()


def test_study_config_parses_lists_and_zero_means_none():
    config = study_config({**defaults(), "methods": "shortgpt, sleb", "budgets": "2,4", "detail_budget": 4,
                           "detail_methods": "sleb",
                           "eval_tokens": 0, "zero_shot_limit": 0, "k": 0, "zero_shot_tasks": ""})
    assert config.methods == ("lorp", "shortgpt", "sleb")  # the allocation shown is always compared
    assert config.budgets == (2, 4) and config.detail_budgets == (4,)
    assert config.detail_methods == ("lorp", "sleb") and config.detailed("lorp", 4) and not config.detailed("shortgpt", 4)
    assert config.base.eval_tokens is None and config.base.k is None and config.base.zero_shot_tasks == ()
    assert split_ints("3, 6,9", "budgets") == (3, 6, 9)
    with pytest.raises(ConfigError, match="budgets must be comma-separated whole numbers, got 'x'"):
        study_config({**defaults(), "budgets": "2,x"})
    with pytest.raises(ConfigError, match="detail_budget 5 must be one of the budgets"):
        study_config({**defaults(), "budgets": "2,4", "detail_budget": 5})
    # detail_methods filters the compared methods (the notebook default names some not compared here)
    assert study_config({**defaults(), "methods": "shortgpt", "detail_methods": "shortgpt,sleb"}).detail_methods == (
        "lorp", "shortgpt")
    one = study_config({**defaults(), "budgets": 2, "detail_budget": 0})  # papermill -p budgets 2 passes an int
    assert one.budgets == (2,) and one.detail_budgets == ()
    with pytest.raises(ConfigError, match="at least one budget"):
        study_config({**defaults(), "budgets": " , "})
