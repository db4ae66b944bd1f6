"""Stage 2: Representation Locality Score and the clustering granularity K (LoRP eqs. 5-6)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

#: RLS thresholds (paper, eq. 6): RLS >= 1.0 -> K = 2; 0.7 <= RLS < 1.0 -> K = 3; else K = 4.
DEFAULT_THRESHOLDS: tuple[tuple[float, int], ...] = ((1.0, 2), (0.7, 3))
DEFAULT_FALLBACK_K = 4


def check_similarity(similarity: np.ndarray) -> np.ndarray:
    """Validate and return a similarity matrix as float64 ``[N, N]``.

    Raises:
        ConfigError: not a square 2-D matrix with at least 3 blocks, contains
            NaN/inf, is not symmetric, or has values outside [-1, 1] (tolerance 1e-6).
    """
    try:
        s = np.asarray(similarity, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("similarity matrix must hold numbers") from None
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ConfigError(f"similarity matrix must be square [N, N], got shape {tuple(s.shape)}")
    if s.shape[0] < 3:
        raise ConfigError(f"similarity matrix needs at least 3 blocks, got {s.shape[0]}")
    if not np.isfinite(s).all():
        raise ConfigError("similarity matrix contains NaN or infinite values")
    if not np.allclose(s, s.T, atol=1e-6):
        raise ConfigError("similarity matrix must be symmetric (S[i, j] == S[j, i])")
    if s.min() < -1 - 1e-6 or s.max() > 1 + 1e-6:
        raise ConfigError(f"similarity values must lie in [-1, 1] like cosines (RLS and the affinity (S + 1) / 2 "
                          f"assume it), got values from {s.min():.4g} to {s.max():.4g}")
    return s


def representation_locality_score(similarity: np.ndarray) -> float:
    """RLS = -log2(mean of S[i, j] over i < j) (LoRP paper, eqs. 5-6).

    Args:
        similarity: float ``[N, N]`` symmetric similarity matrix.
    Returns:
        RLS in bits (dimensionless, >= 0 when similarities are <= 1); ``inf``
        when the mean off-diagonal similarity is <= 0 (no global redundancy).
    Raises:
        ConfigError: see :func:`check_similarity`.
    """
    s = check_similarity(similarity)
    mean = float(s[np.triu_indices(s.shape[0], k=1)].mean())
    return math.inf if mean <= 0 else -math.log2(mean)


def choose_k(rls: float, thresholds=DEFAULT_THRESHOLDS, fallback: int = DEFAULT_FALLBACK_K) -> int:
    """Clustering granularity K from RLS (LoRP paper, eq. 6).

    Args:
        rls: Representation Locality Score.
        thresholds: ``(min_rls, k)`` pairs checked in order.
        fallback: K when no threshold is met.
    Returns:
        2 if RLS >= 1.0, 3 if 0.7 <= RLS < 1.0, else 4 (with the defaults).
    """
    for min_rls, k in thresholds:
        if rls >= min_rls:
            return k
    return fallback
