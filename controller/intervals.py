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


def _t_density(x: float, df: int) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))


def _t_cdf_above_half(x: float, df: int) -> float:
    """P(T <= x) - 1/2 for x >= 0, by Simpson's rule (density smooth, 400 panels)."""
    panels = 400
    h = x / panels
    total = _t_density(0.0, df) + _t_density(x, df)
    for i in range(1, panels):
        total += (4 if i % 2 else 2) * _t_density(i * h, df)
    return total * h / 3


@lru_cache(maxsize=256)
def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided quantile of Student's t: P(|T| <= q) = confidence."""
    if df < 1:
        raise ValueError(f"degrees of freedom {df}; need at least 1")
    target = confidence / 2
    if df == 1:  # Cauchy: closed form
        return math.tan(math.pi * target)
    if df == 2:
        p = 0.5 + target
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    low, high = 0.0, 20.0
    for _ in range(50):
        mid = (low + high) / 2
        if _t_cdf_above_half(mid, df) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _t_quantile_real(df: float) -> float:
    """t quantile at a fractional df (Welch's), between its two whole neighbours."""
    floor = max(1, math.floor(df))
    if df <= floor:
        return t_quantile(floor)
    share = df - floor
    return (1 - share) * t_quantile(floor) + share * t_quantile(floor + 1)


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
    t = _t_quantile_real(df)
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
