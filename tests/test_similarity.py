"""Cosine similarity accumulator (eqs. 3-4) on hand-computed inputs."""

import math

import numpy as np
import pytest
import torch

from lorp.builtins.similarity import CosineAccumulator


def hand_case():
    # 2 blocks (+ last output), 1 sequence, 3 tokens (last one is padding), hidden 2
    h = torch.zeros(3, 1, 3, 2)
    h[0, 0, 0] = torch.tensor([1.0, 0.0])
    h[0, 0, 1] = torch.tensor([0.0, 2.0])
    h[1, 0, 0] = torch.tensor([1.0, 1.0])
    h[1, 0, 1] = torch.tensor([0.0, -3.0])
    h[:, 0, 2] = torch.tensor([5.0, -7.0])  # padding: must not count
    h[0, 0, 2] = torch.tensor([-5.0, 7.0])
    mask = torch.tensor([[True, True, False]])
    return h, mask


def test_hand_computed_cosine_with_padding_excluded():
    h, mask = hand_case()
    acc = CosineAccumulator(2)
    acc.update(h, mask)
    s = acc.result()
    expected = (1 / math.sqrt(2) + -1.0) / 2
    np.testing.assert_allclose(s, [[1, expected], [expected, 1]], atol=1e-7)


def test_streaming_equals_one_big_batch(fake_hidden_states):
    h, mask = fake_hidden_states(num_blocks=5, batch=4, tokens=6, hidden=8, seed=1)
    whole = CosineAccumulator(5)
    whole.update(h, mask)
    parts = CosineAccumulator(5)
    parts.update(h[:, :1], mask[:1])
    parts.update(h[:, 1:], mask[1:])
    np.testing.assert_allclose(parts.result(), whole.result(), atol=1e-6)


def test_result_is_symmetric_with_unit_diagonal_and_bounded(fake_hidden_states):
    h, mask = fake_hidden_states(num_blocks=6, seed=2)
    acc = CosineAccumulator(6)
    acc.update(h, mask)
    s = acc.result()
    assert s.dtype == np.float64 and s.shape == (6, 6)
    np.testing.assert_array_equal(s, s.T)
    np.testing.assert_array_equal(np.diag(s), np.ones(6))
    assert (np.abs(s) <= 1 + 1e-6).all()


def test_no_tokens_is_an_error():
    with pytest.raises(RuntimeError, match="no calibration tokens"):
        CosineAccumulator(3).result()
