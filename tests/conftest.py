import os

import pytest

pytest_plugins = ["lorp.testing"]

# Nothing in the test suite may reach a model or dataset hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


#: Markers whose tests are left out of the fast tier (``pytest -m "not slow"``, docs/testing.md).
SLOW_KINDS = ("real_model", "notebook", "ray")


def pytest_collection_modifyitems(config, items):
    """Mark every test that loads a real model, runs a notebook or starts Ray as ``slow``."""
    for item in items:
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def smollm2():
    """The real bundled SmolLM2-135M (fetched and converted once into the lorp cache)."""
    from lorp.model.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(autouse=True)
def _restore_lorp_environment():
    """`lorp --plugins-dir/--deny-plugin/--no-plugin-autoload` set LORP_* variables in-process; undo after each test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("LORP_")}
    yield
    for k in [k for k in os.environ if k.startswith("LORP_")]:
        if k not in saved:
            del os.environ[k]
    os.environ.update(saved)
