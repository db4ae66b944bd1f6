"""llama.cpp itself on lorp's exported GGUF: its perplexity and decode speed, dense against pruned (issue 45).

    make llama-cpp                                   # once: npm installs node-llama-cpp's prebuilt llama.cpp
    python -m benchmarks.llama_cpp                   # SmolLM2, ShortGPT at budget 8 healed with linear
    python -m benchmarks.llama_cpp --method lorp --budget 4 --windows 4 --out /tmp/llama.md

No Python package on the registries ships a prebuilt llama.cpp that runs these architectures (docs/usage.md);
npm's ``node-llama-cpp`` does, so ``tools/llama-cpp/llama.mjs`` asks it for the numbers. The pruned model is made
with ``lorp prune … --gguf`` in process; llama.cpp then scores the run's own evaluation windows (token ids, so both
sides score the same tokens) with the dense and the pruned file, and decodes greedily from one prompt. lorp's
numbers come from the same run (float32 dequantised weights); llama.cpp computes with the quantised tensors, so
the two differ by its arithmetic. Prints Markdown; nothing is asserted.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from benchmarks._common import emit_markdown, quartiles

#: The folder of the node script and its package.json (``make llama-cpp`` installs node_modules there).
TOOL = Path(__file__).resolve().parents[1] / "tools" / "llama-cpp"


def unavailable() -> str | None:
    """Why llama.cpp cannot run here (no ``node``, or ``make llama-cpp`` not run), or ``None`` when it can."""
    if shutil.which("node") is None:
        return "node is not installed (llama.cpp comes from npm's node-llama-cpp)"
    if not (TOOL / "node_modules" / "node-llama-cpp").is_dir():
        return "node-llama-cpp is not installed; run `make llama-cpp`"
    return None


def run_llama(model: Path, request: dict, timeout: float = 900) -> dict:
    """llama.cpp's answer to ``request`` for GGUF ``model`` (see ``tools/llama-cpp/llama.mjs``).

    Raises:
        RuntimeError: llama.cpp is unavailable or the script failed (its stderr is in the message).
    """
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(request, f)
    try:
        done = subprocess.run(["node", str(TOOL / "llama.mjs"), str(model), f.name], capture_output=True, text=True,
                              timeout=timeout, cwd=TOOL)
    finally:
        Path(f.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"llama.cpp failed on {model}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def perplexity_of(answer: dict) -> float:
    """exp(mean NLL per predicted token) of a llama.cpp answer's windows."""
    return math.exp(sum(answer["nll"]) / sum(answer["predicted"]))


@click.command()
@click.option("--model", "model_key", default="smollm2-135m", show_default=True)
@click.option("--method", default="shortgpt", show_default=True)
@click.option("--budget", type=int, default=8, show_default=True)
@click.option("--heal", default="linear", show_default=True)
@click.option("--windows", type=int, default=16, show_default=True, help="evaluation windows per corpus")
@click.option("--tokens", type=int, default=128, show_default=True, help="greedy tokens to decode")
@click.option("--rounds", type=int, default=5, show_default=True,
              help="decode-speed rounds, dense and pruned alternating, each a fresh process of 3 timed repeats")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write the Markdown here")
def main(model_key, method, budget, heal, windows, tokens, rounds, out) -> None:
    from lorp.model.data import evaluation_windows, load_corpus
    from lorp.model.models import bundled_gguf
    from lorp.run.pipeline import PruneConfig
    from lorp.run.prune import run_prune

    reason = unavailable()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as tmp:
        pruned = Path(tmp) / "pruned.gguf"
        config = PruneConfig(model=model_key, budget=budget, allocation=method, heal=heal, save_model=False)
        run = run_prune(config, gguf_path=pruned)
        r = run.results
        prompt = run.tokenizer("The capital of France is", return_tensors="pt").input_ids[0].tolist()
        rows = [f"{model_key}, {method} at budget {budget} (removed {r['pruned']}), healer {heal}; llama.cpp from "
                "node-llama-cpp 3.22.1, 2 threads", "",
                "| model | blocks | corpus | perplexity, lorp (float32) | perplexity, llama.cpp | llama.cpp ÷ lorp |",
                "|---|---:|---|---:|---:|---:|"]
        files = {"dense": bundled_gguf(model_key), "pruned": pruned}
        for label, key in (("dense", "before"), ("pruned", "after")):
            path = files[label]
            for corpus in config.eval_corpora:
                ids = evaluation_windows(run.tokenizer, load_corpus(corpus), config.eval_seq_len, config.eval_tokens)
                answer = run_llama(path, {"windows": ids[:windows].tolist()})
                ours = r["perplexity"][key][corpus]["perplexity"]
                if windows < ids.shape[0]:
                    ours = float("nan")  # lorp's figure is over every window; score them all to compare
                theirs = perplexity_of(answer)
                rows.append(f"| {label} | {answer['block_count']} | {corpus} | {ours:.2f} | {theirs:.2f} | "
                            f"{theirs / ours:.3f} |")
        rates, texts, ratios = {"dense": [], "pruned": []}, {}, []
        for i in range(rounds):  # alternate which goes first, so drift hits both alike
            for label in (("dense", "pruned") if i % 2 == 0 else ("pruned", "dense")):
                answer = run_llama(files[label], {"generate": {"prompt": prompt, "tokens": tokens, "repeats": 3}})
                rates[label].append(answer["generate"]["tokens_per_second"])
                texts[label] = run.tokenizer.decode(answer["generate"]["ids"][:12])
            ratios.append(rates["pruned"][-1] / rates["dense"][-1])
        rows += ["", f"Decode speed, {rounds} rounds (each the median of 3 timed greedy decodes of up to {tokens} "
                 "tokens after a warm-up); median [quartiles]:", "",
                 "| model | decode tokens/s (llama.cpp) | first greedy tokens |", "|---|---:|---|"]
        for label in ("dense", "pruned"):
            q1, q2, q3 = quartiles(rates[label])
            rows.append(f"| {label} | {q2:.1f} [{q1:.1f}, {q3:.1f}] | {texts[label]!r} |")
        q1, q2, q3 = quartiles(ratios)
        rows.append(f"\nPruned ÷ dense decode speed, per round: {q2:.2f}× [{q1:.2f}, {q3:.2f}]")
    emit_markdown(rows, out)


if __name__ == "__main__":
    main()
