"""Beyond one device: a model dispatched by accelerate (CPU + disk offload) gives the same S and perplexity."""

import numpy as np
import pytest

from lorp.evaluate.perplexity import SweepPerplexity, perplexities
from lorp.method.capture import capture_similarities
from lorp.model.data import calibration_samples, evaluation_windows, load_corpus
from lorp.model.models import load_model
from lorp.model.pruning import blocks_removed, remove_blocks


@pytest.mark.real_model
def test_cpu_and_disk_offloaded_model_matches_the_undispatched_run(tmp_path, lorp_registry):
    plain = load_model("smollm2-135m")
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu", "model.norm": "disk",
                  **{f"model.layers.{i}": ("cpu" if i < 15 else "disk") for i in range(30)}}
    split = load_model("smollm2-135m", device_map=device_map, offload_folder=tmp_path / "offload")
    assert set(split.model.hf_device_map.values()) == {"cpu", "disk"}
    layers = split.model.model.layers
    assert layers[20].mlp.down_proj.weight.device.type == "meta"  # on disk, loaded by accelerate's hooks per call
    assert layers[3].mlp.down_proj.weight.device.type == "cpu"

    corpus = load_corpus("lambada", lorp_registry)
    ids = calibration_samples(plain.tokenizer, corpus, 2, 48, 0)
    metrics = {n: lorp_registry.similarity(n) for n in ("cosine", "angular-distance")}
    a = capture_similarities(plain.model, ids, metrics, progress=False, registry=lorp_registry)
    b = capture_similarities(split.model, ids, metrics, progress=False, registry=lorp_registry)
    for name in metrics:
        np.testing.assert_allclose(b.matrices[name], a.matrices[name], atol=1e-5)

    windows = {"ptb": evaluation_windows(plain.tokenizer, load_corpus("ptb", lorp_registry), 64, 192)}
    dense_a = perplexities(plain.model, windows, progress=False)["ptb"]["nll"]
    assert perplexities(split.model, windows, progress=False)["ptb"]["nll"] == pytest.approx(dense_a, rel=1e-5)
    with blocks_removed(plain.model, [5, 20]):
        pruned_a = perplexities(plain.model, windows, progress=False)["ptb"]["nll"]
    assert SweepPerplexity(split.model, windows, {5})([5, 20])["ptb"]["nll"] == pytest.approx(pruned_a, rel=1e-5)
    remove_blocks(split.model, [5, 20])  # pruning in place keeps the offloaded blocks' weights with them
    assert perplexities(split.model, windows, progress=False)["ptb"]["nll"] == pytest.approx(pruned_a, rel=1e-5)
