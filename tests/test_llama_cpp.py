"""Optional: llama.cpp itself loads lorp's exported GGUF, scores it as lorp does, and decodes (issue 45).

Skipped unless `make llama-cpp` installed npm's node-llama-cpp (a prebuilt llama.cpp) in tools/llama-cpp; CI does
not. benchmarks/llama_cpp.py measures the same with more windows, healed, and the decode speed.
"""

import math

import pytest

from benchmarks.llama_cpp import perplexity_of, run_llama, unavailable

pytestmark = [pytest.mark.real_model, pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))]


def test_llama_cpp_runs_the_exported_smollm2_as_lorp_scores_it(tmp_path, smollm2):
    import torch

    from lorp.evaluate.perplexity import perplexity
    from lorp.model.data import evaluation_windows, load_corpus
    from lorp.model.gguf_export import export_pruned_gguf
    from lorp.model.models import bundled_gguf
    from lorp.model.pruning import blocks_removed

    removed = [13, 14, 17, 25]  # ShortGPT's on SmolLM2 at budget 4
    out = export_pruned_gguf(bundled_gguf("smollm2-135m"), tmp_path / "pruned.gguf", removed)
    windows = evaluation_windows(smollm2.tokenizer, load_corpus("wiki-paragraphs"), 256, 4096)[:4]
    prompt = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    answer = run_llama(out, {"windows": windows.tolist(), "generate": {"prompt": prompt[0].tolist(), "tokens": 8}})
    assert answer["architecture"] == "llama" and answer["block_count"] == 26
    assert len(answer["generate"]["ids"]) == 8 and answer["generate"]["tokens_per_second"] > 0
    with torch.no_grad(), blocks_removed(smollm2.model, removed) as model:
        ours = perplexity(model, windows, progress=False).perplexity
    theirs = perplexity_of(answer)
    # llama.cpp multiplies the quantised tensors with 8-bit activations; lorp dequantises to float32
    assert math.isfinite(theirs) and abs(theirs / ours - 1) < 0.05, (theirs, ours)
