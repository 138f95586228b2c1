"""Confidence intervals and bounds of a median, for benchmark ratios.

Distribution-free where it matters (order statistics: exact coverage for any continuous
distribution); the percentile bootstrap is kept for comparison (``bench/aa_precision.py``),
and the Wilcoxon signed-rank interval, which needs fewer rounds when the ratios' logarithms
are symmetric about their median, for study (``bench/ci_coverage.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

# The fewest samples whose extremes are a 95% confidence interval of the median (coverage
# 1 - 2 / 2**n, 96.9% at 6): the fewest rounds a speed-up may be claimed from.
MIN_CI_SAMPLES = 6


def bootstrap_median_ci(
    samples: Sequence[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Median of ``samples`` and a percentile-bootstrap confidence interval for it."""
    data = np.asarray(samples, dtype=float)
    if data.size == 0:
        raise ValueError("no samples")
    median = float(np.median(data))
    if data.size == 1:
        return median, median, median
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(resamples, data.size))
    medians = np.median(data[idx], axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(medians, [alpha, 1.0 - alpha])
    return median, float(low), float(high)


def binomial_tail(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) < k)."""
    return sum(math.comb(n, i) for i in range(k)) / 2.0**n


def order_statistic_median_ci(
    samples: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Median of ``samples`` and the distribution-free confidence interval for it.

    The interval is [x(k), x(n+1-k)] of the sorted samples with the largest k whose coverage,
    1 - 2 P(Binomial(n, 1/2) < k), is still at least ``level``; it holds for any continuous
    distribution, unlike a bootstrap at small n. With fewer than 6 samples no k reaches 95%
    and the interval is the whole range.
    """
    data = np.sort(np.asarray(samples, dtype=float))
    if data.size == 0:
        raise ValueError("no samples")
    n = int(data.size)
    median = float(np.median(data))
    k = 1
    while k + 1 <= n // 2 and 1.0 - 2.0 * binomial_tail(k + 1, n) >= level:
        k += 1
    return median, float(data[k - 1]), float(data[n - k])


@functools.lru_cache(maxsize=256)
def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(W <= t) for t = 0 .. n(n+1)/2, W the Wilcoxon signed-rank statistic of n samples
    under its null (each rank's sign a fair coin): the exact distribution, by counting the
    subsets of {1..n} with each sum."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for i in range(1, n + 1):
        counts[i:] = counts[i:] + counts[:-i].copy()
    return np.cumsum(counts) / 2.0**n


def signed_rank_median_ci(
    samples: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """The Hodges-Lehmann estimate of the median ratio and its Wilcoxon signed-rank
    confidence interval, on the logarithms of ``samples`` (ratios, > 0).

    The interval is [w(k), w(M+1-k)] of the M = n(n+1)/2 sorted Walsh averages
    (x_i + x_j) / 2, i <= j, with the largest k whose coverage, 1 - 2 P(W < k), is at least
    ``level``. It is exact when the logarithms are symmetric about their median (then the
    median and the pseudo-median agree); for skewed rounds it covers the pseudo-median, not
    the median. With fewer than 6 samples no k reaches 95% and it is the whole range.
    """
    data = np.log(np.asarray(samples, dtype=float))
    if data.size == 0:
        raise ValueError("no samples")
    n = int(data.size)
    i, j = np.triu_indices(n)
    walsh = np.sort((data[i] + data[j]) / 2.0)
    cdf = _signed_rank_cdf(n)
    k = 1
    while k + 1 <= walsh.size // 2 and 1.0 - 2.0 * cdf[k] >= level:
        k += 1  # cdf[k] = P(W <= k) = P(W < k + 1)
    estimate = float(np.exp(np.median(walsh)))
    return estimate, float(np.exp(walsh[k - 1])), float(np.exp(walsh[walsh.size - k]))


def one_sided_rank(n: int, error: float) -> int:
    """The largest k >= 1 with P(Binomial(n, 1/2) <= k - 1) <= ``error``, or 0 when even
    k = 1 is too likely: x(k) of n sorted samples is then below the median with probability
    at least 1 - ``error`` (for any continuous distribution), and x(n+1-k) above it."""
    k = 0
    while k + 1 <= (n + 1) // 2 and binomial_tail(k + 1, n) <= error:
        k += 1
    return k


def median_bounds(samples: Sequence[float], error: float) -> tuple[float, float]:
    """One-sided distribution-free bounds (lower, upper) of the median of ``samples``'
    distribution, each wrong with probability at most ``error``; (-inf, inf) when there are
    too few samples for that error."""
    data = np.sort(np.asarray(samples, dtype=float))
    k = one_sided_rank(int(data.size), error)
    if k == 0:
        return -math.inf, math.inf
    return float(data[k - 1]), float(data[data.size - k])


def outlier_count(samples: Sequence[float]) -> int:
    """Samples outside Tukey's fences (1.5 IQR beyond the quartiles)."""
    data = np.asarray(samples, dtype=float)
    if data.size < 4:
        return 0
    q1, q3 = np.quantile(data, [0.25, 0.75])
    fence = 1.5 * (q3 - q1)
    return int(np.sum((data < q1 - fence) | (data > q3 + fence)))
