"""The latency histogram: quantiles within its relative error, exact merge, round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from servelab.clients.histogram import LogHistogram

QUANTILES = (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def _samples(seed: int, n: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Latencies over several decades: a lognormal body with a heavy tail.
    body = rng.lognormal(mean=math.log(2e-3), sigma=0.6, size=n)
    tail = rng.pareto(1.5, size=n // 50) * 0.05 + 0.01
    return np.concatenate([body, tail])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_are_within_one_percent_of_the_exact_ones(seed: int) -> None:
    values = _samples(seed)
    histogram = LogHistogram()
    for value in values:
        histogram.record(float(value))

    assert histogram.relative_accuracy <= 0.01
    for q in QUANTILES:
        exact = float(np.quantile(values, q, method="inverted_cdf"))
        approx = histogram.quantile(q)
        assert abs(approx - exact) <= 0.01 * exact, (q, approx, exact)
    assert histogram.count == len(values)
    assert histogram.max == values.max()
    assert histogram.min == values.min()
    assert histogram.mean == pytest.approx(values.mean(), rel=1e-9)


def test_merge_equals_recording_everything_in_one() -> None:
    values = _samples(7)
    parts = np.array_split(values, 5)
    whole = LogHistogram()
    for value in values:
        whole.record(float(value))
    merged = LogHistogram()
    for part in parts:
        worker = LogHistogram()
        for value in part:
            worker.record(float(value))
        # Workers send their histograms to the parent as dicts.
        merged.merge(LogHistogram.from_dict(worker.to_dict()))

    assert merged.buckets == whole.buckets
    assert (merged.count, merged.min, merged.max) == (whole.count, whole.min, whole.max)
    for q in QUANTILES:
        assert merged.quantile(q) == whole.quantile(q)


def test_round_trip_and_guards() -> None:
    histogram = LogHistogram()
    assert math.isnan(histogram.quantile(0.5))
    for value in (0.001, 0.002, 0.004):
        histogram.record(value)
    restored = LogHistogram.from_dict(histogram.to_dict())
    assert restored.to_dict() == histogram.to_dict()
    assert restored.quantile(0.5) == pytest.approx(0.002, rel=0.01)

    with pytest.raises(ValueError, match="relative accuracy"):
        histogram.merge(LogHistogram(relative_accuracy=0.01))
    broken = histogram.to_dict()
    broken["count"] = 4
    with pytest.raises(ValueError, match="add up"):
        LogHistogram.from_dict(broken)
