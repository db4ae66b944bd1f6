"""What Gemma 3's index-derived attention would cost a pruned GGUF: the perplexity of the pruned model as lorp runs
it (each kept block keeps its own sliding-window or global attention) against the same tensors in a GGUF, where
llama.cpp and transformers derive each block's attention type (and RoPE base) from its new index.

    python -m benchmarks.gemma3_gguf_attention                      # LoRP and ShortGPT at budget 4, unhealed
    python -m benchmarks.gemma3_gguf_attention --methods lorp --budget 2 --out /tmp/attention.md

:func:`lorp.model.gguf_export.export_pruned_gguf` refuses such a removal (issue 45). Here the refusal is switched
off inside this process only, the file is written, loaded with transformers (``gguf_file=``, which sets
``layer_types`` from the index, every 6th block global, as llama.cpp's ``set_swa_pattern(6)`` does), and scored
on the run's own evaluation windows. The kept blocks that change type are listed. Prints Markdown; nothing is
asserted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from unittest import mock

import click
import torch
from transformers import AutoModelForCausalLM

from lorp.evaluate.perplexity import perplexity
from lorp.model import gguf_export
from lorp.model.data import evaluation_windows, load_corpus
from lorp.model.models import bundled_gguf
from lorp.run.pipeline import PruneConfig
from lorp.run.prune import run_prune

from benchmarks._common import emit_markdown


def measure(method: str, budget: int, model_key: str = "gemma3-270m") -> dict:
    """``{method, pruned, moved, lorp: {corpus: ppl}, gguf: {corpus: ppl}}`` for one unhealed pruned model."""
    config = PruneConfig(model=model_key, budget=budget, allocation=method, save_model=False)
    run = run_prune(config)
    kept = run.results["kept"]
    moved = [f"{old}→{new}" for new, old in enumerate(kept)
             if gguf_export.attention_type("gemma3", old) != gguf_export.attention_type("gemma3", new)]
    windows = {c: evaluation_windows(run.tokenizer, load_corpus(c), config.eval_seq_len, config.eval_tokens)
               for c in config.eval_corpora}
    ours = {c: perplexity(run.model, w, batch_size=config.batch_size, progress=False).perplexity
            for c, w in windows.items()}
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(gguf_export.INDEX_PATTERNED_ATTENTION, clear=True):
        path = gguf_export.export_pruned_gguf(bundled_gguf(model_key), Path(tmp) / "pruned.gguf", run.results["pruned"])
        loaded = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, dtype=torch.float32).eval()
        types = list(loaded.config.layer_types)
        theirs = {c: perplexity(loaded, w, batch_size=config.batch_size, progress=False).perplexity
                  for c, w in windows.items()}
    return {"method": method, "pruned": run.results["pruned"], "moved": moved, "lorp": ours, "gguf": theirs,
            "dense": {c: v["perplexity"] for c, v in run.results["perplexity"]["before"].items()},
            "gguf_global": [i for i, t in enumerate(types) if t == "full_attention"]}


@click.command()
@click.option("--methods", default="lorp,shortgpt", show_default=True)
@click.option("--budget", type=int, default=4, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the Markdown here")
def main(methods: str, budget: int, out: Path | None) -> None:
    lines = ["| method | removed | kept blocks changing type (old→new) | corpus | dense | pruned, own types (lorp) | "
             "pruned, index-derived types (GGUF) | change |", "|---|---|---|---|---|---|---|---|"]
    for method in [m for m in methods.split(",") if m]:
        r = measure(method, budget)
        for c in sorted(r["lorp"]):
            lines.append(f"| {r['method']} | {r['pruned']} | {', '.join(r['moved']) or 'none'} | {c} | "
                         f"{r['dense'][c]:.2f} | {r['lorp'][c]:.2f} | {r['gguf'][c]:.2f} | "
                         f"{100 * (r['gguf'][c] / r['lorp'][c] - 1):+.1f} % |")
        print("\n".join(lines[-len(r["lorp"]):]), flush=True)
    emit_markdown(lines, out)


if __name__ == "__main__":
    main()
