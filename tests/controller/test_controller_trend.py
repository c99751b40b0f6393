"""Trend charts: each run's interval drawn, on an axis that does not magnify noise."""

from __future__ import annotations

from matplotlib.figure import Figure

from servelab.controller.history import PointValue
from servelab.controller.trend import MIN_AXIS_SPAN, _run_intervals, _steady_axis


def _value(fps: float, low: float | None = None, high: float | None = None) -> PointValue:
    return PointValue("k", "m", 1, 1, fps, True, 3, 3, (), low_fps=low, high_fps=high)


def test_a_two_percent_wobble_does_not_fill_the_axis():
    ax = Figure().add_subplot()
    rates = [100.0, 101.0, 99.0, 102.0, 100.5]
    ax.plot(range(len(rates)), rates)
    _steady_axis(ax, rates)
    low, high = ax.get_ylim()
    assert low <= 100.5 * (1 - MIN_AXIS_SPAN) and high >= 100.5 * (1 + MIN_AXIS_SPAN)


def test_a_big_change_stays_on_the_axis():
    ax = Figure().add_subplot()
    rates = [100.0, 100.0, 40.0]
    ax.plot(range(3), rates)
    _steady_axis(ax, rates)
    low, high = ax.get_ylim()
    assert low < 40.0 and high > 100.0


def test_only_runs_with_an_interval_get_an_error_bar():
    ax = Figure().add_subplot()
    _run_intervals(
        ax, [(0, _value(100.0, 95.0, 105.0)), (1, _value(99.0)), (2, _value(98.0, 90.0, 106.0))]
    )
    (bars,) = ax.containers
    segments = bars.lines[2][0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [(95.0, 105.0), (90.0, 106.0)]
