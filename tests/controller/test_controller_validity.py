"""The validity rules: each one a point can break, with the reason a reader sees."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servelab.controller.plan import DEFAULT_VALIDITY, Window
from servelab.controller.prometheus import ScrapeCoverage
from servelab.controller.validity import judge, merged_timeline, stability, worst_coverage

WINDOW = Window(warmup_s=1, duration_s=10, cooldown_s=1)


def _judge(**changes):
    arguments = {
        "bounds": DEFAULT_VALIDITY,
        "window": WINDOW,
        "measured_window_s": 10.0,
        "requests": 1000,
        "errors": {},
        "verify_failures": 0,
        "concurrency": 4,
        "proxy_rate": (100.0, 8.0),
        "client_cpu": 0.2,
        "client_cpu_source": "node exporter",
        "stable": None,
    }
    return judge(**{**arguments, **changes})


def test_a_clean_point_is_valid():
    assert _judge() == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"errors": {"UNAVAILABLE": 3}}, "transport errors: 3 UNAVAILABLE"),
        ({"verify_failures": 2}, "2 responses failed verification"),
        ({"measured_window_s": 9.0, "proxy_rate": (1000 / 9, 8.0)}, "window 9.00 s is shorter"),
        ({"client_cpu": 0.8}, "client side used 80% of the client platform's CPU"),
        ({"client_cpu": None}, "client platform CPU unknown"),
        ({"proxy_rate": None}, "HAProxy's request rate unknown"),
        ({"requests": 0, "proxy_rate": (0.0, 8.0)}, "no request completed"),
    ],
)
def test_each_rule_names_what_it_found(changes, reason):
    reasons = _judge(**changes)
    assert len(reasons) == 1, reasons
    assert reason in reasons[0]


def test_haproxy_rate_may_differ_by_the_tolerance_plus_counting():
    # clients: 1000 requests in 10 s = 100/s; 5% plus 4 clients over 8 s of 100/s (0.5%)
    assert _judge(proxy_rate=(105.4, 8.0)) == []
    assert _judge(proxy_rate=(94.6, 8.0)) == []
    reasons = _judge(proxy_rate=(105.6, 8.0))
    assert reasons == [
        "HAProxy forwarded 105.6 requests/s, the clients finished 100.0/s: apart by more than 5.5%"
    ]
    # errors are requests HAProxy forwarded too
    assert not any("HAProxy" in r for r in _judge(requests=990, errors={"INTERNAL": 10}))


def test_steady_throughput_is_stable_and_a_drop_is_not():
    steady = stability([100] * 10, 10.0, concurrency=4, intervals=4, max_spread=0.2)
    assert steady.requests_per_s == [100.0, 100.0, 100.0, 100.0]
    assert steady.interval_s == 2.0
    assert _judge(stable=steady) == []
    drop = stability([100] * 6 + [50] * 4, 10.0, concurrency=4, intervals=4, max_spread=0.2)
    # 2-s intervals, the last two seconds left over: 200, 200, 200, 100 requests
    assert drop.requests_per_s == [100.0, 100.0, 100.0, 50.0]
    assert drop.spread == pytest.approx(100 / 175)
    assert drop.allowed == pytest.approx(0.2 + 8 / 175)
    (reason,) = _judge(stable=drop)
    assert reason.startswith("unstable throughput: 100.0, 100.0, 100.0, 50.0 requests/s")


def test_counting_whole_requests_is_allowed_for_slow_points():
    # 3 requests/s with 2 clients: 7 vs 5 per interval is counting, not a change
    slow = stability([3, 4, 3, 2, 3, 3, 2, 3], 8.0, concurrency=2, intervals=4, max_spread=0.2)
    assert slow.spread > 0.2
    assert slow.spread <= slow.allowed


def test_a_window_under_two_seconds_is_not_judged_for_stability():
    assert stability([100], 1.5, concurrency=1, intervals=4, max_spread=0.2) is None


def test_client_hosts_timelines_add_up_by_second():
    summaries = {
        "a": {"timeline": [{"second": 0, "completed": 5}, {"second": 1, "completed": 6}]},
        "b": {"timeline": [{"second": 1, "completed": 2}, {"second": 2, "completed": 3}]},
    }
    assert merged_timeline(summaries) == [5, 8, 3]


def test_scrapes_covering_under_the_bound_make_the_point_invalid_naming_the_job():
    covered = [
        ScrapeCoverage("haproxy", "haproxy", 2.0, 4.0),
        ScrapeCoverage("node", "server platform", 4.0, 4.0),
        ScrapeCoverage("node", "client platform", 3.5, 4.0),
        ScrapeCoverage("model_server", "ref-openvino", 3.6, 4.0),
    ]
    assert _judge(coverage=covered) == [
        "Prometheus' haproxy samples cover 2.0 s of the 4.0-s window (50%), under 90%",
        "Prometheus' node samples of the client platform cover 3.5 s of the 4.0-s window"
        " (87%), under 90%",
    ]
    # 90% exactly is enough; the bound is the plan's
    assert _judge(coverage=covered[3:]) == []
    assert _judge(coverage=covered, bounds=replace(DEFAULT_VALIDITY, min_scrape_coverage=0.5)) == []


def test_a_share_just_under_the_bound_does_not_read_as_the_bound():
    (reason,) = _judge(coverage=[ScrapeCoverage("haproxy", "haproxy", 3.59, 4.0)])
    assert "(89%), under 90%" in reason


def test_the_record_keeps_each_jobs_least_covered_share():
    covered = [
        ScrapeCoverage("node", "server platform", 4.0, 4.0),
        ScrapeCoverage("node", "client platform", 3.0, 4.0),
        ScrapeCoverage("haproxy", "haproxy", 4.4, 4.0),  # scrapes beyond the window: all of it
    ]
    assert worst_coverage(covered) == {"node": 0.75, "haproxy": 1.0}
