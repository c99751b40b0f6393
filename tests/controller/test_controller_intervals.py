"""Confidence intervals: the t quantile, batch means, Fieller's ratio, and their coverage."""

from __future__ import annotations

import random

import pytest

from servelab.controller.intervals import (
    MIN_BATCHES,
    batch_means,
    configuration_estimate,
    from_repeats,
    interval,
    lag1_autocorrelation,
    ratio_interval,
    t_quantile,
)

# Student's t two-sided 95% quantiles as printed in every statistics table.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 29: 2.045, 100: 1.984}


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantile_matches_the_printed_table(df: int) -> None:
    assert t_quantile(df) == pytest.approx(T_TABLE[df], abs=2e-3)


def test_t_interval_of_repeats_is_mean_plus_minus_t_stderr() -> None:
    estimate = from_repeats([100.0, 104.0, 96.0])
    assert estimate is not None
    result = interval(estimate)
    # mean 100, stdev 4, stderr 4 / sqrt(3), t(2) = 4.303
    assert result.estimate == pytest.approx(100.0)
    assert result.high - 100.0 == pytest.approx(4.303 * 4 / 3**0.5, rel=1e-3)
    assert result.samples == 3


def test_one_repeat_has_no_interval_without_a_timeline() -> None:
    estimate, why = configuration_estimate([50.0])
    assert estimate is None
    assert "one repeat" in why


def test_short_window_gives_too_few_batches() -> None:
    estimate, why = batch_means([10] * (MIN_BATCHES - 1))
    assert estimate is None
    assert f"fewer than {MIN_BATCHES}" in why


def test_batches_widen_until_nearly_independent() -> None:
    rng = random.Random(7)
    # A slow wave of 8-s period: 1-s batches are strongly correlated, longer ones are not.
    wave = [100 + (20 if (s // 4) % 2 else -20) + rng.randint(-3, 3) for s in range(64)]
    assert lag1_autocorrelation([float(v) for v in wave]) > 0.5
    estimate, _ = batch_means(wave)
    assert estimate is not None
    assert estimate.method != "batch means of 1 s"


def test_one_repeat_interval_scales_to_the_points_frames_per_second() -> None:
    rng = random.Random(3)
    timeline = [rng.randint(18, 22) for _ in range(30)]
    estimate, _ = configuration_estimate([160.0], timeline)  # batch 8: 20 requests/s
    assert estimate is not None
    result = interval(estimate)
    assert result.low < 160.0 < result.high
    assert result.relative_halfwidth < 0.05


def test_ratio_interval_is_unbounded_when_the_reference_is_too_uncertain() -> None:
    numerator = from_repeats([100.0, 101.0])
    denominator = from_repeats([10.0, 90.0])
    assert numerator is not None and denominator is not None
    result = ratio_interval(numerator, denominator)
    assert not result.bounded
    assert "too uncertain" in (result.note or "")


@pytest.mark.parametrize("repeats", [3, 5])
def test_gain_intervals_cover_the_true_ratio_95_percent_of_the_time(repeats: int) -> None:
    """1,000 seeded trials of noisy repeats (CV 8% and 5%) with a true ratio of 1.369."""
    rng = random.Random(15 + repeats)
    true_a, true_b = 136.9, 100.0
    covered = 0
    for _ in range(1000):
        a = from_repeats([rng.gauss(true_a, 0.08 * true_a) for _ in range(repeats)])
        b = from_repeats([rng.gauss(true_b, 0.05 * true_b) for _ in range(repeats)])
        assert a is not None and b is not None
        result = ratio_interval(a, b)
        covered += result.bounded and result.low <= true_a / true_b <= result.high
    assert 930 <= covered <= 970


def test_batch_mean_intervals_cover_the_true_rate_95_percent_of_the_time() -> None:
    rng = random.Random(11)
    covered = 0
    for _ in range(1000):
        timeline = [round(rng.gauss(40, 6)) for _ in range(20)]
        estimate, _ = batch_means(timeline)
        if estimate is None:
            continue
        result = interval(estimate)
        covered += result.low <= 40 <= result.high
    assert 930 <= covered <= 970


def test_fieller_with_an_exact_reference_is_the_numerators_t_interval_over_it() -> None:
    numerator = from_repeats([100.0, 104.0, 96.0])
    reference = from_repeats([50.0, 50.0, 50.0])
    assert numerator is not None and reference is not None
    result = ratio_interval(numerator, reference)
    half = 4.303 * 4 / 3**0.5  # t(2) x stdev 4 / sqrt(3)
    assert result.low == pytest.approx((100 - half) / 50, rel=1e-3)
    assert result.high == pytest.approx((100 + half) / 50, rel=1e-3)


def test_a_lower_bound_below_zero_is_cut_at_zero() -> None:
    noisy = from_repeats([96.5, 37.5, 24.0])  # three repeats of a starved machine
    steady = from_repeats([8.5, 6.8, 10.5])
    assert noisy is not None and steady is not None
    assert interval(noisy).low == 0.0 < interval(noisy).high
    assert ratio_interval(noisy, steady).low == 0.0
