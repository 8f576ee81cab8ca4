"""Welch t interval of a difference of means, against SciPy and a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from gsag.stats import (
    _u_counts,
    compare,
    fisher_p,
    holm,
    looks_normal,
    paired_interval,
    rank_interval,
    sign_flip_p,
    welch_from_stats,
    welch_interval,
    wilson_interval,
)


def test_matches_scipy_welch_interval():
    a, b = [0.544, 0.531, 0.559], [0.436, 0.445, 0.427, 0.451]
    d = welch_interval(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high))
    assert d.decided


def test_hand_formula_two_runs_each():
    # a: mean 1, var 2; b: mean 0, var 2 -> se = sqrt(2/2 + 2/2) = sqrt 2, dof = 2
    d = welch_interval([0.0, 2.0], [-1.0, 1.0], level=0.9)
    assert d.dof == pytest.approx(2.0)
    half = 2.919985580 * math.sqrt(2)  # t_{0.95, 2}
    assert (d.low, d.high) == pytest.approx((1 - half, 1 + half))
    assert not d.decided


def test_one_run_gives_no_interval_and_nan_is_dropped():
    d = welch_interval([0.5, float("nan")], [0.4, 0.45])
    assert d.diff == pytest.approx(0.075) and d.n_a == 1
    assert math.isnan(d.low) and math.isnan(d.high) and not d.decided
    with pytest.raises(ValueError, match="at least one run"):
        welch_interval([], [0.1])


def test_no_spread_collapses_to_the_difference():
    d = welch_interval([0.3, 0.3], [0.1, 0.1])
    assert (d.low, d.high) == pytest.approx((0.2, 0.2)) and d.decided


def test_from_summary_statistics_matches_scipy():
    d = welch_from_stats(0.544, 0.014, 3, 0.523, 0.026, 3)
    ref = sps.ttest_ind_from_stats(0.544, 0.014, 3, 0.523, 0.026, 3, equal_var=False)
    se = math.sqrt(0.014**2 / 3 + 0.026**2 / 3)
    assert d.diff / se == pytest.approx(ref.statistic)
    assert d.high - d.diff == pytest.approx(sps.t.ppf(0.975, d.dof) * se)


# the ablation's mIoU per seed (docs/results.md): hybrid, DeepLabV3, no_group (one missed seed)
HYBRID = [0.512, 0.543, 0.559, 0.516, 0.527]
DEEPLAB = [0.506, 0.441, 0.471, 0.392, 0.519]
NO_GROUP = [0.598, 0.572, 0.391, 0.591, 0.5431]


def test_welch_p_matches_scipy():
    d = welch_interval(HYBRID, DEEPLAB)
    ref = sps.ttest_ind(HYBRID, DEEPLAB, equal_var=False)
    assert d.p == pytest.approx(ref.pvalue) and d.method == "welch"


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005, float("nan"), 0.5]
    adj = holm(p)
    # sorted: 0.005 x5, 0.01 x4, 0.03 x3, 0.04 x2, 0.5 x1 -> running max, capped at 1
    expected = [0.04, 0.09, 0.09, 0.025, float("nan"), 0.5]
    assert adj[4] != adj[4]  # NaN stays outside the family
    assert [a for i, a in enumerate(adj) if i != 4] == pytest.approx(
        [e for i, e in enumerate(expected) if i != 4]
    )
    assert holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])  # monotone, then capped
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_holm_agrees_with_scipy_bonferroni_bound_and_rejects_the_same():
    # Holm is never above Bonferroni and never below the raw p
    rng = np.random.default_rng(0)
    p = list(rng.uniform(0, 0.2, size=9))
    adj = holm(p)
    assert all(r <= a <= min(1, 9 * r) + 1e-12 for r, a in zip(p, adj, strict=True))
    # the smallest adjusted p is the Bonferroni one; scipy's false_discovery_control (BH) is
    # never above Holm
    assert min(adj) == pytest.approx(9 * min(p))
    bh = sps.false_discovery_control(p, method="bh")
    assert all(b <= a + 1e-12 for a, b in zip(adj, bh, strict=True))


def test_wilson_matches_scipy():
    for k, n in ((5, 5), (3, 5), (0, 7), (21, 25)):
        w = wilson_interval(k, n)
        ref = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert (w.low, w.high) == pytest.approx((ref.low, ref.high))
        assert w.rate == pytest.approx(k / n)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson_interval(6, 5)


@pytest.mark.parametrize("m, n", [(3, 3), (3, 5), (5, 5), (4, 6)])
def test_exact_u_distribution_matches_scipy(m, n):
    counts = _u_counts(m, n)
    total = math.comb(m + n, m)
    assert sum(counts) == total
    ref = sps.mannwhitneyu  # its exact p of the most extreme U is P(U <= 0) * 2
    a, b = list(range(n, n + m)), list(range(n))  # every a above every b: U = m * n
    assert ref(a, b, method="exact").pvalue == pytest.approx(2 * counts[0] / total)


def test_rank_interval_is_the_set_of_shifts_scipy_does_not_reject():
    r = rank_interval(HYBRID, NO_GROUP)
    diffs = sorted(x - y for x in HYBRID for y in NO_GROUP)
    assert r.diff == pytest.approx(float(np.median(diffs)))
    assert r.method == "rank" and r.coverage >= 0.95
    p_mw = sps.mannwhitneyu(HYBRID, NO_GROUP, method="exact").pvalue
    assert r.p == pytest.approx(p_mw)

    def accepted(shift: float) -> bool:  # SciPy does not reject "a - shift and b: one location"
        shifted = [x - shift for x in HYBRID]
        return sps.mannwhitneyu(shifted, NO_GROUP, method="exact").pvalue > 1 - r.coverage + 1e-9

    eps = 1e-6
    assert accepted(r.low + eps) and accepted(r.high - eps)
    assert not accepted(r.low - eps) and not accepted(r.high + eps)


def test_rank_interval_unbounded_when_too_few_runs():
    r = rank_interval([0.5, 0.6, 0.7], [0.1, 0.2, 0.3])  # 3 vs 3: min two-sided p is 0.1
    assert math.isinf(r.low) and math.isinf(r.high) and not r.decided
    assert r.p == pytest.approx(0.1)


def test_compare_switches_to_rank_when_shapiro_rejects():
    assert sps.shapiro(NO_GROUP).pvalue < 0.05 and sps.shapiro(HYBRID).pvalue >= 0.05
    assert not looks_normal(NO_GROUP) and looks_normal(HYBRID)
    assert compare(HYBRID, NO_GROUP).method == "rank"
    assert compare(HYBRID, DEEPLAB).method == "welch"
    assert looks_normal([0.1, 0.2])  # too few to test


def test_rank_p_with_a_tie_is_scipys_conservative_exact_p():
    a, b = [0.512, 0.543, 0.559, 0.516, 0.527], [0.598, 0.572, 0.391, 0.591, 0.543]
    assert rank_interval(a, b).p == pytest.approx(sps.mannwhitneyu(a, b, method="exact").pvalue)


# ---- paired analysis (runs paired by seed) ------------------------------------------------
PAIRED_A = [50.1, 48.3, 55.2, 41.0, 52.7, 47.9, 53.3, 49.0, 51.8, 44.6]
PAIRED_B = [47.2, 49.9, 50.1, 40.2, 46.3, 48.5, 50.0, 45.1, 50.9, 43.0]


def test_paired_interval_matches_scipy_ttest_rel():
    r = paired_interval(PAIRED_A, PAIRED_B)
    ref = sps.ttest_rel(PAIRED_A, PAIRED_B)
    ci = ref.confidence_interval(0.95)
    assert r.method == "paired" and r.n_a == r.n_b == 10 and r.dof == 9
    assert r.diff == pytest.approx(np.mean(np.subtract(PAIRED_A, PAIRED_B)))
    assert (r.low, r.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert r.p == pytest.approx(ref.pvalue)


def test_sign_flip_p_matches_scipys_exact_permutation_test():
    d = np.subtract(PAIRED_A, PAIRED_B)
    ref = sps.permutation_test(
        (PAIRED_A, PAIRED_B),
        lambda x, y: np.mean(x - y),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
        vectorized=False,
    )
    assert sign_flip_p(d) == pytest.approx(ref.pvalue)
    assert paired_interval(PAIRED_A, PAIRED_B).flip_p == pytest.approx(ref.pvalue)


def test_sign_flip_p_by_hand():
    # all 3 positive: only (+,+,+) and (-,-,-) reach |sum| 6 of 8 assignments
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    # 10 positive differences: the smallest p there is, 2 / 1024
    assert sign_flip_p([1.0 + i for i in range(10)]) == pytest.approx(2 / 1024)
    assert sign_flip_p([0.0, 0.0]) == 1.0
    with pytest.raises(ValueError, match="at least one"):
        sign_flip_p([])


def test_pairing_narrows_the_interval_when_seeds_share_their_variation():
    # each seed moves both sides alike: unpaired, that spread hides the constant +2 shift
    base = [40.0, 55.0, 47.0, 60.0, 43.0]
    a = [v + 2.0 + e for v, e in zip(base, [0.1, -0.2, 0.3, 0.0, -0.1], strict=True)]
    paired, unpaired = paired_interval(a, base), welch_interval(a, base)
    assert paired.decided and not unpaired.decided
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 10


def test_paired_interval_refuses_unaligned_sides_and_drops_incomplete_pairs():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1.0, 2.0], [1.0])
    r = paired_interval([1.0, math.nan, 3.0, 5.0], [0.0, 1.0, 1.0, 2.0])
    assert r.n_a == 3 and r.diff == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("k_a", "n_a", "k_b", "n_b"), [(10, 10, 5, 10), (3, 10, 7, 10), (5, 5, 0, 5)]
)
def test_fisher_p_is_the_hypergeometric_sum(k_a, n_a, k_b, n_b):
    from math import comb

    total_k, total = k_a + k_b, n_a + n_b

    def prob(x: int) -> float:  # P(k_a = x) with the margins fixed
        return comb(n_a, x) * comb(n_b, total_k - x) / comb(total, total_k)

    observed = prob(k_a)
    support = range(max(0, total_k - n_b), min(n_a, total_k) + 1)
    expected = sum(prob(x) for x in support if prob(x) <= observed * (1 + 1e-9))
    assert fisher_p(k_a, n_a, k_b, n_b) == pytest.approx(min(1.0, expected))
