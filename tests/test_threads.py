"""Threads that share the machine: lorp's thread count, what the processes it starts receive, and unchanged numbers."""

import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from lorp.cli import main
from lorp.errors import ConfigError
from lorp.run.threads import ENV, available_cores, resolve_threads, thread_env, worker_threads


def test_the_thread_count_comes_from_the_option_then_the_environment_then_the_cores():
    assert available_cores() == len(os.sched_getaffinity(0))
    assert resolve_threads(None, {}) == available_cores()
    assert resolve_threads(None, {ENV: "3"}) == 3
    assert resolve_threads(None, {"OMP_NUM_THREADS": "1"}) == 1  # a user's OpenMP limit is kept
    assert resolve_threads(None, {ENV: "3", "OMP_NUM_THREADS": "1"}) == 3
    assert resolve_threads(1, {ENV: "3"}) == 1 and resolve_threads("2", {}) == 2  # the option wins
    for bad, source in ((0, "--threads"), ("two", "--threads"), (True, "--threads")):
        with pytest.raises(ConfigError, match=f"{source} must be a whole number of threads >= 1"):
            resolve_threads(bad, {})
    with pytest.raises(ConfigError, match=f"{ENV} must be a whole number of threads >= 1, got '-1'"):
        resolve_threads(None, {ENV: "-1"})


def test_started_processes_get_the_threads_and_a_passive_wait_policy_unless_one_is_set():
    assert thread_env(3, {}) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", ENV: "3", "OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_env(3, {"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's choice stays
    assert [worker_threads(4, w) for w in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    # torch in a started process takes the count from that environment
    env = {**os.environ, **thread_env(1, {})}
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_the_command_line_applies_threads_for_itself_and_its_children():
    runner = CliRunner()
    keys = (ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    saved = {k: os.environ.pop(k, None) for k in keys}
    before = torch.get_num_threads()
    try:
        res = runner.invoke(main, ["--threads", "1", "plugins"])
        assert res.exit_code == 0, res.output
        assert torch.get_num_threads() == 1 and os.environ[ENV] == "1" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        res = runner.invoke(main, ["--threads", "0", "plugins"])
        assert res.exit_code == 2 and res.output.strip().splitlines() == [
            f"error: --threads must be a whole number of threads >= 1, got '0'; e.g. --threads 2 (default: the "
            f"{available_cores()} cores this process may use)"]
    finally:
        torch.set_num_threads(before)
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def test_the_thread_count_changes_numbers_at_float32_rounding_only(tmp_path):
    """A tiny model's logits are bit-identical at 1 and 2 threads; a reduction as long as SmolLM2's ``down_proj``
    (1536 → 576) may be split between threads, which reorders float32 sums: the results then agree to rounding
    (seen on AVX-512 with torch 2.13: 1.5e-5 absolute on values of size ~40), never more."""
    from lorp.model.models import load_model
    from lorp.testing import make_tiny_model_folder

    folder, _ = make_tiny_model_folder(tmp_path, num_blocks=4)
    loaded = load_model(str(folder))
    ids = torch.randint(0, loaded.model.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(128, 1536, generator=g), torch.randn(1536, 576, generator=g)
    before = torch.get_num_threads()
    logits, products = [], []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                logits.append(loaded.model(ids).logits)
            products.append(a @ b)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(logits[0], logits[1])
    exact = (a.double() @ b.double())
    for p in products:  # each thread count is as close to the exact product as float32 allows
        assert (p.double() - exact).abs().max() <= 1e-5 * exact.abs().max()
    torch.testing.assert_close(products[0], products[1], rtol=1e-5, atol=1e-5 * float(exact.abs().max()))
