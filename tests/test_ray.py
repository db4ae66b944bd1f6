"""The Ray executor: a local Ray with two CPU workers runs a tiny sweep on the real SmolLM2-135M.

Same table as the serial path; a worker process killed mid-sweep is restarted and
the sweep still ends complete with every cell computed once; a cell that raises is
reported with its spec and traceback while the other cells land. The failing and
crashing strategies come from a local plugin file, so plugins reach the workers.
"""

import csv
import json
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from lorp.run.cells import CellsFailedError  # noqa: E402
from lorp.run.executors import RayExecutor  # noqa: E402
from lorp.run.pipeline import PruneConfig  # noqa: E402
from lorp.run.sweep import SweepConfig, execute_sweep, run_sweep  # noqa: E402

pytestmark = [pytest.mark.real_model, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(model="smollm2-135m", num_samples=4, seq_len=64, eval_corpora=("ptb",), eval_tokens=256,
            eval_seq_len=128, progress=False, save_model=False)

PLUGIN = '''
import os
from pathlib import Path

import lorp
from lorp.builtins.baselines import last_blocks

STATE = Path({state!r})


def crash_once(request):
    """The deepest blocks, like `last`; the worker process dies the first time it is asked for budget 2."""
    marker = STATE / "crashed"
    if request.budget == 2 and not marker.exists():
        marker.touch()
        os._exit(1)
    with open(STATE / f"crash-once-b{{request.budget}}.count", "a") as fh:
        fh.write("1\\n")
    return last_blocks(request)


def broken(request):
    if request.budget == 3:
        raise RuntimeError("broken on purpose at budget 3")
    return last_blocks(request)


@lorp.hookimpl
def lorp_register_allocation_strategies(register):
    register(lorp.AllocationStrategy("crash-once", crash_once, uses_clusters=False))
    register(lorp.AllocationStrategy("broken", broken, uses_clusters=False))
'''


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs; workers import this checkout's lorp."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


def test_ray_sweep_gives_the_serial_table(local_ray, tmp_path):
    config = SweepConfig(base=PruneConfig(**TINY), methods=("lorp", "shortgpt", "streamline", "angular"),
                         budgets=(2, 3))
    run_sweep(config, tmp_path / "serial")
    run = execute_sweep(config, tmp_path / "ray", executor=RayExecutor(num_workers=2))
    # Ray's workers run 1 thread each, the serial run 2: a long float32 reduction split between threads sums in
    # another order (tests/test_threads.py), so the numbers agree to rounding and everything else exactly.
    ray_rows, serial_rows = (list(csv.DictReader((tmp_path / d / "table.csv").open())) for d in ("ray", "serial"))
    assert len(ray_rows) == len(serial_rows) == 9
    for r, s in zip(ray_rows, serial_rows):
        assert r.keys() == s.keys()
        for k in r:
            if k == "perplexity":
                assert float(r[k]) == pytest.approx(float(s[k]), rel=1e-5)
            else:
                assert r[k] == s[k], k
    assert run.stats.cells_written == 8 and run.stats.evaluations_computed + run.stats.evaluations_reused == 8
    assert run.stats.seconds_to_first_cell > 0
    again = execute_sweep(config, tmp_path / "ray", executor=RayExecutor(num_workers=2))
    assert again.stats is None and again.rows == run.rows  # resumed: nothing left to compute


def test_killed_worker_and_failing_cell(local_ray, tmp_path, monkeypatch):
    plugins, state = tmp_path / "plugins", tmp_path / "state"
    plugins.mkdir()
    state.mkdir()
    (plugins / "flaky_strategies.py").write_text(PLUGIN.format(state=str(state)))
    monkeypatch.setenv("LORP_PLUGINS_DIR", str(plugins))
    config = SweepConfig(base=PruneConfig(**TINY), methods=("last", "crash-once", "broken"), budgets=(2, 3))
    out = tmp_path / "sweep"
    with pytest.raises(CellsFailedError, match=r"1 cell\(s\) failed: broken-b3-s0 \(selection: RuntimeError: broken"):
        execute_sweep(config, out, executor=RayExecutor(num_workers=2, max_restarts=2))
    assert (state / "crashed").exists()  # the worker really died once
    for budget in (2, 3):  # and the crashed cell was computed exactly once after the restart
        assert (state / f"crash-once-b{budget}.count").read_text() == "1\n"
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert [(f["spec"]["method"], f["spec"]["budget"], f["stage"]) for f in failures] == [("broken", 3, "selection")]
    assert "broken on purpose at budget 3" in failures[0]["traceback"] and "Traceback" in failures[0]["traceback"]
    lines = (out / "table.csv").read_text().splitlines()
    landed = {tuple(line.split(",")[:2]) for line in lines[1:]}
    assert landed == {("dense", "0"), ("last", "2"), ("last", "3"), ("crash-once", "2"), ("crash-once", "3"),
                      ("broken", "2")}
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").iterdir()}
    # `last`, `crash-once` and `broken` remove the same blocks at budget 2: one evaluation for the three cells.
    assert len({c["evaluation_key"] for n, c in cells.items() if n.endswith("b2-s0")}) == 1
    assert sum(c["evaluation_reused"] for n, c in cells.items() if n.endswith("b2-s0")) == 2


def test_a_plugin_missing_on_the_workers_is_named(local_ray, tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "only_here.py").write_text(
        "import lorp\nfrom lorp.builtins.baselines import last_blocks\n\n@lorp.hookimpl\n"
        "def lorp_register_allocation_strategies(register):\n"
        "    register(lorp.AllocationStrategy('only-here', last_blocks, uses_clusters=False))\n")
    monkeypatch.setenv("LORP_PLUGINS_DIR", str(plugins))
    from lorp.plugins.registry import load_registry

    registry = load_registry()  # the driver sees the plugin ...
    monkeypatch.setattr("lorp.run.executors.worker_env", lambda: {"LORP_DISABLE_PLUGIN_AUTOLOAD": "1"})  # ... workers not
    config = SweepConfig(base=PruneConfig(**TINY), methods=("only-here",), budgets=(2,))
    with pytest.raises(Exception, match=r"allocation strategy 'only-here'.*on Ray worker"):
        run_sweep(config, tmp_path / "sweep", registry, executor=RayExecutor(num_workers=1))
