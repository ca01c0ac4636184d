"""Effect sizes over seeds with 95% intervals, and the verdict an interval gives.

Every verdict rests on one number per seed (a paired log speed-up, an accuracy difference, ...)
that may be known only within bounds: each seed contributes a value known to lie in
[low_i, high_i] (equal ends when it is known exactly). Bounds come from reading a step count as
the interval between two evaluations, and from censoring: a run that never reached a target
needs more steps than it ran, anywhere up to never (bnbench/report/summary.py).

* **Interval** (`mean_interval`), with >= MIN_SEEDS seeds: the lower end is the lower 95%
  confidence limit of the mean of the lows, the upper end the upper limit of the mean of the
  highs, each from `scipy.stats.bootstrap` (BCa, 9,999 resamples of the seeds, a fixed seed, so
  a report rebuilt from the same records is the same). The values are per seed already (each
  one a pair's difference or ratio), so resampling them resamples seeds with their pairs
  intact: a paired bootstrap. A low of -inf (a censored run's side of a pair) makes the lower
  end -inf: the mean is then not bounded below. With fewer seeds the bootstrap says nothing
  useful (two values have three resamples), so the interval is the range, min(low) to
  max(high), and the verdict is marked indicative.
* **Proportions** (`proportion_interval`): Wilson's 95% interval from `scipy.stats.binomtest`.
* **Verdict** (`decide`): "holds" when the interval lies wholly on the claimed side of the
  boundary (no effect, or the rule's stated margin), "does not hold" when wholly on the other
  side, "inconclusive" otherwise (touching the boundary included); with fewer than MIN_SEEDS
  seeds "indicative: holds" / "indicative: does not hold" at most; "no data" without a seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 9999
RANDOM_SEED = 0  # bootstrap resampling: fixed, so reports are reproducible
MIN_SEEDS = 3  # fewer: the verdict is "indicative" at most

HOLDS, NOT, INCONCLUSIVE, NO_DATA = "holds", "does not hold", "inconclusive", "no data"
INDICATIVE = "indicative: "
VERDICTS = (HOLDS, NOT, INCONCLUSIVE, INDICATIVE + HOLDS, INDICATIVE + NOT, NO_DATA)


@dataclass(frozen=True)
class Interval:
    """An effect over seeds: point estimate (None where censoring leaves only bounds), and the
    95% interval (bootstrap) or, with fewer than MIN_SEEDS seeds, the range over seeds."""

    point: float | None
    low: float
    high: float
    n: int
    method: str  # "95% CI" | "range" | "Wilson 95% CI"

    @property
    def indicative(self) -> bool:
        return self.n < MIN_SEEDS

    def map(self, f) -> Interval:
        """The same interval through a monotone increasing f (log speed-up -> speed-up)."""
        return Interval(None if self.point is None else f(self.point), f(self.low), f(self.high), self.n, self.method)


def bootstrap_ci(values: Sequence[float]) -> tuple[float, float]:
    """The 95% bootstrap interval (BCa) of the mean of finite values, over resampled seeds."""
    x = np.asarray(values, dtype=float)
    if np.ptp(x) == 0:  # every seed the same: every resample's mean is that value (BCa is undefined)
        return float(x[0]), float(x[0])
    for method in ("BCa", "percentile"):  # BCa can fail on very skewed tiny samples; then percentile
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((x,), np.mean, n_resamples=N_RESAMPLES, confidence_level=CONFIDENCE,
                                 method=method, rng=np.random.default_rng(RANDOM_SEED)).confidence_interval
        if math.isfinite(ci.low) and math.isfinite(ci.high):
            return float(ci.low), float(ci.high)
    return float(x.min()), float(x.max())


def mean_interval(lows: Sequence[float], highs: Sequence[float] | None = None,
                  points: Sequence[float] | None = None) -> Interval | None:
    """The mean over seeds of a per-seed value known to lie in [lows[i], highs[i]] (highs
    default to lows: exact values); `points` are the per-seed estimates (default: the lows
    where exact). None without seeds."""
    highs = lows if highs is None else highs
    points = lows if points is None else points
    n = len(lows)
    if n == 0:
        return None
    point = float(np.mean(points)) if all(math.isfinite(p) for p in points) else None
    if n < MIN_SEEDS:
        return Interval(point, float(min(lows)), float(max(highs)), n, "range")
    low = -math.inf if any(math.isinf(v) for v in lows) else bootstrap_ci(lows)[0]
    high = math.inf if any(math.isinf(v) for v in highs) else bootstrap_ci(highs)[1]
    return Interval(point, low, high, n, f"{CONFIDENCE:.0%} CI")


def proportion_interval(k: int, n: int) -> Interval | None:
    """k of n runs: Wilson's 95% interval (with fewer than MIN_SEEDS runs, the range of the
    runs' 0/1 outcomes, as for every other effect)."""
    if n == 0:
        return None
    if n < MIN_SEEDS:
        return Interval(k / n, float(k == n), float(k > 0), n, "range")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return Interval(k / n, float(ci.low), float(ci.high), n, f"Wilson {CONFIDENCE:.0%} CI")


def decide(interval: Interval | None, boundary: float, claimed: str = "above") -> str:
    """The verdict: the interval wholly on the claimed side of `boundary` ("above" or "below"):
    holds; wholly on the other side: does not hold; else inconclusive."""
    if interval is None:
        return NO_DATA
    above, below = interval.low > boundary, interval.high < boundary
    if claimed == "below":
        above, below = below, above
    result = HOLDS if above else NOT if below else INCONCLUSIVE
    return INDICATIVE + result if interval.indicative and result != INCONCLUSIVE else result


def compare_size(interval: Interval | None, paper: float | None, fmt) -> str:
    """The observed size against the paper's: below, within or above the interval."""
    if paper is None:
        return "–"
    if interval is None:
        return f"paper {fmt(paper)}; no data"
    where = ("smaller than the paper's" if interval.high < paper else
             "larger than the paper's" if interval.low > paper else "consistent with the paper's")
    return f"{where} {fmt(paper)}" + (" (indicative)" if interval.indicative else "")
