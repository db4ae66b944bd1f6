"""Paired t (perplexity), paired bootstrap, Wilson and McNemar (accuracy): known cases, a seeded example redone by hand in numpy, properties."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from lorp.evaluate.accuracy_uncertainty import (accuracy_interval, accuracy_intervals, bootstrap_accuracy,
                                                compare_accuracy, mcnemar_exact, paired_bootstrap_accuracy,
                                                wilson_interval)
from lorp.evaluate.perplexity_uncertainty import (compare_per_corpus, compare_perplexity, paired_t_log_ratio,
                                                  paired_t_nll)
from lorp.evaluate.uncertainty import decide

# Dyadic values: every sum and difference below is exact in binary floating point.
WINDOWS = [3.25, 7.5, 2.0, 9.75, 4.5, 6.0, 1.25, 8.0]


def test_identical_series_give_zero_difference_and_a_zero_interval():
    c = paired_t_nll(WINDOWS, WINDOWS, 4)
    assert (c.difference, c.low, c.high) == (0.0, 0.0, 0.0) and (c.ratio, c.ratio_low, c.ratio_high) == (1, 1, 1)
    assert c.decision == "undecided" and c.windows == 8 and c.p_value == 1.0 and c.method == "paired t"


@pytest.mark.parametrize("shift", [0.5, -2.0, 0.0625])
def test_a_constant_shift_of_every_window_gives_exactly_that_interval(shift):
    tokens = 4  # each window's summed NLL shifts by shift * tokens, so its mean token NLL shifts by shift
    c = paired_t_nll(WINDOWS, [w + shift * tokens for w in WINDOWS], tokens)
    assert (c.difference, c.low, c.high) == (shift, shift, shift)
    assert c.ratio == math.exp(shift) and c.decision == ("loses" if shift > 0 else "wins") and c.p_value == 0.0


def test_t_interval_matches_a_hand_computation():
    # per-window log ratios x = (0.25, -0.5, 0.75, 0.25): mean 0.1875, s² = 0.796875 / 3, se = sqrt(s² / 4)
    c = paired_t_nll([3.25, 7.5, 2.0, 9.75], [3.5, 7.0, 2.75, 10.0], 1)
    se = math.sqrt(0.796875 / 3 / 4)
    q = 3.182446305284263  # t quantile, 3 degrees of freedom, 0.975 (tables: 3.182)
    assert c.difference == 0.1875 and c.df == 3
    assert (c.low, c.high) == pytest.approx((0.1875 - q * se, 0.1875 + q * se), rel=1e-12)
    assert c.p_value == pytest.approx(0.51949796, rel=1e-6)  # 2 P(T_3 > 0.1875 / se)
    assert (c.ratio_low, c.ratio_high) == pytest.approx((math.exp(c.low), math.exp(c.high)))
    level80 = paired_t_nll([3.25, 7.5, 2.0, 9.75], [3.5, 7.0, 2.75, 10.0], 1, level=0.8)
    assert level80.high - level80.low == pytest.approx(2 * 1.637744353696210 * se, rel=1e-12)  # t_{3, 0.9}


def test_one_window_cannot_decide():
    c = paired_t_nll([3.0], [9.0], 1)
    assert (c.low, c.high) == (-math.inf, math.inf) and c.decision == "undecided"


def test_geometric_mean_over_corpora_reduces_to_the_one_corpus_interval():
    rng = np.random.default_rng(1)
    a = rng.normal(3, 1, 8) * 255
    b = a + rng.normal(0.1, 0.5, 8) * 255
    one = paired_t_nll(a, b, 255)
    many = paired_t_log_ratio({"x": a}, {"x": b}, {"x": 255})
    assert (many.difference, many.low, many.high, many.df) == pytest.approx((one.difference, one.low, one.high, 7),
                                                                             rel=1e-12)


def test_geometric_mean_ratio_is_the_ratio_of_the_geometric_means():
    a = {"p": [255.0 * 3] * 4, "q": [255.0 * 2] * 4}
    b = {"p": [255.0 * 3.5] * 4, "q": [255.0 * 2] * 4}
    c = paired_t_log_ratio(a, b, {"p": 255, "q": 255})
    # geometric means: sqrt(e^3.5 e^2) / sqrt(e^3 e^2) = e^0.25, whatever the corpora's levels
    assert (c.ratio, c.ratio_low, c.ratio_high) == pytest.approx((math.exp(0.25),) * 3, rel=1e-12)
    assert c.windows == 8 and c.decision == "loses"


def test_welch_satterthwaite_degrees_of_freedom_over_corpora():
    a = {"p": [0.0, 0.0, 0.0], "q": [0.0, 0.0, 0.0, 0.0, 0.0]}
    b = {"p": [1.0, 2.0, 3.0], "q": [0.0, 1.0, 0.0, 1.0, 0.0]}
    c = paired_t_log_ratio(a, b, {"p": 1, "q": 1})
    vp, vq = 1.0 / 3, 0.3 / 5  # s² / n per corpus: s²_p = 1, s²_q = 0.3
    assert c.difference == pytest.approx((2.0 + 0.4) / 2)
    assert c.df == pytest.approx((vp + vq) ** 2 / (vp ** 2 / 2 + vq ** 2 / 4))
    q = stats.t.ppf(0.975, c.df)
    assert c.high - c.difference == pytest.approx(q * math.sqrt(vp + vq) / 2)


@pytest.mark.parametrize("a, b, tokens, match", [
    ([1.0, 2.0], [1.0], 3, "a has 2 windows, b has 1"),
    ([], [], 3, "empty"),
    ([1.0, 2.0], [1.0, 2.0], [3], "one number or one per window"),
    ([1.0, 2.0], [1.0, 2.0], 0, ">= 1"),
    ([1.0, float("nan")], [1.0, 2.0], 3, "non-finite"),
])
def test_bad_perplexity_inputs_raise(a, b, tokens, match):
    with pytest.raises(ValueError, match=match):
        paired_t_nll(a, b, tokens)


def test_bad_settings_and_corpora_raise():
    with pytest.raises(ValueError, match="level"):
        paired_t_nll([1.0], [1.0], 1, level=1.0)
    with pytest.raises(ValueError, match="same corpora"):
        paired_t_log_ratio({"p": [1.0]}, {"q": [1.0]}, {"p": 1, "q": 1})
    with pytest.raises(ValueError, match="no corpora"):
        paired_t_log_ratio({}, {}, {})


@pytest.mark.parametrize("k, n, low, high", [  # Newcombe (1998), Stat. Med. 17:857, Table II, method 3 (Wilson)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_textbook_values(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_closed_form_and_refusals():
    lo, hi = wilson_interval(10, 20)  # p = 1/2: symmetric, half-width z sqrt(1/4n + z²/4n²) / (1 + z²/n)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 20 + z * z / 1600) / (1 + z * z / 20)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half), rel=1e-12)
    for k, n in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            wilson_interval(k, n)
    iv = accuracy_interval([1, 1, 0, 1])
    assert iv.estimate == 0.75 and (iv.low, iv.high) == wilson_interval(3, 4) and iv.method == "wilson"
    with pytest.raises(ValueError, match="only 0 and 1"):
        accuracy_interval([1, 2])


@pytest.mark.parametrize("a_only, b_only, p", [
    (1, 6, 2 * (1 + 7) / 2 ** 7),  # 0.125
    (0, 5, 2 / 2 ** 5),  # 0.0625
    (2, 8, 2 * (1 + 10 + 45) / 2 ** 10),  # 0.109375
    (3, 3, 1.0), (0, 0, 1.0)])
def test_mcnemar_exact_p_values_by_hand(a_only, b_only, p):
    both = 4  # concordant items do not matter
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * 2
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * 2
    m = mcnemar_exact(a, b)
    assert (m.a_only, m.b_only) == (a_only, b_only) and m.p_value == p


def test_paired_accuracy_bootstrap_by_hand_and_refusals():
    a, b = [1, 0, 1, 0, 1], [1, 1, 1, 1, 0]
    c = paired_bootstrap_accuracy(a, b, samples=9, seed=5)
    d = np.array(b) - np.array(a)
    stats = d[np.random.default_rng(5).integers(0, 5, size=(9, 5))].mean(axis=1)
    assert c.difference == pytest.approx(0.2) and (c.low, c.high) == tuple(np.quantile(stats, [0.025, 0.975]))
    assert c.mcnemar == mcnemar_exact(a, b) and c.items == 5
    same = paired_bootstrap_accuracy({"t": a}, {"t": a})
    assert (same.difference, same.low, same.high, same.decision) == (0, 0, 0, "undecided")
    always = paired_bootstrap_accuracy([0] * 6, [1] * 6)
    assert (always.low, always.high, always.decision) == (1.0, 1.0, "wins")
    with pytest.raises(ValueError, match="a has 2 items, b has 3"):
        paired_bootstrap_accuracy({"t": [1, 0]}, {"t": [1, 0, 1]})
    with pytest.raises(ValueError, match="same tasks"):
        paired_bootstrap_accuracy({"t": [1]}, {"u": [1]})
    with pytest.raises(ValueError, match="a has 1 items, b has 2"):
        mcnemar_exact([1], [1, 0])


def test_average_over_tasks_is_stratified_by_task():
    tasks = {"t": [1, 1, 1, 1], "u": [0, 0]}  # every resample keeps 4 items of t and 2 of u: average stays 1/2
    iv = bootstrap_accuracy(tasks)
    assert (iv.estimate, iv.low, iv.high) == (0.5, 0.5, 0.5)


def test_decide():
    assert decide(0.1, 0.3, better="higher") == "wins" and decide(0.1, 0.3, better="lower") == "loses"
    assert decide(-0.3, -0.1, better="lower") == "wins" and decide(-0.3, -0.1, better="higher") == "loses"
    assert decide(-0.1, 0.0, better="lower") == "undecided" and decide(0.0, 0.0, better="higher") == "undecided"
    with pytest.raises(ValueError):
        decide(1.0, 0.0, better="lower")
    with pytest.raises(ValueError):
        decide(0.0, 1.0, better="smaller")


def _row(ppl=None, nll=None, tokens=None, scores=None, correct=None, items=None):
    return SimpleNamespace(perplexity=ppl or {}, window_nll=nll, window_tokens=tokens, zero_shot=scores,
                           zero_shot_correct=correct, zero_shot_items=items)


def test_row_helpers_fall_back_to_none_without_per_window_or_per_item_results():
    with_windows = _row({"p": 1.0}, {"p": [4.0, 8.0]}, {"p": 4})
    assert compare_perplexity(with_windows, _row({"p": 1.0})) is None  # old record: no windows
    assert compare_perplexity(with_windows, _row({"p": 1.0}, {"p": [4.0]}, {"p": 4})) is None  # other windows
    assert compare_perplexity(with_windows, with_windows).ratio == 1.0
    other = _row({"p": 1.0, "q": 1.0}, {"p": [5.0, 8.0], "q": [4.0, 4.0]}, {"p": 4, "q": 4})
    worse = _row({"p": 1.0, "q": 1.0}, {"p": [9.0, 12.0], "q": [6.0, 7.0]}, {"p": 4, "q": 4})
    per = compare_per_corpus(other, worse)
    assert set(per) == {"p", "q"} and per["p"].difference == 1.0 and per["q"].difference == 0.625
    assert compare_perplexity(other, worse).difference == pytest.approx((1.0 + 0.625) / 2)
    assert compare_per_corpus(with_windows, _row({"p": 1.0})) is None
    scored = _row(scores={"t": 0.5, "u": 1.0}, correct={"t": [1, 0], "u": [1]}, items={"t": 2, "u": 1})
    assert set(accuracy_intervals(scored)) == {"t", "u", "average"}
    assert accuracy_intervals(_row(scores={"t": 0.5})) is None and compare_accuracy(scored, _row(scores={"t": 0.5})) is None
    wrong = _row(scores={"t": 0.5, "u": 1.0}, correct={"t": [1, 1], "u": [1]})  # disagrees with the score of t
    assert set(accuracy_intervals(wrong)) == {"u"}  # no average without every task
    assert set(compare_accuracy(scored, scored)) == {"t", "u", "average"}


series = st.lists(st.floats(0.0, 50.0, allow_nan=False, allow_subnormal=False), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.data(), series, st.integers(0, 2**16))
def test_nll_interval_contains_the_estimate_and_is_antisymmetric(data, a, _seed):
    b = data.draw(st.lists(st.floats(0.0, 50.0, allow_nan=False, allow_subnormal=False), min_size=len(a),
                           max_size=len(a)))
    ab = paired_t_nll(a, b, 7)
    ba = paired_t_nll(b, a, 7)
    tol = 1e-12 * (1 + max(a + b))
    assert ab.low - tol <= ab.difference <= ab.high + tol
    assert (ba.difference, ba.low, ba.high) == pytest.approx((-ab.difference, -ab.high, -ab.low), abs=tol)
    assert {ab.decision, ba.decision} in ({"undecided"}, {"wins", "loses"})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=1, max_size=40), st.floats(0.5, 0.999))
def test_wilson_interval_lies_in_0_1_and_contains_the_observed_accuracy(correct, level):
    iv = accuracy_interval(correct, level)
    assert 0.0 <= iv.low <= iv.estimate <= iv.high <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=30), st.integers(0, 99))
def test_paired_accuracy_is_antisymmetric_and_mcnemar_symmetric(pairs, seed):
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    ab = paired_bootstrap_accuracy(a, b, samples=300, seed=seed)
    ba = paired_bootstrap_accuracy(b, a, samples=300, seed=seed)
    assert (ba.difference, ba.low, ba.high) == pytest.approx((-ab.difference, -ab.high, -ab.low), abs=1e-12)
    assert ab.low - 1e-12 <= ab.difference <= ab.high + 1e-12
    assert ab.mcnemar.p_value == ba.mcnemar.p_value and 0 < ab.mcnemar.p_value <= 1


def test_holm_adjusts_by_hand():
    from lorp.evaluate.uncertainty import holm

    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (non-decreasing)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [q <= 0.05 for q in holm([0.01, 0.04, 0.03, 0.005])] == [True, False, False, True]
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02]) and holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def test_holm_decisions_keep_only_what_survives_the_correction():
    from lorp.evaluate.uncertainty import holm_decisions

    # adjusted as above: 0.03, 0.06, 0.06, 0.02 -> only the first and last survive at 0.05
    d = holm_decisions([0.01, 0.04, 0.03, 0.005], [-0.2, 0.3, -0.1, 0.4], better="lower")
    assert d == ["wins", "undecided", "undecided", "loses"]
    assert holm_decisions([0.01], [0.2], better="higher") == ["wins"]  # one test: no correction
    # each of 0.03 and 0.04 alone would win; together Holm keeps only the smallest below 0.05 / 2
    assert holm_decisions([0.03, 0.04], [-1.0, -1.0], better="lower") == ["undecided", "undecided"]
    assert holm_decisions([0.02, 0.04], [-1.0, -1.0], better="lower") == ["wins", "wins"]
    with pytest.raises(ValueError, match="2 p-values but 1"):
        holm_decisions([0.1, 0.2], [1.0], better="lower")


# -- the smallest detectable accuracy difference (Connor 1987) ------------------------------------------------------

def test_detectable_difference_solves_connors_sample_size_and_has_its_power():
    from statistics import NormalDist

    from lorp.evaluate.accuracy_uncertainty import detectable_difference, mcnemar_exact

    d = detectable_difference(100, 0.2)
    # by hand: sqrt(100)·δ = 1.95996·sqrt(0.2) + 0.84162·sqrt(0.2 − δ²)  ->  δ ≈ 0.1238
    assert d == pytest.approx(0.1238, abs=5e-4)
    z_a, z_b = NormalDist().inv_cdf(0.975), NormalDist().inv_cdf(0.8)
    assert 100 == pytest.approx((z_a * 0.2 ** 0.5 + z_b * (0.2 - d * d) ** 0.5) ** 2 / d ** 2, rel=1e-9)
    assert detectable_difference(400, 0.2) < d < detectable_difference(100, 0.3)  # more items / less disagreement
    assert detectable_difference(20, 0.2) is None and detectable_difference(100, 0.0) is None
    # simulated: items disagree with probability 0.2, in favour of b by d; the exact McNemar test (slightly
    # conservative next to the normal approximation) rejects at 5 % in about 80 % of draws
    rng = np.random.default_rng(0)
    p_b, p_a = (0.2 + d) / 2, (0.2 - d) / 2
    hits = 0
    for _ in range(1000):
        u = rng.random(100)
        a = (u < p_a).astype(int)  # a right, b wrong
        b = ((u >= p_a) & (u < p_a + p_b)).astype(int)  # b right, a wrong
        hits += mcnemar_exact(a, b).p_value <= 0.05
    assert 0.70 <= hits / 1000 <= 0.85
    with pytest.raises(ValueError, match="items must be a whole number >= 1"):
        detectable_difference(0, 0.2)
    with pytest.raises(ValueError, match="discordant must be a share"):
        detectable_difference(10, 1.5)
