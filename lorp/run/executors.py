"""Where cells run: in this process (:class:`SerialExecutor`, the default) or on a Ray cluster (:class:`RayExecutor`).

An executor turns a :class:`lorp.run.worker.CellWorker` recipe into workers that the one
orchestration (:func:`lorp.run.cells.orchestrate`) drives. Ray is an optional extra
(``pip install 'lorp[ray]'``): workers are Ray actors that load the model once and
keep the dense prefix states; cells are scheduled onto whichever actor is idle; the
driver writes every result into the atomic cell store. A worker process that dies
is restarted by Ray and its call retried (``max_restarts``/``max_task_retries``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LorpError
from .cells import Task
from .threads import resolve_threads, thread_env, worker_threads
from .worker import CellWorker

#: Environment variables shipped to Ray workers (plugin discovery, cache, offline hubs).
WORKER_ENV_VARS = ("LORP_PLUGINS_DIR", "LORP_DENY_PLUGINS", "LORP_DISABLE_PLUGIN_AUTOLOAD", "LORP_CACHE_DIR",
                   "LORP_PROGRESS_FILE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_VERBOSITY")

EXECUTORS = ("serial", "ray")


class _LocalWorkers:
    """One in-process :class:`CellWorker`: calls run in order."""

    def __init__(self, worker: CellWorker):
        self.worker = worker

    def first(self, task: Task) -> Any:
        return getattr(self.worker, task.method)(*task.args)

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        for task in tasks:
            yield task, getattr(self.worker, task.method)(*task.args)


@dataclass(frozen=True)
class SerialExecutor:
    """Run every cell in this process, one after the other (the default)."""

    name = "serial"

    @contextlib.contextmanager
    def workers(self, base: Any, methods: Sequence[str], *, reuse_states: bool = True,
                registry: Any = None) -> Iterator[_LocalWorkers]:
        """A single :class:`CellWorker` on ``base`` for ``methods``."""
        worker = CellWorker(base, methods, reuse_states=reuse_states, registry=registry)
        worker.check()
        yield _LocalWorkers(worker)


def worker_env() -> dict[str, str]:
    """The ``LORP_*`` (and offline-hub) settings of this process that Ray workers receive, paths made absolute."""
    env = {k: os.environ[k] for k in WORKER_ENV_VARS if os.environ.get(k)}
    if "LORP_PLUGINS_DIR" in env:
        env["LORP_PLUGINS_DIR"] = os.pathsep.join(str(Path(p).resolve())
                                                  for p in env["LORP_PLUGINS_DIR"].split(os.pathsep) if p)
    if "LORP_CACHE_DIR" in env:
        env["LORP_CACHE_DIR"] = str(Path(env["LORP_CACHE_DIR"]).expanduser().resolve())
    return env


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("the Ray executor needs Ray: pip install 'lorp[ray]' (or pip install 'ray[default]')") from None
    return ray


class _CellActor:
    """Ray actor body: one :class:`CellWorker` per actor process."""

    def __init__(self, base: Any, methods: Sequence[str], reuse_states: bool):
        self.worker = CellWorker(base, methods, reuse_states=reuse_states)

    def call(self, method: str, *args: Any) -> Any:
        if method == "check":
            import socket

            return self.worker.check(where=f"Ray worker {socket.gethostname()} (pid {os.getpid()})")
        return getattr(self.worker, method)(*args)


class _RayWorkers:
    """Ray actors running :class:`CellWorker` calls; each idle actor gets the next task."""

    def __init__(self, ray: Any, actors: list[Any]):
        self.ray, self.actors = ray, actors

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, LorpError):
                raise cause from None
            raise

    def first(self, task: Task) -> Any:
        result = self._get(self.actors[0].call.remote(task.method, *task.args))
        if task.method == "context":  # warm the other actors in parallel (their calibration is cached by now)
            for actor in self.actors[1:]:
                actor.call.remote("context")
        return result

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[Task, Any]]:
        queue = list(tasks)
        idle = list(self.actors)
        running: dict[Any, tuple[Task, Any]] = {}
        while queue or running:
            while queue and idle:
                task, actor = queue.pop(0), idle.pop(0)
                running[actor.call.remote(task.method, *task.args)] = (task, actor)
            done, _ = self.ray.wait(list(running), num_returns=1)
            task, actor = running.pop(done[0])
            try:
                result = self._get(done[0])
            except LorpError:
                raise
            except Exception as exc:  # noqa: BLE001 - a task that failed for good (worker gone): reported per cell
                result = exc
            idle.append(actor)
            yield task, result


@dataclass(frozen=True)
class RayExecutor:
    """Run cells on Ray actors.

    Args:
        address: Ray cluster address (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``);
            ``None`` connects to the running Ray of this process, else starts a local one.
        num_workers: actors (each loads the model once).
        num_cpus: CPUs per actor (Ray's scheduling); each actor's torch threads are lorp's threads divided
            among the workers (:func:`lorp.run.threads.worker_threads`), with a passive OpenMP wait policy.
        num_gpus: GPUs per actor (use with ``device="cuda"``).
        max_restarts: times Ray restarts an actor whose process died; its pending
            call is retried as often.
    Raises:
        ConfigError: Ray not installed, bad numbers, or a component missing on a worker.
    """

    address: str | None = None
    num_workers: int = 2
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_restarts: int = 3

    name = "ray"

    def __post_init__(self):
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ConfigError(f"Ray workers must be a whole number >= 1, got {self.num_workers!r}")
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ConfigError(f"CPUs per worker must be > 0 and GPUs >= 0, got {self.num_cpus}, {self.num_gpus}")

    @contextlib.contextmanager
    def workers(self, base: Any, methods: Sequence[str], *, reuse_states: bool = True,
                registry: Any = None) -> Iterator[_RayWorkers]:
        """Start ``num_workers`` actors on the cluster; they are killed on exit."""
        ray = _import_ray()
        started = False
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, runtime_env={"env_vars": worker_env()})
            started = True
        # lorp's threads divided among the workers, with a passive OpenMP wait policy (lorp.run.threads)
        env = {**worker_env(), **thread_env(worker_threads(resolve_threads(), self.num_workers))}
        actor_cls = ray.remote(_CellActor).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=self.max_restarts,
            max_task_retries=self.max_restarts, runtime_env={"env_vars": env})
        actors = [actor_cls.remote(base, tuple(methods), reuse_states) for _ in range(self.num_workers)]
        workers = _RayWorkers(ray, actors)
        try:
            for ref in [a.call.remote("check") for a in actors]:
                workers._get(ref)
            yield workers
        finally:
            for a in actors:
                with contextlib.suppress(Exception):
                    ray.kill(a)
            if started:
                ray.shutdown()


def make_executor(name: str = "serial", **options: Any) -> SerialExecutor | RayExecutor:
    """The executor called ``name`` (``serial`` or ``ray``) with ``options`` (Ray: address, num_workers, …).

    Raises:
        ConfigError: unknown executor, or options the serial executor does not take.
    """
    if name == "serial":
        given = {k: v for k, v in options.items() if v is not None}
        if given:
            raise ConfigError(f"{', '.join(sorted(given))} only apply to --executor ray")
        return SerialExecutor()
    if name == "ray":
        return RayExecutor(**{k: v for k, v in options.items() if v is not None})
    raise ConfigError(f"unknown executor {name!r}; choose one of: {', '.join(EXECUTORS)}")


class HeldWorkers:
    """An executor whose workers stay open from one call to the next: each model is loaded (and its calibration
    pass fetched, its dense states kept) once for a series of calls that would each start their own workers.

    The first :meth:`workers` call for a given (base, methods, reuse) opens workers on the inner executor; later
    calls with the same settings get the same ones. Use as a context manager: leaving it closes every worker.
    ``lorp study --add`` scores its screening sets, detail measures and confirmation windows through one.
    """

    def __init__(self, executor: SerialExecutor | RayExecutor | None = None):
        self.executor = executor or SerialExecutor()
        self.name = self.executor.name
        self._stack = contextlib.ExitStack()
        self._open: dict[str, Any] = {}

    @contextlib.contextmanager
    def workers(self, base: Any, methods: Sequence[str], *, reuse_states: bool = True,
                registry: Any = None) -> Iterator[Any]:
        """The held workers for these settings (opened on first use)."""
        key = repr((base, tuple(methods), reuse_states))
        if key not in self._open:
            self._open[key] = self._stack.enter_context(
                self.executor.workers(base, methods, reuse_states=reuse_states, registry=registry))
        yield self._open[key]

    def __enter__(self) -> HeldWorkers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()
        self._open.clear()


__all__ = ["EXECUTORS", "HeldWorkers", "RayExecutor", "SerialExecutor", "WORKER_ENV_VARS", "make_executor", "worker_env"]
