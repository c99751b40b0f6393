"""95% confidence intervals: a configuration's throughput and the ratio of two of them.

Pure statistics on numbers the results already hold; nothing here reads a file or
the lab.

- Several repeats of a configuration: Student's t-interval on the mean of the
  repeats' frames/s (df = repeats - 1).
- One repeat: batch means over the window's per-second completions (each client
  summary's timeline). Batches of b seconds start at b = 1 and double until the
  lag-1 autocorrelation of the batch means is at most MAX_LAG1, so that the
  batches are nearly independent; the t-interval is then on the mean of the
  batch means (df = batches - 1), taken relative to it and applied to the point's
  throughput. With fewer than MIN_BATCHES batches there is no interval, and the
  note says so.
- A ratio of two throughputs (a gain, a relative figure): Fieller's theorem for
  the ratio of two independent means, with Welch-Satterthwaite's degrees of
  freedom. Fieller is exact for normal means, needs no random numbers (so a report
  rebuilt from the same file prints the same bounds), and says honestly when the
  denominator is too uncertain for any bounded interval; a bootstrap over two to
  five repeats would resample too few values to be trusted.

Throughputs and their ratios are never negative: a lower bound that the
symmetric t-interval puts below 0 (two or three very noisy repeats) is cut at 0.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

CONFIDENCE = 0.95
MIN_BATCHES = 5  # fewer batch means than this give no interval (df 4: t = 2.78)
MAX_LAG1 = 0.2  # batch means whose lag-1 autocorrelation exceeds this are not independent


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error: what an interval and a ratio are built from."""

    mean: float
    stderr: float
    df: int  # degrees of freedom of stderr
    samples: int  # repeats, or batch means, behind it
    method: str  # "repeats" or "batch means of N s"


@dataclass(frozen=True)
class Interval:
    """A figure with its 95% interval, or with the reason it has none."""

    estimate: float | None
    low: float | None
    high: float | None
    samples: int  # repeats or batch means behind the interval (0: none)
    method: str  # how it was computed, for the report's note
    note: str | None = None  # why there are no bounds

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def relative_halfwidth(self) -> float | None:
        """Half the interval's width over its estimate (0.05 = +-5%); None without bounds."""
        if self.low is None or self.high is None or not self.estimate:
            return None
        return (self.high - self.low) / 2 / abs(self.estimate)


def unbounded(estimate: float | None, note: str, samples: int = 0) -> Interval:
    return Interval(estimate, None, None, samples, "", note)


# ---------------------------------------------------------------------------
# Student's t quantile (no SciPy in the lab's venv)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), regularized."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_inverse(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection: monotone, and fast enough for a verdict)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile of {p}: must be strictly between 0 and 1")
    low, high = -1e6, 1e6
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-10:
            break
    return (low + high) / 2.0


@lru_cache(maxsize=256)
def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided quantile of Student's t: P(|T| <= q) = confidence (df may be Welch's
    fractional degrees of freedom)."""
    if df < 1:
        raise ValueError(f"degrees of freedom {df}; need at least 1")
    return t_inverse(0.5 + confidence / 2, df)


# ---------------------------------------------------------------------------
# One configuration


def from_repeats(values: Sequence[float]) -> Estimate | None:
    """The mean of repeats and its standard error; None with fewer than two."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return Estimate(
        mean, statistics.stdev(values) / math.sqrt(len(values)), len(values) - 1, len(values), ""
    )


def lag1_autocorrelation(values: Sequence[float]) -> float:
    mean = statistics.fmean(values)
    deviations = [v - mean for v in values]
    total = sum(d * d for d in deviations)
    if total == 0:
        return 0.0
    return sum(a * b for a, b in itertools.pairwise(deviations)) / total


def batch_means(timeline: Sequence[int]) -> tuple[Estimate | None, str]:
    """The per-second completions' mean rate from nearly independent batches, or why not.

    The estimate is in completions per second; its relative standard error is what
    a one-repeat point's interval takes.
    """
    size = 1
    while len(timeline) // size >= MIN_BATCHES:
        count = len(timeline) // size
        means = [sum(timeline[i * size : (i + 1) * size]) / size for i in range(count)]
        if lag1_autocorrelation(means) <= MAX_LAG1:
            estimate = from_repeats(means)
            if estimate is None:
                break
            return Estimate(
                estimate.mean, estimate.stderr, estimate.df, count, f"batch means of {size} s"
            ), ""
        size *= 2
    seconds = len(timeline)
    return None, (
        f"one repeat, whose {seconds}-s window holds fewer than {MIN_BATCHES} nearly"
        f" independent batches (lag-1 autocorrelation at most {MAX_LAG1})"
    )


def interval(estimate: Estimate, centre: float | None = None) -> Interval:
    """The t-interval of an estimate; centred on `centre` with the same relative width."""
    halfwidth = t_quantile(estimate.df) * estimate.stderr
    if centre is None:
        centre, scale = estimate.mean, 1.0
    else:
        scale = centre / estimate.mean if estimate.mean else 0.0
    method = estimate.method or f"t-interval on the mean of {estimate.samples} repeats"
    return Interval(
        centre,
        max(0.0, centre - halfwidth * scale),  # a throughput is never below 0
        centre + halfwidth * scale,
        estimate.samples,
        method,
    )


def configuration_estimate(
    throughputs: Sequence[float], timeline: Sequence[int] | None = None
) -> tuple[Estimate | None, str]:
    """A configuration's throughput estimate (frames/s), or why it has none.

    `throughputs` are its valid repeats; with exactly one, `timeline` (that point's
    merged per-second completions) gives batch means, scaled to its frames/s.
    """
    if len(throughputs) >= 2:
        return from_repeats(throughputs), ""
    if len(throughputs) == 1 and timeline:
        batches, why = batch_means(timeline)
        if batches is None or not batches.mean:
            return None, why or "the window's timeline holds no completion"
        scale = throughputs[0] / batches.mean
        return Estimate(
            throughputs[0], batches.stderr * scale, batches.df, batches.samples, batches.method
        ), ""
    if len(throughputs) == 1:
        return None, "one repeat and no per-second timeline to cut into batches"
    return None, "no valid repeat"


# ---------------------------------------------------------------------------
# A ratio of two configurations


def ratio_interval(numerator: Estimate, denominator: Estimate) -> Interval:
    """Fieller's 95% interval for numerator.mean / denominator.mean (independent samples)."""
    a, b = numerator.mean, denominator.mean
    va, vb = numerator.stderr**2, denominator.stderr**2
    samples = min(numerator.samples, denominator.samples)
    if b == 0:
        return unbounded(None, "the reference throughput is 0", samples)
    ratio = a / b
    # Welch-Satterthwaite for the variance of a - ratio * b
    spread = va + ratio * ratio * vb
    parts = va * va / numerator.df + (ratio**4) * vb * vb / denominator.df
    df = spread * spread / parts if parts > 0 else float(numerator.df + denominator.df)
    t = t_quantile(df)
    method = f"Fieller's interval (n = {numerator.samples} / {denominator.samples})"
    g = t * t * vb / (b * b)
    if g >= 1:
        return Interval(
            ratio,
            None,
            None,
            samples,
            method,
            "the reference throughput is too uncertain for a bounded interval",
        )
    root = math.sqrt(max(0.0, (a * b) ** 2 - (b * b - t * t * vb) * (a * a - t * t * va)))
    denominator_term = b * b - t * t * vb
    low = max(0.0, (a * b - root) / denominator_term)  # nor is a ratio of two of them
    high = (a * b + root) / denominator_term
    return Interval(ratio, low, high, samples, method)
