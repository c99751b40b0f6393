"""A mergeable histogram with logarithmic buckets (pure Python, no gRPC).

A positive value v falls in bucket i = ceil(log(v) / log(gamma)), which covers
(gamma**(i-1), gamma**i]. Quantiles report the bucket's point 2*gamma**i/(gamma+1),
whose distance to any value of the bucket is at most `relative_accuracy` of that
value; so every quantile is within that relative error of the exact order statistic.
Histograms with the same accuracy merge exactly: bucket counts add.

Quantiles use the nearest-rank definition: q is the smallest recorded value v with
at least ceil(q * count) values <= v (NumPy's `method="inverted_cdf"`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

DEFAULT_RELATIVE_ACCURACY = 0.005


@dataclass
class LogHistogram:
    """Counts of positive values in log buckets, plus exact count, sum, min and max."""

    relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY
    count: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    zero_count: int = 0
    buckets: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1), got {self.relative_accuracy}")
        self._gamma = (1.0 + self.relative_accuracy) / (1.0 - self.relative_accuracy)
        self._inv_log_gamma = 1.0 / math.log(self._gamma)

    def record(self, value: float) -> None:
        """Add one value; values <= 0 are counted as zeros."""
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        if value <= 0.0:
            self.zero_count += 1
            return
        index = math.ceil(math.log(value) * self._inv_log_gamma)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1

    def merge(self, other: LogHistogram) -> None:
        """Add another histogram's counts into this one (same accuracy required)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                f"cannot merge histograms of relative accuracy "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.zero_count += other.zero_count
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """The nearest-rank q-quantile (0 <= q <= 1); NaN when empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.count - 1e-9))
        if rank >= self.count:
            return self.max
        if rank <= self.zero_count:
            return 0.0 if self.min >= 0.0 else self.min  # non-positive values are not bucketed
        seen = self.zero_count
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                point = 2.0 * self._gamma**index / (self._gamma + 1.0)
                return min(max(point, self.min), self.max)
        return self.max  # unreachable: the counts add up to self.count

    def to_dict(self) -> dict[str, Any]:
        """A JSON- and pickle-friendly form; `from_dict` restores it exactly."""
        return {
            "relative_accuracy": self.relative_accuracy,
            "count": self.count,
            "sum": self.total,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "zero_count": self.zero_count,
            "buckets": {str(i): n for i, n in sorted(self.buckets.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogHistogram:
        hist = cls(relative_accuracy=float(data["relative_accuracy"]))
        hist.count = int(data["count"])
        hist.total = float(data["sum"])
        hist.min = math.inf if data["min"] is None else float(data["min"])
        hist.max = -math.inf if data["max"] is None else float(data["max"])
        hist.zero_count = int(data["zero_count"])
        hist.buckets = {int(i): int(n) for i, n in data["buckets"].items()}
        if hist.zero_count + sum(hist.buckets.values()) != hist.count:
            raise ValueError("histogram bucket counts do not add up to its count")
        return hist
