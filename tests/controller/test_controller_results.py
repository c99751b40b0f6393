"""How the controller turns the client pools' summaries into a point's record."""

from __future__ import annotations

from pathlib import Path

import pytest

from servelab.clients.histogram import LogHistogram
from servelab.controller.plan import Point
from servelab.controller.results import MeasuredWindow, from_clients, load, save, summary_table

POINT = Point("ref-openvino", "tiny", 4, 2, 0)
# what a run without provenance yet holds besides its id and plan
EMPTY_RUN = {
    "started": None,
    "finished": None,
    "git_commit": None,
    "inventory": None,
    "hosts": {},
    "versions": {},
}


def _summary(latencies_s, batch=4, duration_s=2.0, errors=None, failures=0):
    histogram = LogHistogram()
    for value in latencies_s:
        histogram.record(value)
    completed = len(latencies_s)
    verified = completed - failures
    return {
        "requests": {
            "completed": completed,
            "verified": verified,
            "verification_failures": failures,
            "errors": errors or {},
        },
        "throughput": {
            "requests_per_s": completed / duration_s,
            "frames_per_s": verified * batch / duration_s,
        },
        "window": {
            "start_epoch": 1000.0,
            "end_epoch": 1000.0 + duration_s,
            "duration_s": duration_s,
        },
        "latency_histogram_s": histogram.to_dict(),
    }


def test_two_hosts_add_up_and_their_latencies_merge_exactly():
    a = [0.010] * 90 + [0.050] * 10
    b = [0.020] * 100
    point = from_clients(POINT, {"c1": _summary(a), "c2": _summary(b)})
    assert point.requests == 200
    assert point.throughput_fps == pytest.approx(200 * 4 / 2.0)
    assert point.requests_per_s == pytest.approx(100.0)
    # 190 of 200 samples are at or under 20 ms, so p90 is 20 ms and p99 is 50 ms (1% buckets)
    assert point.latency_ms.p90 == pytest.approx(20.0, rel=0.01)
    assert point.latency_ms.p99 == pytest.approx(50.0, rel=0.01)
    assert point.latency_ms.max == pytest.approx(50.0, rel=0.01)


def test_errors_and_wrong_answers_add_up_over_hosts():
    point = from_clients(
        POINT,
        {
            "c1": _summary([0.01] * 10, errors={"UNAVAILABLE": 2}),
            "c2": _summary([0.01] * 10, errors={"UNAVAILABLE": 1, "INTERNAL": 1}, failures=3),
        },
    )
    assert point.errors == {"UNAVAILABLE": 3, "INTERNAL": 1}
    assert point.verify_failures == 3
    assert point.throughput_fps == pytest.approx((10 + 7) * 4 / 2.0)


def test_the_window_is_the_span_every_pool_measured():
    early = _summary([0.01] * 10)
    late = _summary([0.01] * 10)
    late["window"] = {"start_epoch": 1000.2, "end_epoch": 1001.9, "duration_s": 1.7}
    point = from_clients(POINT, {"c1": early, "c2": late})
    assert point.window == MeasuredWindow(start_epoch=1000.2, end_epoch=1001.9, duration_s=1.7)


def test_no_summary_leaves_the_numbers_empty():
    point = from_clients(POINT, {})
    assert point.window is None
    assert point.throughput_fps is None
    assert not point.valid


def _ceiling_record(model, batch, fps):
    from dataclasses import fields

    from servelab.server.modelrepo.ceiling import CeilingRecord

    data = {f.name: 0 for f in fields(CeilingRecord)}
    return CeilingRecord.from_json({**data, "model": model, "batch": batch, "throughput_fps": fps})


def test_the_in_process_ceiling_of_the_same_model_and_batch_is_attached():
    ceiling = {
        ("tiny", 4): _ceiling_record("tiny", 4, 123.0),
        ("tiny", 1): _ceiling_record("tiny", 1, 50.0),
    }
    point = from_clients(POINT, {"c1": _summary([0.01] * 10)}, ceiling)
    assert point.in_process_fps == 123.0
    other = from_clients(Point("ref-openvino", "tiny", 8, 2, 0), {"c1": _summary([0.01])}, ceiling)
    assert other.in_process_fps is None
    tensorflow = from_clients(
        Point("ref-tensorflow", "tiny", 4, 2, 0), {"c1": _summary([0.01])}, ceiling
    )
    assert tensorflow.in_process_fps is None  # OpenVINO's ceiling says nothing of TensorFlow


def test_results_json_round_trips(tmp_path: Path):
    point = from_clients(POINT, {"c1": _summary([0.010] * 100)})
    point.valid = True
    save(tmp_path, {"id": "x", "plan": {"name": "p"}}, [point], ["a failure"])
    run, points, failures = load(tmp_path)
    assert run == {"id": "x", "plan": {"name": "p"}, **EMPTY_RUN}
    assert points == [point]
    assert failures == ["a failure"]


def test_the_summary_table_has_a_row_per_point_with_its_verdict():
    good = from_clients(POINT, {"c1": _summary([0.010] * 100)})
    good.valid = True
    bad = from_clients(POINT, {"c1": _summary([0.010] * 10, errors={"UNAVAILABLE": 1})})
    bad.reasons = ["transport errors: 1 UNAVAILABLE"]
    table = summary_table([good, bad]).splitlines()
    assert len(table) == 4
    assert table[2].split()[:5] == ["ref-openvino", "tiny", "4", "2", "200.0"]
    assert table[2].endswith("yes")
    assert "NO: transport errors: 1 UNAVAILABLE" in table[3]
