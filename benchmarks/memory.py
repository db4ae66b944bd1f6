"""Figure 3: peak resident memory of a calibration pass with 64 sequences / with 8. Goal <= 1.05.

Each measurement runs in a fresh child process (``python -m benchmarks.memory
--child MODEL SAMPLES``) that loads the model, runs the capture with every
builtin metric and reports its own peak resident set size (``ru_maxrss``), so the
two figures do not share an allocator.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from ._common import Figure

BUILTIN_METRICS = ("cosine", "stream-cosine", "angular-distance")


def child(model_name: str, samples: int, seq_len: int) -> None:
    from lorp.capture import capture_similarities
    from lorp.data import calibration_samples, load_corpus
    from lorp.models import load_model
    from lorp.plugins import load_registry

    registry = load_registry()
    loaded = load_model(model_name)
    ids = calibration_samples(loaded.tokenizer, load_corpus("lambada", registry), samples, seq_len, 0)
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    capture_similarities(loaded.model, ids, {n: registry.similarity(n) for n in BUILTIN_METRICS}, progress=False,
                         registry=registry)
    print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "after_load_kib": after_load}))


def measure(model_name: str, samples: int, seq_len: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", model_name, str(samples), str(seq_len)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(model_name: str, *, seq_len: int = 256, repeats: int = 2, small: int = 8, large: int = 64):
    ratios, runs = [], []
    for _ in range(repeats):
        a, b = measure(model_name, large, seq_len), measure(model_name, small, seq_len)
        ratios.append(a["peak_kib"] / b["peak_kib"])
        runs.append({"large": a, "small": b})
    ratios.sort()
    med = ratios[len(ratios) // 2]
    return [Figure(3, f"peak RSS with {large} / {small} calibration sequences of {seq_len} tokens", model_name, med,
                   (ratios[0], ratios[-1]), "<= 1.05", med <= 1.05, {"runs": runs},
                   note=f"peak {runs[0]['large']['peak_kib'] / 1024:.0f} MiB vs {runs[0]['small']['peak_kib'] / 1024:.0f} MiB; "
                        f"high-water mark after loading the model, before the capture: "
                        f"{runs[0]['large']['after_load_kib'] / 1024:.0f} MiB (a capture that stays under it adds nothing)")]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        for name in sys.argv[1:] or ["smollm2-135m"]:
            for f in run(name):
                print(f.line(), f.note)
