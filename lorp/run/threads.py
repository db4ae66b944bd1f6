"""How many threads lorp's torch work uses, in this process and in every process lorp starts.

Two torch processes that each spin 2 OpenMP threads on a 2-core machine slow each other
down far more than sharing predicts (measured here: a SmolLM2 forward pass of 256 tokens
0.80 s alone, 2.80 s beside another 2-thread torch process): idle OpenMP threads busy-wait
for work by default, stealing the cores the other process needs. A *passive* wait policy
(``OMP_WAIT_POLICY=PASSIVE``) lets them sleep. So lorp

* uses ``threads`` threads: ``--threads`` / :data:`ENV` (``LORP_THREADS``), else the user's
  ``OMP_NUM_THREADS``, else the cores this process may run on (:func:`available_cores`,
  ``os.sched_getaffinity``);
* passes them to every process it starts through the environment (:func:`thread_env`):
  papermill kernels inherit it, Ray workers get ``threads // workers`` each
  (:func:`worker_threads`);
* sets a passive OpenMP wait policy in those processes unless the user set one.

The thread count changes how fast, not what is computed: torch's float32 kernels give the
same numbers at any thread count here (checked in ``tests/test_threads.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..errors import ConfigError

#: The environment variable holding lorp's thread count (the ``--threads`` option sets it).
ENV = "LORP_THREADS"
#: OpenMP's wait policy variable; lorp sets it to ``PASSIVE`` in the processes it starts unless already set.
WAIT_POLICY = "OMP_WAIT_POLICY"


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count()`` where it does not exist)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The thread count: ``threads`` if given, else ``$LORP_THREADS``, else ``$OMP_NUM_THREADS`` (a user who
    limits OpenMP keeps that limit), else :func:`available_cores`.

    Raises:
        ConfigError: a value that is not a whole number >= 1 (naming where it came from).
    """
    environ = os.environ if environ is None else environ
    source, value = "--threads", threads
    if value is None:
        source = next((k for k in (ENV, "OMP_NUM_THREADS") if environ.get(k, "").strip()), None)
        if source is None:
            return available_cores()
        value = environ[source].strip()
    count = int(value) if not isinstance(value, bool) and str(value).strip().isdigit() else None
    if count is None or count < 1:
        raise ConfigError(f"{source} must be a whole number of threads >= 1, got {value!r}; e.g. --threads 2 "
                          f"(default: the {available_cores()} cores this process may use)")
    return count


def worker_threads(threads: int, workers: int) -> int:
    """Threads per worker when ``workers`` processes share ``threads``: ``threads // workers``, at least 1."""
    return max(1, int(threads) // max(1, int(workers)))


def thread_env(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables that give a started process ``threads`` threads and a passive OpenMP wait policy.

    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` (torch reads them when it starts), :data:`ENV`, and
    ``OMP_WAIT_POLICY=PASSIVE`` unless ``environ`` (default: this process's) already sets a policy.
    """
    environ = os.environ if environ is None else environ
    out = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), ENV: str(threads)}
    out[WAIT_POLICY] = environ.get(WAIT_POLICY) or "PASSIVE"
    return out


def apply_threads(threads: int | None = None) -> int:
    """Use :func:`resolve_threads` threads here and in every process started from here on.

    Sets :func:`thread_env` in ``os.environ`` (kernels and workers inherit it) and
    ``torch.set_num_threads`` in this process. The wait policy reaches only the processes started
    from here on: OpenMP reads it when torch loads, which importing lorp has already done.

    Returns:
        the thread count.
    Raises:
        ConfigError: as :func:`resolve_threads`.
    """
    count = resolve_threads(threads)
    os.environ.update(thread_env(count))
    torch.set_num_threads(count)
    return count


__all__ = ["ENV", "WAIT_POLICY", "apply_threads", "available_cores", "resolve_threads", "thread_env",
           "worker_threads"]
