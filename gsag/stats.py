"""Uncertainty of a difference between two sets of runs (e.g. two heads over seeds).

- `welch_interval(a, b)`: mean(a) - mean(b) with a Welch t confidence interval and its
  two-sided p-value: it does not assume equal variances, and its degrees of freedom come from
  the Welch-Satterthwaite formula. With fewer than two runs on either side the interval is
  undefined (NaN bounds).
- `rank_interval(a, b)`: the Hodges-Lehmann shift with its exact Mann-Whitney interval and
  p-value (no normality assumed), for groups that `looks_normal` (Shapiro-Wilk) doubts.
- `paired_interval(a, b)`: for runs paired by seed (seed k of both sides shares its dataset
  and training seed), the mean of the differences a_k - b_k with a paired t interval, and
  `sign_flip_p`, the exact sign-flip (permutation) p-value of that mean, with no normality
  assumed.
- `holm(p)`: Holm step-down adjusted p-values over a declared family of comparisons.
- `wilson_interval(k, n)`: a binomial proportion (e.g. the share of runs that learn a cue);
  `fisher_p(k_a, n_a, k_b, n_b)`: Fisher's exact two-sided test of two such proportions.

The intervals of runs that share one dataset and one validation set cover training randomness
only (initialisation, data order), not a new draw of the data.
"""

from __future__ import annotations

import itertools
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
    p: float = math.nan  # two-sided p-value of "no difference"
    method: str = "welch"  # "welch", "rank" (Hodges-Lehmann / Mann-Whitney) or "paired"
    coverage: float = math.nan  # rank: the exact coverage of [low, high] (>= level)
    flip_p: float = math.nan  # paired: the exact sign-flip p-value (`sign_flip_p`)

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
        p = 1.0 if diff == 0 else 0.0
        return Difference(diff, diff, diff, math.inf, n_a, n_b, level, p)
    dof = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))
    half = float(t.ppf(0.5 + level / 2, dof)) * se
    p = float(2 * t.sf(abs(diff) / se, dof))
    return Difference(diff, diff - half, diff + half, dof, n_a, n_b, level, p)


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if not math.isnan(float(v))]


def _u_counts(m: int, n: int) -> list[int]:
    """Number of arrangements of m + n distinct values giving each Mann-Whitney U = 0 .. m * n."""
    # table[j][u]: arrangements of i values of a and j of b with U = u, built up over i
    table = [[1] for _ in range(n + 1)]  # i = 0: U = 0 only
    for i in range(1, m + 1):
        new = [[1]]  # j = 0: U = 0 only
        for j in range(1, n + 1):
            # the largest value is a's (adds j to U) or b's (adds nothing)
            size = i * j + 1
            row = [0] * size
            for u, c in enumerate(table[j]):  # (i - 1, j) shifted by j
                row[u + j] += c
            for u, c in enumerate(new[j - 1]):  # (i, j - 1)
                row[u] += c
            new.append(row)
        table = new
    return table[n]


def rank_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """Hodges-Lehmann shift a - b with its exact Mann-Whitney confidence interval.

    The estimate is the median of the n_a * n_b pairwise differences; the interval runs from
    the k-th smallest to the k-th largest of them, with k the largest count whose exact
    one-sided tail P(U < k) stays within (1 - level) / 2 (no ties assumed: mIoUs are continuous).
    When no k qualifies (e.g. 3 runs against 3 at 95 %) the interval is unbounded. `p` is the
    exact two-sided Mann-Whitney p-value, `coverage` the interval's exact coverage.
    """
    a, b = _finite(a), _finite(b)
    if not a or not b:
        raise ValueError(f"need at least one run on each side, got {len(a)} and {len(b)}")
    m, n = len(a), len(b)
    diffs = sorted(x - y for x in a for y in b)
    mid = len(diffs) // 2
    est = diffs[mid] if len(diffs) % 2 else (diffs[mid - 1] + diffs[mid]) / 2
    counts = _u_counts(m, n)
    total = sum(counts)
    cdf = list(itertools.accumulate(c / total for c in counts))  # P(U <= u)
    k = sum(1 for u in range(len(cdf)) if cdf[u] <= (1 - level) / 2 + 1e-12)  # P(U < k) ok
    if k == 0:
        low, high, coverage = -math.inf, math.inf, 1.0
    else:
        low, high, coverage = diffs[k - 1], diffs[-k], 1 - 2 * cdf[k - 1]
    u = sum(1 for x in a for y in b if x > y) + 0.5 * sum(1 for x in a for y in b if x == y)
    lo_u = min(u, m * n - u)
    p = min(1.0, 2 * cdf[math.ceil(lo_u)])  # a tie counts against rejecting, as SciPy does
    return Difference(est, low, high, math.nan, m, n, level, p, "rank", coverage)


