"""Counting a counter over a window from Prometheus' raw samples, and how well they cover it."""

from __future__ import annotations

import pytest

from servelab.controller.prometheus import (
    Window,
    _epoch,
    counter_increase,
    covered_seconds,
    duration_s,
    inner_rate,
    scrape_coverage,
)

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


# -- how much of a window the scrapes cover ------------------------------------------------


def test_regular_scrapes_around_the_window_cover_all_of_it():
    stamps = [float(t) + 0.3 for t in range(8, 24)]  # every second, off the window's edges
    assert covered_seconds(stamps, WINDOW, max_gap_s=2.5) == pytest.approx(10.0)


def test_one_missed_scrape_still_covers_two_missed_in_a_row_do_not():
    every_second = [float(t) for t in range(8, 24)]
    one_missed = [t for t in every_second if t != 14.0]
    assert covered_seconds(one_missed, WINDOW, max_gap_s=2.5) == pytest.approx(10.0)
    two_missed = [t for t in one_missed if t != 15.0]  # 13 -> 16: 3 s uncovered
    assert covered_seconds(two_missed, WINDOW, max_gap_s=2.5) == pytest.approx(7.0)


def test_the_window_is_uncovered_before_the_first_scrape_and_after_the_last():
    # scrapes stop at 15 (Prometheus starved): 10.5 -> 15 covered, then nothing
    stamps = [float(t) for t in range(8, 16)]
    assert covered_seconds(stamps, WINDOW, max_gap_s=2.5) == pytest.approx(4.5)
    assert covered_seconds([], WINDOW, max_gap_s=2.5) == 0.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("", None), ("1x", None)]
)
def test_prometheus_durations_read_in_seconds(text, seconds):
    assert duration_s(text) == seconds


class RecordedScrapes:
    """Prometheus' answers about `up`: targets with their interval, and up's samples."""

    def __init__(self, interval: str | None, series: dict[str, list[tuple[float, float]]]):
        self.interval = interval
        self.series = series
        self.asked: list[tuple[str, float, float]] = []

    def targets(self):
        found = [{"labels": {"job": "node", "platform": p}} for p in self.series]
        if self.interval is not None:
            for target in found:
                target["scrapeInterval"] = self.interval
        return [*found, {"labels": {"job": "haproxy"}, "scrapeInterval": "30s"}]

    def raw(self, selector, start, end):
        self.asked.append((selector, start, end))
        return [({"job": "node", "platform": p}, s) for p, s in self.series.items()]


def test_coverage_counts_only_the_scrapes_that_succeeded_per_target():
    every_second = [(float(t), 1.0) for t in range(5, 26)]
    # the client platform's exporter timed out from 13 to 17: up is 0 there
    timed_out = [(t, 0.0 if 13 <= t <= 17 else 1.0) for t, _ in every_second]
    api = RecordedScrapes("1s", {"server": every_second, "client": timed_out})
    found = scrape_coverage(api, "node", {}, WINDOW)
    assert [(c.target, c.covered_s) for c in found] == [
        ("client platform", pytest.approx(10.0 - 6.0)),
        ("server platform", pytest.approx(10.0)),
    ]
    assert found[0].fraction == pytest.approx(0.4)
    # up's samples around the window too, as far as a gap may reach
    assert api.asked == [('up{job="node"}', 10.5 - 2.5, 20.5 + 2.5)]


def test_without_a_reported_interval_the_scrapes_own_step_is_used():
    every_two_seconds = [(float(t), 1.0) for t in range(4, 26, 2)]
    api = RecordedScrapes(None, {"server": every_two_seconds})
    (found,) = scrape_coverage(api, "node", {}, WINDOW)
    assert found.covered_s == pytest.approx(10.0)
    assert scrape_coverage(RecordedScrapes("1s", {}), "node", {}, WINDOW) == []
