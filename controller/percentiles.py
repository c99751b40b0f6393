"""How many samples a latency percentile needs before it is stated at all.

The q-quantile of n samples is an order statistic; with fewer than 1 / (1 - q)
samples not one of them lies above it, and "p99" is only the largest sample seen
(a 16-request window once printed that as its p99). So a percentile is stated only
from 1 / (1 - q) samples on: 100 for p99, 1,000 for p99.9, 20 for p95, 10 for p90,
2 for the median. One rule for every percentile, so that p95 never asks for more
samples than p99; below it the percentile is left empty, with its sample count.
"""

from __future__ import annotations

import math

# results.json's percentile names (Latency's fields) and the quantile each one is
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}


def min_samples(name: str) -> int:
    """The fewest samples from which the percentile `name` ("p99") is stated."""
    return math.ceil(1.0 / (1.0 - PERCENTILES[name]) - 1e-9)


def enough_samples(name: str, samples: int) -> bool:
    return samples >= min_samples(name)
