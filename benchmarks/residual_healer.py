"""What foldability costs: the `linear` healer (a map folded into `down_proj`) against the residual-stream map
(:mod:`lorp.heal.residual`, not foldable), on the committed study's removals (issue 46).

    python -m benchmarks.residual_healer                               # SmolLM2 at 8, Gemma 3 at 4 blocks
    python -m benchmarks.residual_healer --models smollm2-135m --methods shortgpt --out /tmp/residual.md

For each (model, method): the removed blocks of the committed study (``reports/<model>/results.json``, run seed
0, the detail budget), the study's calibration draw (32 × 256 tokens of lambada, seed 0) and its screening
windows (8 × 256 tokens per corpus). Each healer is fitted on the dense model with that draw, choosing its
strength or no map on every 4th calibration row, through the registered healers (``linear``, ``residual``) and
:func:`lorp.heal.fit.healing_applied`, as ``lorp prune --heal`` and the grid run them. Then: perplexity, the share
of the gap to dense closed (in log perplexity, averaged over the corpora), the residual-healed perplexity over the
linear-healed one with its 95 % paired interval over the windows, the fit time, and the greedy decode speed with
the KV cache (3 alternating rounds of 3 repeats each; the median, and the residual/linear ratio per round).
Prints Markdown; nothing is asserted.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import click
import torch

from lorp.evaluate.perplexity import perplexity
from lorp.evaluate.perplexity_uncertainty import compare_perplexity
from lorp.evaluate.speed import decode_speed
from lorp.heal.fit import fit_healer, healing_applied
from lorp.model.data import calibration_samples, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.model.pruning import blocks_removed
from lorp.plugins.components import HealRequest
from lorp.plugins.registry import load_registry

from benchmarks._common import emit_markdown

REPORTS = Path(__file__).resolve().parents[1] / "reports"
#: The committed study's detail budget per model.
DETAIL_BUDGET = {"smollm2-135m": 8, "gemma3-270m": 4, "qwen2.5-0.5b": 6}


def committed_removal(model_key: str, method: str, budget: int) -> list[int]:
    """The blocks ``method`` removes at ``budget`` in the committed study (run seed 0)."""
    record = json.loads((REPORTS / model_key / "results.json").read_text())
    (cell,) = [c for c in record["cells"] if c["method"] == method and c["budget"] == budget and c.get("seed", 0) == 0]
    return [int(b) for b in cell["pruned"]]


def _evaluate(model, windows) -> SimpleNamespace:
    """Perplexity per corpus, as a row :func:`lorp.evaluate.perplexity_uncertainty.compare_perplexity` pairs."""
    ppl = {c: perplexity(model, w, progress=False) for c, w in windows.items()}
    return SimpleNamespace(perplexity={c: p.perplexity for c, p in ppl.items()},
                           window_nll={c: p.window_nll for c, p in ppl.items()},
                           window_tokens={c: p.tokens // p.windows for c, p in ppl.items()})


def _gap_closed(dense: dict, unhealed: dict, healed: dict) -> float:
    """Share of the gap to dense closed, in log perplexity averaged over the corpora."""
    gap = sum(math.log(unhealed[c]) - math.log(dense[c]) for c in dense)
    return sum(math.log(unhealed[c]) - math.log(healed[c]) for c in dense) / gap if gap else float("nan")


def measure(model_key: str, methods: list[str], rounds: int = 3) -> list[dict]:
    loaded = load_model(model_key)
    model, tok = loaded.model, loaded.tokenizer
    registry = load_registry()
    ids = calibration_samples(tok, load_corpus("lambada", registry), 32, 256, 0)
    mask = torch.ones_like(ids)
    windows = {c: evaluation_windows(tok, load_corpus(c, registry), 256, 2048) for c in ("ptb", "wiki-paragraphs")}
    prompt = tok("The history of the city begins", return_tensors="pt").input_ids
    with torch.no_grad():
        dense = _evaluate(model, windows).perplexity
    rows = []
    budget = DETAIL_BUDGET[model_key]
    for method in methods:
        removed = committed_removal(model_key, method, budget)
        fits = {name: fit_healer(registry.healer(name), HealRequest(
            model=model, removed=tuple(removed), calibration=ids, attention_mask=mask, registry=registry))
            for name in ("none", "linear", "residual")}  # the registered healers, as lorp prune and the grid run them
        evaluated, speed = {}, {name: [] for name in fits}
        with torch.no_grad():
            for name, fit in fits.items():
                with healing_applied(model, fit, registry), blocks_removed(model, removed, registry) as pruned:
                    evaluated[name] = _evaluate(pruned, windows)
            for _ in range(rounds):  # alternating, so drift in the machine's speed hits every healer alike
                for name, fit in fits.items():
                    with healing_applied(model, fit, registry), blocks_removed(model, removed, registry) as pruned:
                        speed[name].append(decode_speed(pruned, prompt)["tokens_per_s"])
        ppl = {name: e.perplexity for name, e in evaluated.items()}
        rows.append({"model": model_key, "method": method, "budget": budget, "removed": removed, "dense": dense,
                     "unhealed": ppl["none"], "linear": ppl["linear"], "residual": ppl["residual"],
                     "linear_closed": _gap_closed(dense, ppl["none"], ppl["linear"]),
                     "residual_closed": _gap_closed(dense, ppl["none"], ppl["residual"]),
                     "residual_vs_linear": compare_perplexity(evaluated["linear"], evaluated["residual"]),
                     "linear_s": fits["linear"].seconds, "residual_s": fits["residual"].seconds,
                     "kept": {name: fits[name].record.get("kept_maps") for name in ("linear", "residual")},
                     "maps": len(fits["residual"].record["maps"]),
                     "speed": tuple(statistics.median(speed[name]) for name in fits),
                     "speed_ratio": [r / li for r, li in zip(speed["residual"], speed["linear"])]})
    return rows


@click.command()
@click.option("--models", default="smollm2-135m,gemma3-270m", show_default=True)
@click.option("--methods", default="lorp,shortgpt,streamline", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the Markdown here")
def main(models: str, methods: str, out: Path | None) -> None:
    lines = ["| model | method | removed | perplexity ptb / wiki: dense · unhealed · linear · residual | gap closed: "
             "linear · residual | residual ÷ linear (95 % paired interval) | maps kept: linear · residual | "
             "fit s: linear · residual | decode tokens/s: unhealed · linear · residual | decode residual ÷ linear |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model_key in [m for m in models.split(",") if m]:
        for r in measure(model_key, [m for m in methods.split(",") if m]):
            ppl = " · ".join("/".join(f"{r[k][c]:,.1f}" for c in ("ptb", "wiki-paragraphs"))
                             for k in ("dense", "unhealed", "linear", "residual"))
            k = r["residual_vs_linear"]
            ratios = r["speed_ratio"]
            lines.append(f"| {r['model']} | {r['method']} | {r['removed']} | {ppl} | "
                         f"{100 * r['linear_closed']:.1f} % · {100 * r['residual_closed']:.1f} % | "
                         f"{k.ratio:.3f}× [{k.ratio_low:.3f}, {k.ratio_high:.3f}] | "
                         f"{r['kept']['linear']} · {r['kept']['residual']} of {r['maps']} | "
                         f"{r['linear_s']:.1f} · {r['residual_s']:.1f} | "
                         + " · ".join(f"{s:.1f}" for s in r["speed"])
                         + f" | {statistics.median(ratios):.2f}× ({min(ratios):.2f}-{max(ratios):.2f}) |")
            print(lines[-1], flush=True)
    emit_markdown(lines, out)


if __name__ == "__main__":
    main()
