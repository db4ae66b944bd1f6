"""The dense pass of the study's perplexity windows: run, against loaded from the on-disk cache.

    python -m benchmarks.dense_states_cache [MODEL ...]       (default smollm2-135m gemma3-270m)

The default study asks for the dense pass of the same windows more than once per model: its screening windows
for the sweep's cells, the random floor's draws, SLEB's check and the ablation notebook's cells, and its
confirmation windows for the study notebook's verdict pairs and the ablation notebook's selector. Before the
on-disk cache (:mod:`lorp.store.hidden_states`) each of those callers ran the dense model again; now the first
stores the states entering every block and the others load them.

For each model, on the default study's windows (``ptb`` and ``wiki-paragraphs``, 8 screening windows of 256
tokens each, and 8 confirmation windows each), batch size 1, into an empty temporary cache: the dense pass as
before (the states entering one block kept), the first cached pass (every block kept and written), and a
cached load, each timed; then the variants of a few removed sets from the computed and the loaded scorer,
which must be equal bit for bit. Prints seconds, the entry's size and what the study saves per avoided pass.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from lorp.evaluate.perplexity import SweepPerplexity
from lorp.model.blocks import find_blocks
from lorp.model.data import confirmation_windows, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.plugins.registry import load_registry
from lorp.store.hidden_states import states_path

CORPORA, SEQ_LEN, SCREENING_TOKENS, CONFIRMATION = ("ptb", "wiki-paragraphs"), 256, 2048, 8
#: Dense passes of each window set the default study no longer runs per model: screening (random floor,
#: SLEB's check, the ablation notebook's cells) and confirmation (the ablation notebook's selector).
AVOIDED = {"screening": 3, "confirmation": 1}


def _numbers(ppl: dict) -> dict:
    """A scorer's ``{corpus: Perplexity fields}`` without the wall time."""
    return {c: {k: v for k, v in p.items() if k != "seconds"} for c, p in ppl.items()}


def main(models: list[str]) -> None:
    registry = load_registry()
    os.environ["LORP_CACHE_DIR"] = tempfile.mkdtemp(prefix="lorp-states-")
    for name in models:
        loaded = load_model(name)
        model, tok = loaded.model, loaded.tokenizer
        n = len(find_blocks(model, registry)[1])
        corpora = {c: load_corpus(c, registry) for c in CORPORA}
        sets = {"screening": {c: evaluation_windows(tok, t, SEQ_LEN, SCREENING_TOKENS) for c, t in corpora.items()},
                "confirmation": {c: confirmation_windows(tok, t, SEQ_LEN, CONFIRMATION, SCREENING_TOKENS)
                                 for c, t in corpora.items()}}
        fields = {"model": name, "benchmark": True}
        saved = 0.0
        for kind, windows in sets.items():
            t = time.perf_counter()
            SweepPerplexity(model, windows, {n // 2}, registry=registry)
            plain = time.perf_counter() - t
            t = time.perf_counter()
            computed = SweepPerplexity(model, windows, {n // 2}, registry=registry, cache_fields=fields)
            write = time.perf_counter() - t
            t = time.perf_counter()
            loaded_scorer = SweepPerplexity(model, windows, {1, n // 3}, registry=registry, cache_fields=fields)
            load = time.perf_counter() - t
            entry = states_path(computed.cache_key) if computed.cache_key else None
            size = entry.stat().st_size / 2**20 if entry and entry.is_file() else 0.0
            same = loaded_scorer.from_cache and loaded_scorer.dense == computed.dense and all(
                _numbers(loaded_scorer(r)) == _numbers(computed(r)) for r in ([1, 2], [n // 3, n // 3 + 1], [n - 2, n - 1]))
            saved += AVOIDED[kind] * (plain - load)
            print(f"{name} ({n} blocks), {kind} windows ({sum(w.shape[0] for w in windows.values())} x {SEQ_LEN}): "
                  f"dense pass {plain:.1f} s; cached: first {write:.1f} s (every block kept and written), "
                  f"loaded {load:.2f} s; entry {size:.0f} MiB; identical: {same}"
                  + ("" if entry else " (no entry written)"))
        print(f"  the default study avoids {AVOIDED['screening']} screening and {AVOIDED['confirmation']} "
              f"confirmation dense passes: about {saved:.0f} s saved on {name}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["smollm2-135m", "gemma3-270m"])