def looks_normal(values: Sequence[float], alpha: float = 0.05) -> bool:
    """False when Shapiro-Wilk rejects normality at `alpha` (needs 3 values; fewer: True)."""
    from scipy.stats import shapiro

    values = _finite(values)
    if len(values) < 3 or max(values) == min(values):
        return True
    return bool(shapiro(values).pvalue >= alpha)


def compare(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """The interval a verdict uses: Welch's t, or the rank interval when Shapiro-Wilk rejects
    normality on either side (`looks_normal`)."""
    if looks_normal(a) and looks_normal(b):
        return welch_interval(a, b, level)
    return rank_interval(a, b, level)


#: Most pairs `sign_flip_p` enumerates (2^n sign assignments).
MAX_SIGN_FLIP_PAIRS = 20


def sign_flip_p(diffs: Sequence[float]) -> float:
    """Exact two-sided sign-flip p-value of "the paired differences are centred on 0".

    Under the null each difference is as likely positive as negative, so all 2^n assignments
    of signs are equally likely; the p-value is the share of them whose |sum| reaches the
    observed |sum| (the statistic is the mean difference). Exact, no normality assumed; the
    smallest possible value is 2 / 2^n (0.002 at 10 pairs).
    """
    d = _finite(diffs)
    n = len(d)
    if n == 0:
        raise ValueError("need at least one paired difference")
    if n > MAX_SIGN_FLIP_PAIRS:
        raise ValueError(f"{n} pairs: exact enumeration stops at {MAX_SIGN_FLIP_PAIRS}")
    observed = abs(sum(d))
    tol = 1e-9 * max(1.0, observed)  # float sums of the same magnitudes count as equal
    hits = 0
    for signs in itertools.product((1.0, -1.0), repeat=n - 1):  # the first sign fixed: symmetry
        total = abs(d[0] + sum(s * v for s, v in zip(signs, d[1:], strict=True)))
        hits += total >= observed - tol
    return hits / 2 ** (n - 1)


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Difference:
    """mean(a_k - b_k) over pairs with a paired t interval at `level` and its two-sided p.

    `a` and `b` are aligned (pair k is a[k], b[k]); pairs with a NaN on either side are dropped.
    `flip_p` is the exact sign-flip p-value (`sign_flip_p`) of the same differences.
    """
    from scipy.stats import t

    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    d = [
        float(x) - float(y)
        for x, y in zip(a, b, strict=True)
        if not (math.isnan(float(x)) or math.isnan(float(y)))
    ]
    if not d:
        raise ValueError("need at least one complete pair")
    n = len(d)
    mean, var = _mean_var(d)
    flip = sign_flip_p(d) if n <= MAX_SIGN_FLIP_PAIRS else math.nan
    if n < 2:
        return Difference(
            mean, math.nan, math.nan, math.nan, n, n, level, flip_p=flip, method="paired"
        )
    se = math.sqrt(var / n)
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
        return Difference(mean, mean, mean, n - 1, n, n, level, p, "paired", flip_p=flip)
    half = float(t.ppf(0.5 + level / 2, n - 1)) * se
    p = float(2 * t.sf(abs(mean) / se, n - 1))
    return Difference(mean, mean - half, mean + half, n - 1, n, n, level, p, "paired", flip_p=flip)


def fisher_p(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """Fisher's exact two-sided p-value for k_a / n_a against k_b / n_b (e.g. runs that learn
    a cue): the hypergeometric probability of every table at most as likely as the observed."""
    from scipy.stats import fisher_exact

    for k, n in ((k_a, n_a), (k_b, n_b)):
        if not 0 <= k <= n:
            raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    table = [[k_a, n_a - k_a], [k_b, n_b - k_b]]
    return float(fisher_exact(table, alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order (NaN stays NaN, outside the family).

    Sorted ascending, the i-th smallest of m is multiplied by (m - i), made non-decreasing
    and capped at 1. A comparison is decided at family-wise level alpha when its adjusted p is
    below alpha.
    """
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclass(frozen=True)
class Proportion:
    """k successes out of n with a Wilson score interval [low, high] at `level`."""

    k: int
    n: int
    low: float
    high: float
    level: float = 0.95

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan


def wilson_interval(k: int, n: int, level: float = 0.95) -> Proportion:
    """The Wilson score interval of a binomial proportion k / n (NaN bounds when n = 0)."""
    from scipy.stats import norm

    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Proportion(k, n, math.nan, math.nan, level)
    z = float(norm.ppf(0.5 + level / 2))
    phat, z2 = k / n, z * z
    centre = (phat + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(phat * (1 - phat) / n + z2 / (4 * n * n))
    return Proportion(k, n, max(0.0, centre - half), min(1.0, centre + half), level)
