"""What foldability costs: the `linear` healer (a map folded into `down_proj`) against the residual-stream map
(:mod:`lorp.heal.residual`, not foldable), on the committed study's removals (issue 46).

    python -m benchmarks.residual_healer                               # SmolLM2 at 8, Gemma 3 at 4 blocks
    python -m benchmarks.residual_healer --models smollm2-135m --methods shortgpt --out /tmp/residual.md

For each (model, method): the removed blocks of the committed study (``reports/<model>/results.json``, run seed
0, the detail budget), the study's calibration draw (32 × 256 tokens of lambada, seed 0) and its screening
windows (8 × 256 tokens per corpus). Each healer is fitted on the dense model with that draw, choosing its
strength or no map on every 4th calibration row; then perplexity, the share of the gap to dense closed (in log
perplexity, averaged over the corpora), the fit time and the greedy decode speed with the KV cache are measured.
Prints Markdown; nothing is asserted.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import click
import torch

from lorp.evaluate.perplexity import perplexity
from lorp.evaluate.speed import decode_speed
from lorp.heal.fit import fit_healer
from lorp.heal.forward import weights_written
from lorp.heal.residual import fit_stream_maps, stream_maps_inserted
from lorp.model.data import calibration_samples, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.model.pruning import blocks_removed
from lorp.plugins.components import HealRequest
from lorp.plugins.registry import load_registry

REPORTS = Path(__file__).resolve().parents[1] / "reports"
#: The committed study's detail budget per model.
DETAIL_BUDGET = {"smollm2-135m": 8, "gemma3-270m": 4, "qwen2.5-0.5b": 6}


def committed_removal(model_key: str, method: str, budget: int) -> list[int]:
    """The blocks ``method`` removes at ``budget`` in the committed study (run seed 0)."""
    record = json.loads((REPORTS / model_key / "results.json").read_text())
    (cell,) = [c for c in record["cells"] if c["method"] == method and c["budget"] == budget and c.get("seed", 0) == 0]
    return [int(b) for b in cell["pruned"]]


def _ppl(model, windows) -> dict[str, float]:
    return {c: perplexity(model, w, progress=False).perplexity for c, w in windows.items()}


def _gap_closed(dense: dict, unhealed: dict, healed: dict) -> float:
    """Share of the gap to dense closed, in log perplexity averaged over the corpora."""
    gap = sum(math.log(unhealed[c]) - math.log(dense[c]) for c in dense)
    return sum(math.log(unhealed[c]) - math.log(healed[c]) for c in dense) / gap if gap else float("nan")


def measure(model_key: str, methods: list[str]) -> list[dict]:
    loaded = load_model(model_key)
    model, tok = loaded.model, loaded.tokenizer
    registry = load_registry()
    ids = calibration_samples(tok, load_corpus("lambada", registry), 32, 256, 0)
    mask = torch.ones_like(ids)
    windows = {c: evaluation_windows(tok, load_corpus(c, registry), 256, 2048) for c in ("ptb", "wiki-paragraphs")}
    prompt = tok("The history of the city begins", return_tensors="pt").input_ids
    with torch.no_grad():
        dense = _ppl(model, windows)
    rows = []
    budget = DETAIL_BUDGET[model_key]
    for method in methods:
        removed = committed_removal(model_key, method, budget)
        t = time.perf_counter()
        fit = fit_healer(registry.healer("linear"), HealRequest(model=model, removed=tuple(removed), calibration=ids,
                                                                 attention_mask=mask, registry=registry))
        linear_s = time.perf_counter() - t
        t = time.perf_counter()
        maps, record = fit_stream_maps(model, ids, mask, removed, registry=registry)
        residual_s = time.perf_counter() - t
        with torch.no_grad():
            with blocks_removed(model, removed, registry) as pruned:
                unhealed, unhealed_speed = _ppl(pruned, windows), decode_speed(pruned, prompt)["tokens_per_s"]
            with weights_written(model, fit.weights), blocks_removed(model, removed, registry) as pruned:
                linear, linear_speed = _ppl(pruned, windows), decode_speed(pruned, prompt)["tokens_per_s"]
            with stream_maps_inserted(model, maps, registry=registry), blocks_removed(model, removed, registry) as pruned:
                residual, residual_speed = _ppl(pruned, windows), decode_speed(pruned, prompt)["tokens_per_s"]
        rows.append({"model": model_key, "method": method, "budget": budget, "removed": removed, "dense": dense,
                     "unhealed": unhealed, "linear": linear, "residual": residual,
                     "linear_closed": _gap_closed(dense, unhealed, linear),
                     "residual_closed": _gap_closed(dense, unhealed, residual),
                     "linear_s": linear_s, "residual_s": residual_s, "kept_maps": record["kept_maps"],
                     "maps": len(record["maps"]), "speed": (unhealed_speed, linear_speed, residual_speed)})
    return rows


@click.command()
@click.option("--models", default="smollm2-135m,gemma3-270m", show_default=True)
@click.option("--methods", default="lorp,shortgpt,streamline", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the Markdown here")
def main(models: str, methods: str, out: Path | None) -> None:
    lines = ["| model | method | removed | perplexity ptb / wiki: dense · unhealed · linear · residual | gap closed: "
             "linear · residual | maps kept (residual) | fit s: linear · residual | decode tokens/s: unhealed · "
             "linear · residual |", "|---|---|---|---|---|---|---|---|"]
    for model_key in [m for m in models.split(",") if m]:
        for r in measure(model_key, [m for m in methods.split(",") if m]):
            ppl = " · ".join("/".join(f"{r[k][c]:,.1f}" for c in ("ptb", "wiki-paragraphs"))
                             for k in ("dense", "unhealed", "linear", "residual"))
            lines.append(f"| {r['model']} | {r['method']} | {r['removed']} | {ppl} | "
                         f"{100 * r['linear_closed']:.1f} % · {100 * r['residual_closed']:.1f} % | "
                         f"{r['kept_maps']} of {r['maps']} | {r['linear_s']:.1f} · {r['residual_s']:.1f} | "
                         + " · ".join(f"{s:.1f}" for s in r["speed"]) + " |")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if out is not None:
        out.write_text(text + "\n")


if __name__ == "__main__":
    main()
