"""Counting a counter over a window from Prometheus' raw samples."""

from __future__ import annotations

import pytest

from servelab.controller.prometheus import Window, _epoch, counter_increase, inner_rate

WINDOW = Window(10.5, 20.5)


def test_the_count_is_interpolated_between_the_scrapes_around_each_edge():
    # 100 requests a second, scraped every second on the whole second
    samples = [(float(t), 100.0 * t) for t in range(5, 26)]
    assert counter_increase(samples, WINDOW) == pytest.approx(1000.0)


def test_a_reset_restarts_the_counter_from_zero():
    # 100/s until t=15, then the process restarts and counts from 0 again at 100/s
    samples = [(float(t), 100.0 * t) for t in range(5, 16)]
    samples += [(float(t), 100.0 * (t - 15)) for t in range(16, 26)]
    # 450 before the reset (10.5 -> 15) and 450 after it (16 -> 20.5); 15 -> 16 reads as 100
    assert counter_increase(samples, WINDOW) == pytest.approx(1000.0)


def test_a_series_born_inside_the_window_counts_from_zero():
    samples = [(15.0, 3.0), (16.0, 5.0), (25.0, 9.0)]
    assert counter_increase(samples, WINDOW) == pytest.approx(5.0 + 4.0 * 4.5 / 9.0)


def test_a_series_whose_scrapes_stop_keeps_its_last_value():
    samples = [(float(t), 10.0 * t) for t in range(5, 16)]
    assert counter_increase(samples, WINDOW) == pytest.approx(150.0 - 105.0)


def test_no_samples_is_unknown():
    assert counter_increase([], WINDOW) is None


def test_prometheus_scrape_times_read_with_nanoseconds():
    assert _epoch("2026-11-23T10:00:00.123456789Z") == pytest.approx(1795428000.123457, abs=1e-6)
    assert _epoch("2026-11-23T10:00:00Z") == pytest.approx(1795428000.0)
    assert _epoch("0001-01-01T00:00:00Z") is None


def test_the_inner_rate_uses_only_scrapes_inside_the_window():
    # 100/s inside the window, 300/s in the cool-down after it: interpolation at the
    # edge would mix the two, the scrapes inside it do not
    samples = [(float(t), 100.0 * t) for t in range(5, 21)]
    samples += [(21.0, 2300.0), (22.0, 2600.0)]
    assert inner_rate(samples, WINDOW) == pytest.approx((100.0, 9.0))
    assert inner_rate([(11.0, 5.0)], WINDOW) is None
