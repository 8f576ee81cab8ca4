"""Uncertainty of a difference between two sets of runs (e.g. two heads over seeds).

`welch_interval(a, b)` gives mean(a) - mean(b) with a Welch t confidence interval: it does not
assume equal variances, and its degrees of freedom come from the Welch-Satterthwaite formula.
With fewer than two runs on either side the interval is undefined (NaN bounds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its confidence interval [low, high] at `level`."""

    diff: float
    low: float
    high: float
    dof: float
    n_a: int
    n_b: int
    level: float = 0.95

    @property
    def decided(self) -> bool:
        """True when the interval excludes 0 (the sign of the difference is resolved)."""
        return bool(not math.isnan(self.low) and (self.low > 0 or self.high < 0))


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.nan
    return mean, var


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """mean(a) - mean(b) with a two-sided Welch t interval at confidence `level`.

    NaN values are dropped. With fewer than two values on a side the bounds are NaN; when both
    sides have zero spread the interval collapses to the difference.
    """
    a = [float(v) for v in a if not math.isnan(float(v))]
    b = [float(v) for v in b if not math.isnan(float(v))]
    if not a or not b:
        raise ValueError(f"need at least one run on each side, got {len(a)} and {len(b)}")
    (mean_a, var_a), (mean_b, var_b) = _mean_var(a), _mean_var(b)
    return welch_from_stats(
        mean_a, math.sqrt(var_a), len(a), mean_b, math.sqrt(var_b), len(b), level
    )


def welch_from_stats(
    mean_a: float,
    sd_a: float,
    n_a: int,
    mean_b: float,
    sd_b: float,
    n_b: int,
    level: float = 0.95,
) -> Difference:
    """The Welch interval from summary statistics (means, sample standard deviations, counts),
    e.g. a published "mean ± sd over n seeds"."""
    from scipy.stats import t

    diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return Difference(diff, math.nan, math.nan, math.nan, n_a, n_b, level)
    se2_a, se2_b = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(se2_a + se2_b)
    if se == 0:
        return Difference(diff, diff, diff, math.inf, n_a, n_b, level)
    dof = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))
    half = float(t.ppf(0.5 + level / 2, dof)) * se
    return Difference(diff, diff - half, diff + half, dof, n_a, n_b, level)
