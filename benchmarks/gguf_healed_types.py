"""What the GGUF type of a healed tensor costs: perplexity of the healed pruned model with its healed tensors
kept in float32, or rounded through F16, Q8_0 and the source file's own type (where gguf-py can quantise it).

    python -m benchmarks.gguf_healed_types                                  # SmolLM2 and Gemma 3, budget 4
    python -m benchmarks.gguf_healed_types --models smollm2-135m --methods lorp,shortgpt --out /tmp/types.md

For each (model, method): ``lorp prune --budget B --heal linear`` in process (the default calibration set and
evaluation windows), then each healed tensor is written into the model as a GGUF reader would read it back
(:func:`lorp.model.gguf_export.encode_tensor`, then gguf-py's dequantiser) and the perplexity measured on the run's
own evaluation windows. The healed tensors are those the run's ``healing.weights`` lists; every other tensor is
the source's, so this isolates the healed tensors' type. Prints Markdown; nothing is asserted.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import gguf
import numpy as np
import torch

from lorp.evaluate.perplexity import perplexity
from lorp.model.data import evaluation_windows, load_corpus
from lorp.model.gguf_export import HEALED_TYPES, encode_tensor, gguf_tensor_name, to_gguf_layout
from lorp.model.models import bundled_gguf
from lorp.run.gguf import pruned_parameter_name
from lorp.run.pipeline import PruneConfig
from lorp.run.prune import run_prune

from benchmarks._common import emit_markdown


def _source_types(source: Path) -> dict[str, gguf.GGMLQuantizationType]:
    return {t.name: t.tensor_type for t in gguf.GGUFReader(source).tensors}


def _round_trip(values: np.ndarray, type_name: str) -> np.ndarray:
    if type_name == "F32":
        return values
    if type_name in HEALED_TYPES:
        data, qtype = encode_tensor(values, type_name)
    else:
        qtype = gguf.GGMLQuantizationType[type_name]
        data = gguf.quants.quantize(values, qtype)
    return gguf.quants.dequantize(data, qtype).reshape(values.shape)


def measure(model_key: str, method: str, budget: int) -> list[dict]:
    """Rows ``{model, method, type, corpus: perplexity …}`` for one pruned and healed model."""
    t = time.perf_counter()
    config = PruneConfig(model=model_key, budget=budget, allocation=method, heal="linear", save_model=False)
    run = run_prune(config)
    fit_s = time.perf_counter() - t
    results, model = run.results, run.model
    source = bundled_gguf(model_key)
    reader = gguf.GGUFReader(source)
    arch = reader.get_field("general.architecture").contents()
    blocks = int(reader.get_field(f"{arch}.block_count").contents())
    types = _source_types(source)
    params = dict(model.named_parameters())
    healed = {}  # pruned-model parameter -> (GGUF name, float32 values in GGUF layout)
    for name in results["healing"]["weights"]:
        pruned_name = pruned_parameter_name(name, results["kept"])
        gguf_name = gguf_tensor_name(arch, name, blocks)
        healed[pruned_name] = (gguf_name, to_gguf_layout(arch, gguf_name, params[pruned_name].detach().numpy()))
    source_kinds = sorted({types[g].name for g, v in healed.values() if v.ndim > 1})
    candidates = ["F32", "F16", "Q8_0"] + [k for k in source_kinds if k not in ("F32", "F16", "Q8_0")]
    windows = {c: evaluation_windows(run.tokenizer, load_corpus(c), config.eval_seq_len, config.eval_tokens)
               for c in config.eval_corpora}
    originals = {n: params[n].detach().clone() for n in healed}
    rows = []
    for kind in candidates:
        try:
            with torch.no_grad():
                for n, (gguf_name, values) in healed.items():
                    if values.ndim == 1:
                        continue  # 1-D gains are written in F32 whatever the type
                    back = _round_trip(values, kind)  # a 2-D tensor's layout is the Hugging Face one
                    params[n].copy_(torch.from_numpy(np.ascontiguousarray(back, dtype=np.float32)))
            ppl = {c: perplexity(model, w, batch_size=config.batch_size, progress=False).perplexity
                   for c, w in windows.items()}
        except NotImplementedError:
            continue  # gguf-py cannot quantise this type (k-quants)
        finally:
            with torch.no_grad():
                for n, value in originals.items():
                    params[n].copy_(value)
        rows.append({"model": model_key, "method": method, "pruned": results["pruned"], "type": kind,
                     "source": kind in source_kinds, "perplexity": ppl, "fit_s": fit_s,
                     "healed": [g for g, _ in healed.values()]})
    return rows


@click.command()
@click.option("--models", default="smollm2-135m,gemma3-270m", show_default=True)
@click.option("--methods", default="lorp,shortgpt", show_default=True)
@click.option("--budget", type=int, default=4, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the Markdown here")
def main(models: str, methods: str, budget: int, out: Path | None) -> None:
    lines = ["| model | method | removed | healed type | " + " | ".join(("perplexity ptb", "perplexity wiki-paragraphs",
                                                                          "change vs F32")) + " |",
             "|---|---|---|---|---|---|---|"]
    for model_key in [m for m in models.split(",") if m]:
        for method in [m for m in methods.split(",") if m]:
            rows = measure(model_key, method, budget)
            base = rows[0]["perplexity"]
            for r in rows:
                ppl = r["perplexity"]
                change = max(abs(ppl[c] / base[c] - 1) for c in ppl)
                kind = r["type"] + (" (source's)" if r["source"] else "")
                lines.append(f"| {r['model']} | {r['method']} | {r['pruned']} | {kind} | "
                             + " | ".join(f"{ppl[c]:.3f}" for c in sorted(ppl)) + f" | {100 * change:.3f} % |")
            print("\n".join(lines[-len(rows):]), flush=True)
    emit_markdown(lines, out)


if __name__ == "__main__":
    main()
