"""RLS (eqs. 5-6), K thresholds, matrix validation."""

import math

import numpy as np
import pytest

from lorp.errors import ConfigError
from lorp.method.locality import choose_k, representation_locality_score


def constant(n, value):
    s = np.full((n, n), value)
    np.fill_diagonal(s, 1.0)
    return s


@pytest.mark.parametrize("value, rls, k", [
    (0.5, 1.0, 2),                  # boundary: RLS = 1.0 -> K = 2
    (0.25, 2.0, 2),
    (0.6, -math.log2(0.6), 3),      # 0.737
    (0.7, -math.log2(0.7), 4),      # 0.515
])
def test_rls_and_k_by_hand(value, rls, k):
    got = representation_locality_score(constant(5, value))
    assert got == pytest.approx(rls)
    assert choose_k(got) == k


def test_rls_uses_only_upper_triangle_mean():
    s = np.eye(3)
    s[0, 1] = s[1, 0] = 0.8
    s[0, 2] = s[2, 0] = 0.4
    s[1, 2] = s[2, 1] = 0.3
    assert representation_locality_score(s) == pytest.approx(-math.log2(0.5))


def test_k_thresholds_at_the_boundaries():
    assert choose_k(1.0) == 2
    assert choose_k(0.9999) == 3
    assert choose_k(0.7) == 3
    assert choose_k(0.6999) == 4


def test_nonpositive_mean_gives_infinite_rls():
    assert representation_locality_score(constant(4, -0.2)) == math.inf


@pytest.mark.parametrize("bad, match", [
    (np.ones((3, 4)), "square"),
    (np.ones((2, 2)), "at least 3"),
    (np.array([[1, .5, 0], [.4, 1, 0], [0, 0, 1.]]), "symmetric"),
    (np.array([[1, np.nan, 0], [np.nan, 1, 0], [0, 0, 1.]]), "NaN"),
    (np.array([[1, 2.5, 0], [2.5, 1, 0], [0, 0, 1.]]), r"must lie in \[-1, 1\].*from 0 to 2.5"),
])
def test_bad_matrices(bad, match):
    with pytest.raises(ConfigError, match=match):
        representation_locality_score(bad)
