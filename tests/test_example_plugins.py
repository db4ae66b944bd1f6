"""The example plugins in plugins/: CKA, contiguous segmentation, spread allocation (hand-checked)."""

import numpy as np
import pytest
import torch

from lorp.method.selection import select_blocks
from lorp.paths import PLUGINS_DIR
from lorp.plugins.components import AllocationRequest
from lorp.plugins.registry import PluginSettings, load_registry
from lorp.testing import symmetric_matrix as sym


@pytest.fixture(scope="module")
def registry():
    return load_registry(PluginSettings(autoload=True, plugin_dirs=(PLUGINS_DIR,)))


# ---- linear CKA -------------------------------------------------------------------------------

def cka_of(registry, hidden, mask=None):
    acc = registry.similarity("cka").create(hidden.shape[0] - 1)
    acc.update(hidden, torch.ones(hidden.shape[1:3], dtype=torch.bool) if mask is None else mask)
    return acc.result()


def test_cka_is_invariant_to_rotation_and_isotropic_scaling(registry):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    hidden = torch.stack([x, 3.0 * x @ q, torch.randn(1, 64, 16, generator=g), x])  # N = 3 (+ output)
    s = cka_of(registry, hidden)
    assert s[0, 1] == pytest.approx(1.0, abs=1e-9)   # same up to rotation and scale
    assert abs(s[0, 2]) < 0.1                        # independent noise: near 0 (unbiased estimator)
    np.testing.assert_array_equal(np.diag(s), 1.0)
    np.testing.assert_allclose(s, s.T)


def test_cka_streams_per_sequence_and_ignores_padding(registry):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(4, 2, 12, 8, generator=g)
    both = cka_of(registry, hidden)
    acc = registry.similarity("cka").create(3)
    acc.update(hidden[:, :1], torch.ones(1, 12, dtype=torch.bool))
    acc.update(hidden[:, 1:], torch.ones(1, 12, dtype=torch.bool))
    np.testing.assert_allclose(acc.result(), both, atol=1e-12)
    padded = torch.cat([hidden, torch.full((4, 2, 3, 8), 99.0)], dim=2)
    mask = torch.cat([torch.ones(2, 12, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    np.testing.assert_allclose(cka_of(registry, padded, mask), both, atol=1e-12)


def test_cka_drives_a_calibration_pass(registry, tiny_model):
    from lorp.method.capture import capture_similarities

    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    res = capture_similarities(tiny_model("llama", 4), ids,
                               {"cosine": registry.similarity("cosine"), "cka": registry.similarity("cka")},
                               progress=False)
    assert res.forward_passes == 2 and set(res.matrices) == {"cosine", "cka"}
    assert res.matrices["cka"].shape == (4, 4)


# ---- contiguous segmentation ------------------------------------------------------------------

def test_contiguous_segmentation_by_hand(registry):
    # cost of {0,1,2,3} split after 0: 0 + 2/3 (.5 + .8 + .1) = .933; after 1: .1 + .1 = .2; after 2: .933
    s = sym(4, {(0, 1): .9, (2, 3): .9, (1, 2): .5}, fill=.2)
    labels = registry.clustering("contiguous").cluster(s, 2, 0)
    assert labels.tolist() == [0, 0, 1, 1]


def test_contiguous_segments_are_runs_even_when_spectral_would_not_be(registry):
    # blocks 0-1 resemble 4-5: spectral joins them, contiguous cannot
    s = sym(6, {(0, 1): .9, (4, 5): .9, (0, 4): .85, (0, 5): .85, (1, 4): .85, (1, 5): .85, (2, 3): .9}, fill=.1)
    spectral = registry.clustering("spectral").cluster(s, 2, 0)
    contiguous = registry.clustering("contiguous").cluster(s, 2, 0)
    assert len(set(spectral[[0, 1, 4, 5]])) == 1
    assert all(np.diff(contiguous) >= 0) and contiguous[0] == 0 and contiguous[-1] == 1


# ---- spread allocation -----------------------------------------------------------------------

def test_spread_skips_neighbours_of_removed_blocks(registry):
    # one cluster; redundancy order 2 > 3 > 1 > 4 > ...: LoRP takes 2 then 3, spread takes 2 then 4
    s = sym(6, {(2, 3): .95, (2, 1): .9, (2, 4): .8, (3, 4): .85, (1, 3): .8, (1, 4): .5}, fill=.3)
    labels = np.zeros(6, dtype=int)
    req = AllocationRequest(s, labels, 2, frozenset({0, 5}))
    r = {b: (s[b].sum() - 1) / 5 for b in range(6)}
    assert sorted(range(1, 5), key=lambda b: -r[b]) == [2, 3, 1, 4]
    assert [x.block for x in registry.allocation("lorp").allocate(req)] == [2, 3]
    assert [x.block for x in registry.allocation("lorp-spread").allocate(req)] == [2, 4]


def test_spread_falls_back_to_the_head_when_all_are_adjacent(registry):
    s = sym(4, {(1, 2): .9}, fill=.2)
    req = AllocationRequest(s, np.zeros(4, dtype=int), 2, frozenset({0, 3}))
    assert [x.block for x in registry.allocation("lorp-spread").allocate(req)] == [1, 2]


def test_example_components_work_through_select(registry):
    s = sym(8, {(i, j): .8 for i in range(8) for j in range(i + 1, 8) if abs(i - j) <= 2}, fill=.3)
    sel = select_blocks(s, 3, k=2, clustering="contiguous", allocation="lorp-spread", registry=registry)
    assert sel.labels == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(b not in (0, 7) for b in sel.pruned)
    assert all(abs(a - b) > 1 for a in sel.pruned for b in sel.pruned if a != b)
