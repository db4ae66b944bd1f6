"""Progress of long runs, streamed out of a notebook kernel to the terminal that started it.

A sweep running inside a papermill kernel cannot print to the user's terminal.
It appends one JSON line per event to the file named by ``$LORP_PROGRESS_FILE``
(:func:`report`; nothing happens when the variable is unset), and ``lorp study``
follows that file from a thread (:class:`Follower`) and prints a line per event:
cells done of total, the current method and budget, and the time left.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Environment variable naming the progress file (inherited by notebook kernels).
ENV = "LORP_PROGRESS_FILE"


def report(**event: Any) -> None:
    """Append one event (``stage``, and for cells ``done``, ``total``, ``method``, ``budget``) to ``$LORP_PROGRESS_FILE``.

    ``time`` (seconds since the epoch) is added. Errors writing the file are
    ignored: progress must never stop a run.
    """
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({**event, "time": time.time()}, default=str) + "\n")
    except OSError:
        pass


def describe(event: dict[str, Any], started: float | None) -> str:
    """One line for the terminal: ``cell 5/21 shortgpt b8 done · 3 min 10 s left`` (estimate from the mean cell time);
    ``shortgpt b8 s1`` when the event names a seed (a sweep with several run seeds)."""
    stage = event.get("stage", "")
    if stage != "cell":
        return str(event.get("message") or stage)
    done, total = int(event["done"]), int(event["total"])
    seed = f" s{event['seed']}" if event.get("seed") is not None else ""
    line = f"cell {done}/{total} {event.get('method')} b{event.get('budget')}{seed} done"
    if started is not None and 0 < done < total:
        left = (event["time"] - started) / done * (total - done)
        line += f" · about {int(left // 60)} min {int(left % 60):02d} s left"
    return line


class Follower(threading.Thread):
    """Follow a progress file from a background thread and ``echo`` a line per new event.

    Use as a context manager around the work that writes the file.
    """

    def __init__(self, path: str | os.PathLike, echo: Callable[[str], None], prefix: str = "", interval: float = 1.0):
        super().__init__(daemon=True)
        self.path, self.echo, self.prefix, self.interval = Path(path), echo, prefix, interval
        self._stop_event = threading.Event()
        self._offset = 0
        self._cells_from: float | None = None

    def _drain(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("stage") == "cells":  # the cell loop starts: time left counts from here
                self._cells_from = event.get("time")
            self.echo(self.prefix + describe(event, self._cells_from))

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._drain()
        self._drain()

    def __enter__(self) -> Follower:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join()
