"""Welch t interval of a difference of means, against SciPy and a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from gsag.stats import welch_from_stats, welch_interval


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
