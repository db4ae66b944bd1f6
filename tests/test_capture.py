"""Calibration pass: hooks see block inputs; padding excluded; one forward per batch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lorp.errors import ConfigError
from lorp.method.capture import capture_similarities


def reference_similarity(model, ids):
    """S from output_hidden_states: states 0..N-1 are the block inputs."""
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    n = len(hs) - 1
    x = torch.stack([F.normalize(h.reshape(-1, h.shape[-1]).double(), dim=-1) for h in hs[:n]])
    return torch.einsum("itd,jtd->ij", x, x).numpy() / x.shape[1]


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_hooks_match_output_hidden_states(tiny_model, lorp_registry, arch):
    model = tiny_model(arch, num_blocks=5)
    ids = torch.randint(0, 128, (3, 12), generator=torch.Generator().manual_seed(0))
    res = capture_similarities(model, ids, {"cosine": lorp_registry.similarity("cosine")}, batch_size=2, progress=False)
    s = res.matrices["cosine"]
    ref = reference_similarity(model, ids)
    np.fill_diagonal(ref, 1.0)
    np.testing.assert_allclose(s, ref, atol=1e-5)
    assert res.num_blocks == 5 and res.num_tokens == 36 and res.forward_passes == 2


def test_padding_is_excluded(tiny_model, lorp_registry):
    model = tiny_model("llama", num_blocks=4)
    metric = {"cosine": lorp_registry.similarity("cosine")}
    g = torch.Generator().manual_seed(1)
    a, b = torch.randint(1, 128, (1, 10), generator=g), torch.randint(1, 128, (1, 6), generator=g)
    separate = capture_similarities(model, a, metric, progress=False).matrices["cosine"] * 10
    separate += capture_similarities(model, b, metric, progress=False).matrices["cosine"] * 6
    padded = torch.zeros(2, 10, dtype=torch.long)
    padded[0], padded[1, :6] = a[0], b[0]
    mask = torch.zeros(2, 10, dtype=torch.long)
    mask[0], mask[1, :6] = 1, 1
    together = capture_similarities(model, padded, metric, attention_mask=mask, batch_size=2, progress=False)
    assert together.num_tokens == 16
    np.testing.assert_allclose(together.matrices["cosine"], separate / 16, atol=1e-5)


def test_hooks_are_removed_afterwards(tiny_model, lorp_registry):
    model = tiny_model("llama", num_blocks=3)
    capture_similarities(model, torch.ones(1, 4, dtype=torch.long), {"c": lorp_registry.similarity("cosine")}, progress=False)
    assert all(not blk._forward_pre_hooks and not blk._forward_hooks for blk in model.model.layers)


def test_empty_calibration_set_is_an_error(tiny_model, lorp_registry):
    with pytest.raises(ConfigError, match="non-empty"):
        capture_similarities(tiny_model(), torch.zeros(0, 4, dtype=torch.long), {"c": lorp_registry.similarity("cosine")})
