"""Enough samples: a window long enough for min_requests, and figures only from enough samples.

What users rely on: a point with too few requests is never valid on a wide
counting allowance; a slow point's window is lengthened (up to the plan's cap)
until it holds min_requests, keeping only the last attempt and saying why; a
percentile with too few samples behind it is left empty, with its count.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servelab.clients.histogram import LogHistogram
from servelab.controller.bookkeeping import RunBook
from servelab.controller.formats import format_percentile
from servelab.controller.percentiles import min_samples
from servelab.controller.plan import DEFAULT_VALIDITY, Point, Window
from servelab.controller.results import Latency, from_clients
from servelab.controller.run import execute
from servelab.controller.validity import TOO_FEW, judge, stability
from servelab.controller.window_length import WindowPlanner, requests_to_judge
from tests.controller.fake_phases import PROJECT, FakeLab, smoke_plan

INVENTORY = PROJECT / "inventory" / "local.yml"
WINDOW = Window(warmup_s=1, duration_s=10, cooldown_s=1, max_duration_s=120)


def _run(tmp_path: Path, lab: FakeLab, **plan_changes) -> tuple[int, list[dict]]:
    only = {"batches": [1], "servers": ["ref-openvino"], "baseline": "ref-openvino"}
    plan = smoke_plan(tmp_path, **{**only, **plan_changes})
    book = RunBook.start(plan, tmp_path / "results", inventory=INVENTORY, progress=None)
    status = execute(book, lab)
    return status, json.loads((book.dir / "results.json").read_text())["points"]


def test_a_16_request_point_is_too_few_requests_to_judge():
    # the default plan's batch-8 points before: 16 requests in 10 s at concurrency 2
    timeline = [2, 1, 2, 2, 1, 2, 2, 1, 2, 1]
    stable = stability(timeline, 10.0, 2, 4, DEFAULT_VALIDITY.max_spread)
    reasons = judge(
        bounds=DEFAULT_VALIDITY,
        window=WINDOW,
        measured_window_s=10.0,
        requests=16,
        errors={},
        verify_failures=0,
        concurrency=2,
        proxy_rate=(1.7, 9.0),  # one request more than the clients': 6%, inside 5% + 14%
        client_cpu=0.2,
        client_cpu_source="node exporter",
        stable=stable,
    )
    too_few = [r for r in reasons if r.startswith(TOO_FEW)]
    assert len(too_few) == 2, reasons  # HAProxy's check and the stability check
    assert "more than proxy_tolerance 5%" in too_few[0]
    assert "more than max_spread 20%" in too_few[1]
    assert any(
        "16 requests in the window, fewer than validity.min_requests 100" in r for r in reasons
    )


def test_a_point_with_enough_requests_is_judged_on_its_rates():
    reasons = judge(
        bounds=DEFAULT_VALIDITY,
        window=WINDOW,
        measured_window_s=60.0,
        requests=120,
        errors={},
        verify_failures=0,
        concurrency=2,
        proxy_rate=(2.0, 59.0),
        client_cpu=0.2,
        client_cpu_source="node exporter",
        stable=stability([2] * 60, 60.0, 2, 4, DEFAULT_VALIDITY.max_spread),
    )
    assert reasons == []


def test_the_requests_a_point_needs_to_be_judged():
    # HAProxy: one request per client within 5%; stability: 2 per client per interval within 20%
    assert requests_to_judge(DEFAULT_VALIDITY, 2) == max(2 / 0.05, 4 * 2 * 2 / 0.2) == 80
    assert requests_to_judge(DEFAULT_VALIDITY, 32) == 4 * 2 * 32 / 0.2


def test_the_window_of_a_slow_point_extends_until_it_has_min_requests(tmp_path):
    # 5 requests/s: a 4-s window holds 20 of the 100 needed
    lab = FakeLab(fps=lambda point: 5.0)
    status, points = _run(tmp_path, lab, repeats=2)
    # 100 requests at 5/s with the margin: 25 s; repeat 1 starts from the rate repeat 0 saw
    assert lab.windows == [4.0, 25.0, 25.0]
    first, second = points
    assert status == 0 and first["valid"] and second["valid"]
    assert first["requests"] >= 100 and second["requests"] >= 100
    assert first["window"]["duration_s"] == 25.0
    assert first["window_choice"]["attempts"] == 2
    assert "a 4-s window held 20 requests, 100 needed" in first["window_choice"]["reason"]
    assert second["window_choice"]["attempts"] == 1
    assert "repeat 0 ran 5.00 requests/s" in second["window_choice"]["reason"]
    assert len(points) == 2  # only the last attempt of each point is kept


def test_a_fast_point_keeps_the_plans_window_and_says_nothing(tmp_path):
    lab = FakeLab(fps=lambda point: 100.0)
    status, (point,) = _run(tmp_path, lab)
    assert status == 0 and lab.windows == [4.0]
    assert "window_choice" not in point


def test_the_window_stops_at_max_duration_and_the_point_says_it_is_short(tmp_path):
    lab = FakeLab(fps=lambda point: 4.0)  # 16 requests in the plan's 4-s window
    window = {"warmup_s": 3, "duration_s": 4, "cooldown_s": 0.5, "max_duration_s": 10}
    status, (point,) = _run(tmp_path, lab, window=window)
    assert lab.windows == [4.0, 10.0]
    assert status == 1 and not point["valid"]
    assert point["requests"] == 40
    assert any(
        "40 requests in the window, fewer than validity.min_requests 100" in r
        for r in point["reasons"]
    )
    assert "window.max_duration_s 10 s" in " ".join(point["reasons"])


def test_a_point_with_16_requests_in_the_run_loop_is_invalid(tmp_path):
    lab = FakeLab(fps=lambda point: 4.0)
    window = {"warmup_s": 3, "duration_s": 4, "cooldown_s": 0.5, "max_duration_s": 4}
    status, (point,) = _run(tmp_path, lab, window=window)
    assert status == 1 and point["requests"] == 16
    assert any(r.startswith(TOO_FEW) for r in point["reasons"]), point["reasons"]


def test_an_erring_point_is_not_measured_again():
    planner = WindowPlanner(WINDOW, DEFAULT_VALIDITY)
    point = Point("ref-openvino", "tiny", 8, 2, 0)
    choice = planner.first(point)
    assert choice.duration_s == 10.0 and choice.reason is None
    assert planner.again(point, choice, 0, 10.0, 1) is None  # nothing completed: no rate
    assert planner.again(point, choice, 100, 10.0, 1) is None  # enough
    longer = planner.again(point, choice, 16, 10.0, 1)
    assert longer is not None and longer.duration_s == 79.0  # ceil(100 / 1.6 x 1.25)


def _histogram_summary(count: int) -> dict:
    histogram = LogHistogram()
    for i in range(count):
        histogram.record(0.010 + 0.0001 * i)
    return {
        "requests": {
            "completed": count,
            "verified": count,
            "verification_failures": 0,
            "errors": {},
        },
        "throughput": {"requests_per_s": count / 10, "frames_per_s": count / 10},
        "window": {"start_epoch": 1000.0, "end_epoch": 1010.0, "duration_s": 10.0},
        "latency_histogram_s": histogram.to_dict(),
    }


@pytest.mark.parametrize(
    ("samples", "stated", "empty"),
    [
        (16, ("p50", "p90"), ("p95", "p99", "p99_9")),
        (99, ("p50", "p90", "p95"), ("p99", "p99_9")),
        (100, ("p50", "p90", "p95", "p99"), ("p99_9",)),
        (1000, ("p50", "p90", "p95", "p99", "p99_9"), ()),
    ],
)
def test_percentiles_below_their_sample_minimum_are_empty(samples, stated, empty):
    point = from_clients(Point("ref-openvino", "tiny", 1, 2, 0), {"c": _histogram_summary(samples)})
    latency = point.latency_ms
    assert latency.samples == samples
    for name in stated:
        assert getattr(latency, name) is not None, name
        assert format_percentile(latency, name) not in ("\u2013", f"n/a: {samples} samples")
    for name in empty:
        assert getattr(latency, name) is None, name
        assert format_percentile(latency, name) == f"n/a: {samples} samples"
    assert latency.max is not None and latency.mean is not None  # always stated


def test_the_sample_minimum_of_each_percentile():
    assert [min_samples(n) for n in ("p50", "p90", "p95", "p99", "p99_9")] == [2, 10, 20, 100, 1000]


def test_a_point_from_before_the_count_shows_its_stored_percentile():
    assert format_percentile(Latency(p99=12.345), "p99") == "12.3"
    assert format_percentile(Latency(), "p99") == "\u2013"


def test_the_progress_line_says_how_many_requests_stand_behind_the_point():
    from servelab.controller.bookkeeping import point_line

    few = from_clients(Point("ref-tensorflow", "tiny", 8, 2, 0), {"c": _histogram_summary(16)})
    line = point_line(few, 4, 4)
    assert ", 16 requests in 10 s, p99 n/a: 16 samples, " in line
    many = from_clients(Point("ref-tensorflow", "tiny", 8, 2, 0), {"c": _histogram_summary(200)})
    assert ", 200 requests in 10 s, p99 " in point_line(many, 4, 4)
    assert " ms, " in point_line(many, 4, 4)
