"""The healer hook: builtins and local files register healers; lorp checks what a healer returns."""

import textwrap
import uuid

import pytest
import torch
from click.testing import CliRunner

import lorp
from lorp.cli import main
from lorp.errors import ConfigError, PluginError, UnknownNameError
from lorp.heal.fit import apply_healing, fit_healer
from lorp.plugins.registry import PluginSettings, load_registry

HEALER_PLUGIN = '''
import torch
import lorp

__version__ = "0.3"


def double_down(request):
    """Doubles the MLP output projection of the block before the first removed one (block 0 if none)."""
    before = max(request.removed[0] - 1, 0)
    name = f"model.layers.{before}.mlp.down_proj.weight"
    weight = dict(request.model.named_parameters())[name]
    return {name: 2 * weight.detach()}, {"block": before, "scale": 2.0}


@lorp.hookimpl
def lorp_register_healers(register):
    register(lorp.Healer(name="{name}", heal=double_down, description="doubles one down_proj (test)"))
'''


def request(model, removed, registry, **kw):
    ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(0))
    return lorp.HealRequest(model=model, removed=tuple(removed), calibration=ids, attention_mask=torch.ones_like(ids),
                            registry=registry, **kw)


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_none_is_a_builtin_healer_that_changes_nothing(lorp_registry, tiny_model):
    model = tiny_model("llama", 4)
    fit = fit_healer(lorp_registry.healer("none"), request(model, (2,), lorp_registry))
    assert fit.healer == "none" and fit.weights == {} and fit.record == {} and fit.seconds >= 0
    before = weights(model)
    apply_healing(model, fit)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(ConfigError, match="healer 'none' takes no settings"):
        fit_healer(lorp_registry.healer("none"), request(model, (2,), lorp_registry, settings={"ridge": 1.0}))


def test_unknown_healer_names_the_known_ones(lorp_registry):
    with pytest.raises(UnknownNameError, match="known healers: linear, none"):
        lorp_registry.healer("linaer")


def test_a_local_healer_file_is_listed_and_used(tmp_path, tiny_model):
    stem = f"lorp_test_healer_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{stem}.py").write_text(textwrap.dedent(HEALER_PLUGIN.replace("{name}", "double")))
    registry = load_registry(PluginSettings(autoload=True, plugin_dirs=(tmp_path,)))
    info = next(p for p in registry.plugins if p.name == stem)
    assert info.components == ("healer:double",) and info.version == "0.3"

    model = tiny_model("llama", 4)
    name = "model.layers.1.mlp.down_proj.weight"
    before = weights(model)
    fit = fit_healer(registry.healer("double"), request(model, (2, 3), registry))
    assert set(fit.weights) == {name} and fit.record == {"block": 1, "scale": 2.0}
    assert torch.equal(dict(model.named_parameters())[name], before[name])  # fitting writes nothing
    apply_healing(model, fit)
    after = dict(model.named_parameters())
    assert torch.equal(after[name], 2 * before[name])
    assert all(torch.equal(after[n], before[n]) for n in before if n != name)

    out = CliRunner().invoke(main, ["plugins"], env={"LORP_PLUGINS_DIR": str(tmp_path)})
    assert out.exit_code == 0, out.output
    listed = [line.split() for line in out.output.splitlines()]
    assert ["healer", "double", "doubles", "one", "down_proj", "(test)"] in listed
    assert any(line[:2] == ["healer", "none"] for line in listed)


def in_place(request):
    """Breaks the contract: doubles a weight of the dense model itself and returns nothing."""
    dict(request.model.named_parameters())["model.layers.0.mlp.down_proj.weight"].data.mul_(2)
    return {}, {}


def bad_healer(returned):
    return lorp.Healer(name="bad", heal=lambda request: returned(request))


@pytest.mark.parametrize("returned, message", [
    (lambda r: ({"model.layers.0.mlp.down_proj.weight": torch.zeros(3, 3)}, {}), r"has shape \(3, 3\), the parameter"),
    (lambda r: ({"model.layers.2.mlp.down_proj.weight":
                 dict(r.model.named_parameters())["model.layers.2.mlp.down_proj.weight"].detach()}, {}),
     "belongs to removed block 2"),
    (lambda r: ({"no.such.weight": torch.zeros(1)}, {}), "is not a parameter of the model"),
    (lambda r: ({"model.layers.0.mlp.down_proj.weight":
                 torch.full_like(dict(r.model.named_parameters())["model.layers.0.mlp.down_proj.weight"],
                                 float("nan"))}, {}), "non-finite"),
    (lambda r: {}, r"must return \(weights: dict, record: dict\)"),
    (lambda r: ({}, {"map": torch.zeros(2)}), "not JSON-able"),
    (lambda r: in_place(r), "changed the model itself"),
    (lambda r: ({}, {}, {(1, 2): torch.eye(32)}), "not keyed by a maximal run of removed blocks"),
    (lambda r: ({}, {}, {(2, 2): torch.eye(31)}), r"finite float \[32, 32\] tensor, got \(31, 31\)"),
    (lambda r: ({}, {}, {(2, 2): torch.full((32, 32), float("inf"))}), "finite float"),
    (lambda r: ({}, {}, {(2, 2): "I"}), "got str"),
    (lambda r: ({}, {}, {}, {}), r"or \(weights, record, stream_maps: dict\)"),
])
def test_a_healer_that_breaks_the_contract_gets_one_clear_error_and_nothing_is_written(
        lorp_registry, tiny_model, returned, message):
    model = tiny_model("llama", 4)
    with pytest.raises(PluginError, match=message) as err:
        fit_healer(bad_healer(returned), request(model, (2,), lorp_registry))
    assert "healer 'bad'" in str(err.value)


@pytest.mark.parametrize("removed, message", [((), "nothing is removed"), ((7,), r"not blocks of this model \(0..3\)"),
                                              ((0, 1, 2, 3), "all 4 blocks are removed")])
def test_a_healer_needs_removed_blocks_of_the_model(lorp_registry, tiny_model, removed, message):
    model = tiny_model("llama", 4)
    with pytest.raises(ConfigError, match=message):
        fit_healer(lorp_registry.healer("none"), request(model, removed, lorp_registry))
