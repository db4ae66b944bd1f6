"""A forward pass beside a competing torch process: OpenMP's default (active) wait policy against a passive one.

    python -m benchmarks.threads [MODEL] [REPEATS]        (default smollm2-135m, 5)

Each case runs in fresh processes (OpenMP reads its wait policy when torch loads):

* alone: the model's forward pass over 256 tokens, median of REPEATS after one warm-up, with
  ``OMP_WAIT_POLICY`` unset (OpenMP's default) and with ``PASSIVE`` (what lorp sets in the processes
  it starts, :func:`lorp.run.threads.thread_env`);
* beside a competitor: the same, while another process multiplies 512 × 512 float32 matrices in a
  loop with the same thread count and the same policy (two lorp jobs on one machine).

Threads: :func:`lorp.run.threads.available_cores` in every process (torch's default here). Prints
seconds per forward pass and the ratio beside / alone for each policy.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from lorp.run.threads import available_cores

_FORWARD = """
import statistics, sys, time, torch
from lorp.model.models import load_model
loaded = load_model(sys.argv[1])
ids = torch.randint(0, loaded.model.config.vocab_size, (1, 256), generator=torch.Generator().manual_seed(0))
times = []
with torch.no_grad():
    for _ in range(int(sys.argv[2]) + 1):
        t = time.perf_counter()
        loaded.model(ids)
        times.append(time.perf_counter() - t)
print(statistics.median(times[1:]))
"""

_COMPETITOR = """
import torch
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a)
"""


def _env(policy: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OMP_NUM_THREADS"] = str(available_cores())
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return env


def forward_seconds(model: str, repeats: int, policy: str | None, competing: bool) -> float:
    """Median seconds of one forward pass over 256 tokens, in a fresh process, with or without a competitor."""
    rival = subprocess.Popen([sys.executable, "-c", _COMPETITOR], env=_env(policy)) if competing else None
    try:
        if rival is not None:
            time.sleep(2.0)  # let it start spinning
        out = subprocess.run([sys.executable, "-c", _FORWARD, model, str(repeats)], env=_env(policy), check=True,
                             capture_output=True, text=True)
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()


def main(model: str = "smollm2-135m", repeats: int = 5) -> None:
    print(f"{model}: one forward pass over 256 tokens, {available_cores()} threads per process, "
          f"median of {repeats}")
    rows = {}
    for policy in (None, "PASSIVE"):
        alone = forward_seconds(model, repeats, policy, competing=False)
        beside = forward_seconds(model, repeats, policy, competing=True)
        rows[policy or "default (active)"] = (alone, beside)
    for name, (alone, beside) in rows.items():
        print(f"  OMP_WAIT_POLICY {name}: alone {alone:.2f} s, beside a competitor {beside:.2f} s "
              f"({beside / alone:.1f}x)")
    (a0, b0), (a1, b1) = rows.values()
    print(f"passive against default: alone {a1 / a0:.2f}x, beside a competitor {b1 / b0:.2f}x "
          f"(median over {repeats}; {statistics.fmean([a0, a1]):.2f} s mean alone)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m", int(sys.argv[2]) if len(sys.argv) > 2 else 5)
