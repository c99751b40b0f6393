"""results.json's format: files of every earlier layout read, current files round-trip.

tests/controller/data/ holds files the controller wrote before the format had a
version (format 1), made at commit 7640b42 with that commit's Run, writer, metrics
and validity rules, the phases and Prometheus replaced by stand-ins:
- results-v1.json: four points (valid; invalid with transport errors; failed in
  the serve phase; measured without server-side metrics or in-process ceiling);
- results-v1-resumed.json: the same run after a `--resume` that tried the failed
  point again (it failed again, and moved to the end);
- results-v1-before-network.json: that run as the controller of 8f6dd2e..76d5391
  wrote it: HAProxy's and the server's counts unrounded, no `rate_span_s`, no
  `network`, no `clocks`;
- results-v1-first-cut.json: as the first controller (2663160..c620939) wrote it:
  `window_s` for the window, no status, no Prometheus parts, a `controller` host.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from servelab.controller import cli
from servelab.controller.bookkeeping import RunBook
from servelab.controller.clocks import ClockOffset
from servelab.controller.compare import compare_runs
from servelab.controller.plan import PlanError
from servelab.controller.report import build_report
from servelab.controller.results import (
    FORMAT_VERSION,
    RESULTS_FILE,
    Latency,
    MeasuredWindow,
    ProxyMetrics,
    ReportError,
    load,
    read_results,
    save,
    write_results,
)

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(p.name for p in DATA.glob("results-v1*.json"))
SERVE_FAILED = (
    "playbooks/phases/serve.yml failed: ref-tensorflow did not come up "
    "(Model tiny version 1 is not AVAILABLE after 60 s)"
)


def _copy(tmp_path: Path, name: str) -> Path:
    run_dir = tmp_path / name.removesuffix(".json")
    run_dir.mkdir()
    shutil.copyfile(DATA / name, run_dir / RESULTS_FILE)
    return run_dir


def test_todays_file_reads_with_every_value():
    results = read_results(DATA / "results-v1.json")
    assert results.run_id == "20261203T132505Z-smoke"
    assert results.plan_name == "smoke"
    assert results.kinds == ("ref-openvino", "ref-tensorflow")
    assert [h.cores for h in results.hosts] == [2, 2]
    assert results.hosts[0].link_mbps == 10000
    assert results.clocks[0] == ClockOffset("lab", "client", 0.4000663757324219, 2.0)
    assert results.failures == (f"ref-tensorflow-tiny-b1-c2-r0: {SERVE_FAILED}",)
    valid, invalid, failed, bare = results.points
    assert (valid.server, valid.batch, valid.throughput_fps, valid.valid) == (
        "ref-openvino",
        1,
        512.0,
        True,
    )
    assert valid.latency_ms == Latency(
        mean=4.7113, p50=4.7242, p90=5.9459, p95=6.066, p99=6.2497, p99_9=6.2497, max=6.2497,
        min=3.1254,
    )  # fmt: skip
    assert valid.window == MeasuredWindow(1795400000.0, 1795400004.0, 4.0)
    assert valid.proxy == ProxyMetrics(2056, 514.0479999999952, 4.0, 12.6, 310323200.0)
    assert valid.server_metrics.request_ms_mean == pytest.approx(4.1)
    assert valid.cpu.shared_host is True and valid.cpu.server_cores == 2
    assert valid.network.device == "lo" and valid.network.near_capacity is False
    assert valid.stability.spread == 0.0 and valid.stability.requests_per_s == [512.0, 512.0]
    assert valid.in_process_fps == 2210.5
    assert [(c.host, c.requests, c.throughput_fps) for c in valid.client_hosts] == [
        ("client", 2048, 512.0)
    ]
    assert invalid.errors == {"UNAVAILABLE": 3}
    assert invalid.reasons == ["transport errors: 3 UNAVAILABLE"] and not invalid.valid
    assert failed.status == "failed" and failed.reasons == [SERVE_FAILED]
    assert failed.window is None and failed.latency_ms is None and failed.latency.p99 is None
    assert failed.verdict == f"FAILED: {SERVE_FAILED}"
    assert bare.server_metrics is None and bare.in_process_fps is None and bare.valid


def test_a_resumed_file_keeps_its_resumes_and_its_order():
    results = read_results(DATA / "results-v1-resumed.json")
    assert results.run.resumed == ["2026-12-03T13:25:21.697743+00:00"]
    assert [(p.server, p.batch, p.status) for p in results.points] == [
        ("ref-openvino", 1, "measured"),
        ("ref-openvino", 4, "measured"),
        ("ref-tensorflow", 4, "measured"),
        ("ref-tensorflow", 1, "failed"),
    ]
    assert len(results.failures) == 2


def test_the_first_prometheus_layout_is_upgraded():
    results = read_results(DATA / "results-v1-before-network.json")
    proxy = results.points[0].proxy
    assert proxy.requests == 2056 and isinstance(proxy.requests, int)  # 2056.37 written
    assert proxy.rate_span_s is None
    assert results.points[0].server_metrics.requests == 2048  # 2047.75 written
    assert all(p.network is None for p in results.points)
    assert results.run.clocks is None and results.clocks == ()
    assert results.run.resumed == ["2026-11-20T09:12:40.118244+00:00"]


def test_the_first_cut_is_upgraded():
    results = read_results(DATA / "results-v1-first-cut.json")
    point = results.points[0]
    assert point.status == "measured"
    assert point.window == MeasuredWindow(None, None, 4.0)
    assert point.proxy is None and point.cpu is None and point.stability is None
    assert results.controller == (("host", "lab"), ("python", "3.11.2"))
    assert results.hosts == ()


@pytest.mark.parametrize("name", FIXTURES)
def test_an_older_file_written_again_is_current_and_reads_the_same(tmp_path, name):
    before = read_results(DATA / name)
    write_results(tmp_path, before.run, before.points, before.failures)
    assert json.loads((tmp_path / RESULTS_FILE).read_text())["format_version"] == FORMAT_VERSION
    after = read_results(tmp_path)
    assert after.run == before.run
    assert after.points == before.points
    assert after.failures == before.failures


@pytest.mark.parametrize("name", ["results-v1.json", "results-v1-resumed.json"])
def test_todays_files_are_written_as_they_were_plus_the_version(tmp_path, name):
    """The JSON names and values are a contract: the writer adds the version, nothing else."""
    results = read_results(DATA / name)
    write_results(tmp_path, results.run, results.points, results.failures)
    written = (tmp_path / RESULTS_FILE).read_text()
    version_line = f'  "format_version": {FORMAT_VERSION},\n'
    assert written.startswith("{\n" + version_line)
    assert written.replace(version_line, "", 1) == (DATA / name).read_text()


@pytest.mark.parametrize("name", FIXTURES)
def test_a_current_file_round_trips_byte_for_byte(tmp_path, name):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    results = read_results(DATA / name)
    write_results(first, results.run, results.points, results.failures)
    again = read_results(first)
    write_results(second, again.run, again.points, again.failures)
    assert (second / RESULTS_FILE).read_bytes() == (first / RESULTS_FILE).read_bytes()


def _damaged(tmp_path: Path, change) -> Path:
    document = json.loads((DATA / "results-v1.json").read_text())
    change(document)
    run_dir = tmp_path / "damaged"
    run_dir.mkdir()
    (run_dir / RESULTS_FILE).write_text(json.dumps(document, indent=2))
    return run_dir


def _set(path: str, value):
    def change(document):
        *parents, last = path.split(".")
        target = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value

    return change


def _drop(path: str):
    def change(document):
        *parents, last = path.split(".")
        target = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        del target[last]

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _set("points.0.cpu.shared_host", "yes"),
            "points[0].cpu.shared_host is a string ('yes'); expected true or false",
        ),
        (
            _set("points.1.errors.UNAVAILABLE", 2.5),
            "points[1].errors.UNAVAILABLE is a number ('2.5'); expected an integer",
        ),
        (_drop("points.0.proxy.requests"), "points[0].proxy has no 'requests'"),
        (
            _set("points.0.proxy.request_count", 3),
            "points[0].proxy.request_count is not a field this servelab knows",
        ),
        (
            _set("points.2.status", "skipped"),
            "points[2].status is 'skipped'; expected one of ['measured', 'failed']",
        ),
        (
            _set("run.clocks", {"lab": 0.4}),
            "run.clocks is an object",
        ),
        (
            _set("run.hosts.server", [{"cores": "many"}]),
            "run.hosts.server[0].cores is a string ('many'); expected an integer",
        ),
        (
            _set("points.0.clients.client.requests.completed", "all"),
            "points[0].clients.client.requests.completed is a string ('all')",
        ),
        (_set("format_version", FORMAT_VERSION + 1), "is newer than this servelab reads"),
        (_set("format_version", "2"), "format_version is '2'; expected a whole number"),
        (_set("extras", {}), "'extras' is not a part of results.json"),
    ],
)
def test_a_bad_field_is_an_error_naming_the_file_the_field_and_what_it_should_be(
    tmp_path, change, message
):
    run_dir = _damaged(tmp_path, change)
    with pytest.raises(ReportError) as caught:
        read_results(run_dir)
    assert str(caught.value).startswith(f"{run_dir / RESULTS_FILE}: ")
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_resume_reads_through_the_same_reader(tmp_path):
    run_dir = _copy(tmp_path, "results-v1-resumed.json")
    meta, points, failures = load(run_dir)
    assert points == list(read_results(run_dir).points)
    save(run_dir, meta, points, failures)  # what the run loop writes back
    assert read_results(run_dir).run == read_results(DATA / "results-v1-resumed.json").run


def test_resume_of_an_unreadable_file_is_an_error_and_leaves_it_alone(tmp_path):
    run_dir = _damaged(tmp_path, _set("points.1.throughput_fps", "fast"))
    before = (run_dir / RESULTS_FILE).read_bytes()
    with pytest.raises(PlanError, match=r"points\[1\]\.throughput_fps is a string"):
        RunBook.resume(run_dir, progress=None)
    assert cli.main(["run", "--resume", str(run_dir)]) == 2
    assert (run_dir / RESULTS_FILE).read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == [RESULTS_FILE]


@pytest.mark.parametrize("name", FIXTURES)
def test_an_older_file_reports_and_compares_saying_where_no_interval_exists(tmp_path, name):
    run_dir = _copy(tmp_path, name)
    build_report(run_dir)
    results = read_results(run_dir)
    assert results.intervals is not None  # the report wrote them
    for config in results.intervals.configurations:
        assert (config.low_fps is None) == (config.note is not None)
    comparison = compare_runs(run_dir, run_dir)
    for p in comparison.points:
        bounds = p.change_interval
        if bounds is not None and bounds.low is None:
            assert p.noise.startswith("no interval in A")
    # written again with its intervals, the file reads the same
    write_results(tmp_path, results.run, results.points, results.failures, results.intervals)
    assert read_results(tmp_path).intervals == results.intervals
