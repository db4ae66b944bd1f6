"""Figure 3: memory growth of the calibration pass with 64 sequences / with 8. Goal <= 1.05.

The figure is the growth of **live tensor bytes** above the loaded model while
the capture runs (every builtin metric attached), counted by torch's CPU
allocator: the capture runs under ``torch.profiler.profile(profile_memory=True)``,
and the profiler's ``[memory]`` events (one per allocation or free, signed
bytes; the ``args["Bytes"]`` of the Chrome trace's events) are summed in time
order; the growth is the largest running sum, in bytes. This count is exact
and repeatable (to a few KiB): it sees every tensor the capture allocates
(hook-held hidden states, the stacked ``[N + 1, B, T, H]`` batch, the metrics'
temporaries) and nothing else; the profiler's own event buffers are not tensors
and are not counted. A streaming capture keeps one batch alive at a time, so
the growth is the same for 8 and 64 sequences; a capture that kept every batch
would grow nearly 8x.

Each measurement runs in a fresh child process (``python -m benchmarks.memory
--child MODEL SAMPLES SEQ_LEN``) that loads the model, runs one plain forward
(it pages in weights that loading may leave memory-mapped) and then runs the
capture twice on the same sequences:

1. without the profiler, for the secondary **RSS growth**: the kernel's peak
   resident set size (``VmHWM``, reset through ``/proc/self/clear_refs`` just
   before the capture) minus the resident set size (``VmRSS``) right before it.
   It includes what the C allocator keeps mapped and the first-use costs of the
   process, so it is noisier; it is reported in the note, not judged.
2. under the profiler, for the allocator count above (the figure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from ._common import Figure

BUILTIN_METRICS = ("cosine", "stream-cosine", "angular-distance")
MIB = 2 ** 20
#: Device types torch's own profiler parser counts as CPU memory.
CPU_DEVICES = (torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.MKLDNN, torch.autograd.DeviceType.IDEEP)


def stacked_state_bytes(num_blocks: int, batch: int, seq_len: int, hidden: int) -> int:
    """Bytes of one batch's stacked residual-stream states ``[N + 1, B, T, H]`` in float32."""
    return (num_blocks + 1) * batch * seq_len * hidden * 4


def memory_events(prof, *, from_trace: bool = False) -> list[tuple[float, int]]:
    """The CPU ``[memory]`` events of a finished ``torch.profiler.profile``: ``(time, signed bytes)`` in time order.

    Read from the profiler's kineto results (what torch's own event parser reads,
    no file), or with ``from_trace=True`` (or where those results are missing)
    from the exported Chrome trace, whose ``[memory]`` events carry the same
    ``args["Bytes"]``; the trace holds every op too, so it is the slower path.
    Times are in nanoseconds (kineto) or microseconds (trace); only the order matters.
    """
    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is not None and not from_trace:
        out = [(e.start_ns(), int(e.nbytes())) for e in results.events()
               if e.name() == "[memory]" and e.device_type() in CPU_DEVICES]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as f:
                events = json.load(f)["traceEvents"]
        out = [(e["ts"], int(e["args"]["Bytes"])) for e in events
               if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0]
    return sorted(out, key=lambda e: e[0])  # stable: events with equal times keep the recorded order


def allocator_growth(fn: Callable[[], Any], *, from_trace: bool = False) -> tuple[Any, dict]:
    """Run ``fn()`` under the torch profiler and count the CPU tensor bytes it allocates and frees.

    The profiler records one ``[memory]`` event per allocation (positive bytes)
    and per free (negative) made through torch's CPU allocator while it is on;
    their running sum in time order is the live tensor memory above the start.

    Returns:
        ``(fn's result, stats)`` with ``peak_bytes`` (largest live tensor bytes
        above the start, bytes), ``end_bytes`` (still live when ``fn`` returned,
        bytes; tensors it returns count) and ``events`` (allocations and frees
        seen). Frees of tensors allocated before ``fn`` are invisible to the
        profiler, so the count can only overstate the growth.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = memory_events(prof, from_trace=from_trace)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return result, {"peak_bytes": peak, "end_bytes": live, "events": len(events)}


def _proc_status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_growth(fn: Callable[[], Any]) -> tuple[Any, dict]:
    """Run ``fn()`` and measure its resident-memory growth: peak RSS during it minus RSS right before it.

    On Linux the peak is the kernel's own (``VmHWM`` after writing ``5`` to
    ``/proc/self/clear_refs``); elsewhere, or where that reset is refused, a
    thread samples ``VmRSS`` (or ``psutil``'s RSS where there is no ``/proc``)
    every 2 ms, which can miss short peaks.

    Returns:
        ``(fn's result, stats)`` with ``rss_growth_bytes`` and ``rss_before_bytes``
        (bytes; ``None`` where neither ``/proc`` nor ``psutil`` is available) and
        ``rss_method`` (``"VmHWM"``, ``"sampled"`` or ``"unavailable"``).
    """
    def current_kib() -> int | None:
        kib = _proc_status_kib("VmRSS")
        if kib is None:
            try:
                import psutil
            except ImportError:
                return None
            kib = psutil.Process().memory_info().rss // 1024
        return kib

    before = current_kib()
    if before is None:
        return fn(), {"rss_growth_bytes": None, "rss_before_bytes": None, "rss_method": "unavailable"}
    reset = False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = _proc_status_kib("VmHWM") is not None
    except OSError:
        pass
    if reset:
        result = fn()
        peak = _proc_status_kib("VmHWM")
    else:
        peak, stop = before, threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, current_kib())
                time.sleep(0.002)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            result = fn()
        finally:
            stop.set()
            t.join()
        peak = max(peak, current_kib())
    return result, {"rss_growth_bytes": max(0, peak - before) * 1024, "rss_before_bytes": before * 1024,
                    "rss_method": "VmHWM" if reset else "sampled"}


def measure_capture(model, ids, registry, metrics=BUILTIN_METRICS) -> dict:
    """Memory growth of ``capture_similarities`` over ``ids`` ``[S, T]`` (batch 1) on an already loaded ``model``.

    After one plain forward of the first sequence (it pages in the weights, which
    loading may leave memory-mapped, and warms the kernels), runs the capture
    twice: first plainly for :func:`rss_growth`, then under the profiler for
    :func:`allocator_growth`. Returns their stats together with the shapes
    (``num_blocks``, ``hidden``, ``samples``, ``seq_len``), ``stacked_bytes``, the
    float32 size of one batch's ``[N + 1, 1, T, H]`` states (bytes), and the wall
    time of each capture (``seconds``, ``profiled_seconds``).
    """
    from lorp.method.capture import capture_similarities
    from lorp.model.blocks import find_blocks

    chosen = {n: registry.similarity(n) for n in metrics}

    def capture():
        return capture_similarities(model, ids, chosen, progress=False, registry=registry)

    with torch.inference_mode():  # pages the weights in and warms the kernels: not the capture's to pay
        backbone = getattr(model, "base_model", model)
        backbone(input_ids=ids[:1], attention_mask=torch.ones_like(ids[:1]), use_cache=False)
    t = time.perf_counter()
    _, rss = rss_growth(capture)
    t_rss = time.perf_counter() - t
    t = time.perf_counter()
    _, alloc = allocator_growth(capture)
    t_alloc = time.perf_counter() - t
    n = len(find_blocks(model, registry)[1])
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0))
    samples, seq_len = (int(x) for x in ids.shape)
    return {**alloc, **rss, "num_blocks": n, "hidden": hidden, "samples": samples, "seq_len": seq_len,
            "stacked_bytes": stacked_state_bytes(n, 1, seq_len, hidden), "seconds": t_rss, "profiled_seconds": t_alloc}


def child(model_name: str, samples: int, seq_len: int) -> None:
    from lorp.model.data import calibration_samples, load_corpus
    from lorp.model.models import load_model
    from lorp.plugins.registry import load_registry

    registry = load_registry()
    loaded = load_model(model_name)
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), samples, seq_len, 0)
    print(json.dumps(measure_capture(loaded.model, ids, registry)))


def measure(model_name: str, samples: int, seq_len: int) -> dict:
    """One :func:`measure_capture` in a fresh ``python -m benchmarks.memory --child`` process."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", model_name, str(samples), str(seq_len)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def figure(model_name: str, runs: list[dict], small: int, large: int, seq_len: int) -> Figure:
    """Figure 3 from ``runs``: one ``{"large": measure(...), "small": measure(...)}`` per repeat."""
    ratios = sorted(r["large"]["peak_bytes"] / max(1, r["small"]["peak_bytes"]) for r in runs)
    med = ratios[len(ratios) // 2]
    a, b = runs[0]["large"], runs[0]["small"]
    rss = [(r["large"]["rss_growth_bytes"], r["small"]["rss_growth_bytes"]) for r in runs]
    rss_text = "; ".join(f"{x / MIB:.0f} MiB vs {y / MIB:.0f} MiB" if x is not None and y is not None
                         else "unavailable" for x, y in rss)
    shape = f"[{a['num_blocks'] + 1}, 1, {seq_len}, {a['hidden']}]"
    note = (f"growth of live tensor bytes above the loaded model during the capture (torch CPU allocator, counted "
            f"from the profiler's [memory] events): {a['peak_bytes'] / MIB:.1f} MiB with {large} sequences vs "
            f"{b['peak_bytes'] / MIB:.1f} MiB with {small}, {a['end_bytes'] / MIB:.1f} vs "
            f"{b['end_bytes'] / MIB:.1f} MiB still live after it; that peak is "
            f"{a['peak_bytes'] / max(1, a['stacked_bytes']):.2f}x one batch's stacked states {shape} float32 "
            f"({a['stacked_bytes'] / MIB:.1f} MiB; expected about 3x: the hook-held block inputs, their stack and "
            f"the metrics' normalised copy, plus forward temporaries; the N x N accumulators are numpy, a few KiB), "
            f"so it is one batch, and the profiler's own buffers, not tensors, are not in it. "
            f"Secondary, noisier: RSS growth ({a['rss_method']} peak minus RSS right before the capture, a run without "
            f"the profiler after one warm-up forward) {rss_text}"
            + (f", over {a['rss_before_bytes'] / MIB:.0f} MiB resident before it" if a["rss_before_bytes"] else ""))
    return Figure(3, f"capture memory growth with {large} / {small} calibration sequences of {seq_len} tokens",
                  model_name, med, (ratios[0], ratios[-1]), "<= 1.05", med <= 1.05,
                  {"runs": runs, "unit": "bytes"}, note=note)


def run(model_name: str, *, seq_len: int = 256, repeats: int = 1, small: int = 8, large: int = 64):
    """Figure 3 for ``model_name``: ``repeats`` pairs of child processes (large, then small)."""
    runs = [{"large": measure(model_name, large, seq_len), "small": measure(model_name, small, seq_len)}
            for _ in range(repeats)]
    return [figure(model_name, runs, small, large, seq_len)]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        import click

        @click.command()
        @click.argument("models", nargs=-1)
        @click.option("--seq-len", default=256, show_default=True, help="tokens per calibration sequence")
        @click.option("--small", default=8, show_default=True, help="calibration sequences, small run")
        @click.option("--large", default=64, show_default=True, help="calibration sequences, large run")
        @click.option("--repeats", default=1, show_default=True, help="pairs of child processes")
        def cli(models, seq_len, small, large, repeats):
            """Print figure 3 for MODELS (default smollm2-135m)."""
            for name in models or ["smollm2-135m"]:
                for f in run(name, seq_len=seq_len, repeats=repeats, small=small, large=large):
                    print(f.line(), f.note)

        cli()
