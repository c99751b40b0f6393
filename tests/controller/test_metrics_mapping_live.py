"""controller/metrics.py's queries against a real Prometheus (Debian's package) that scrapes
metric text written here in the official servers' own format and label sets.

The samples follow the upstream sources (OVMS 2025.2: model_metric_reporter.cpp, whose
counters carry {api, interface, method, name, version}, request time {interface, name,
version}, inference time {name, version}; TF Serving 2.18.0: util.cc, whose request_count
carries {model_name, status}, request_latency {model_name, API, entrypoint}, runtime_latency
{model_name, API, runtime}), and the process exporter's namedprocess_namegroup_* series.
Every counter grows at a known rate from the moment the page is first served, so each
figure read back over a window is known in advance. Beside the series the lab reads, each
page carries the ones it must leave out (status calls, REST calls, other methods).
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from servelab.controller.metrics import program_use, server_metrics
from servelab.controller.prometheus import PrometheusAPI, Window
from tests.support.refserver import free_ports
from tests.support.required import missing

PROMETHEUS = "/usr/bin/prometheus"

PREDICT_PER_S = 50  # Predict calls a second over gRPC, the lab's API
FAILED_PER_S = 2
STATUS_PER_S = 1  # a health check's status calls (OVMS counts them apart)
REST_PER_S = 10  # calls over REST, which a gRPC point must not mix in
REQUEST_US, INFERENCE_US, REST_US, STATUS_US = 2000, 1500, 9000, 80
POOL_USER_CORES, POOL_SYSTEM_CORES, POOL_RSS = 0.3, 0.1, 123 * 2**20


def _histogram(name: str, labels: str, count: int, each_us: int) -> list[str]:
    # buckets as both servers write them: cumulative, `le` last, +Inf equal to the count
    return [
        f'{name}_bucket{{{labels},le="1000"}} 0',
        f'{name}_bucket{{{labels},le="10000"}} {count}',
        f'{name}_bucket{{{labels},le="+Inf"}} {count}',
        f"{name}_sum{{{labels}}} {count * each_us}",
        f"{name}_count{{{labels}}} {count}",
    ]


def ovms_text(t: float) -> str:
    predict, failed, status, rest = (
        int(r * t) for r in (PREDICT_PER_S, FAILED_PER_S, STATUS_PER_S, REST_PER_S)
    )
    model = 'name="tiny",version="1"'
    tfs_api, predict_method = 'api="TensorFlowServing"', 'method="Predict"'
    grpc, rest_api = 'interface="gRPC"', 'interface="REST"'
    lines = [
        "# HELP ovms_requests_success Number of successful requests to a model or a DAG.",
        "# TYPE ovms_requests_success counter",
        f"ovms_requests_success{{{tfs_api},{grpc},{predict_method},{model}}} {predict}",
        f'ovms_requests_success{{{tfs_api},{rest_api},method="GetModelStatus",{model}}} {status}',
        f"ovms_requests_success{{{tfs_api},{rest_api},{predict_method},{model}}} {rest}",
        f'ovms_requests_success{{api="KServe",{grpc},method="ModelInfer",{model}}} 0',
        "# HELP ovms_requests_fail Number of failed requests to a model or a DAG.",
        "# TYPE ovms_requests_fail counter",
        f"ovms_requests_fail{{{tfs_api},{grpc},{predict_method},{model}}} {failed}",
        f"ovms_requests_fail{{{tfs_api},{rest_api},{predict_method},{model}}} 7",
        "# HELP ovms_request_time_us Processing time of requests to a model or a DAG.",
        "# TYPE ovms_request_time_us histogram",
        *_histogram("ovms_request_time_us", f'interface="gRPC",{model}', predict, REQUEST_US),
        *_histogram("ovms_request_time_us", f'interface="REST",{model}', rest, REST_US),
        "# HELP ovms_inference_time_us Inference execution time in the OpenVINO backend.",
        "# TYPE ovms_inference_time_us histogram",
        *_histogram("ovms_inference_time_us", model, predict, INFERENCE_US),
    ]
    return "\n".join(lines) + "\n"


def tfserving_text(t: float) -> str:
    # request_count has no API label: it counts the REST calls too (a window of the lab's
    # carries only the pools' gRPC calls). The container has no periodic check: the
    # readiness wait's status calls (API="") came before the window and stay constant.
    predict, failed = int(PREDICT_PER_S * t), int(FAILED_PER_S * t)
    rest = int(REST_PER_S * t)
    model = 'model_name="tiny"'
    lines = [
        "# TYPE :tensorflow:serving:request_count counter",
        f':tensorflow:serving:request_count{{{model},status="OK"}} {predict + rest + 3}',
        f':tensorflow:serving:request_count{{{model},status="INVALID_ARGUMENT"}} {failed}',
        "# TYPE :tensorflow:serving:request_latency histogram",
        *_histogram(
            ":tensorflow:serving:request_latency",
            'model_name="tiny",API="Predict",entrypoint="GRPC"',
            predict,
            REQUEST_US,
        ),
        *_histogram(
            ":tensorflow:serving:request_latency",
            'model_name="tiny",API="predict",entrypoint="REST"',
            rest,
            REST_US,
        ),
        *_histogram(
            ":tensorflow:serving:request_latency",
            'model_name="tiny",API="",entrypoint="REST"',
            3,
            STATUS_US,
        ),
        "# TYPE :tensorflow:serving:runtime_latency histogram",
        *_histogram(
            ":tensorflow:serving:runtime_latency",
            'model_name="tiny",API="Predict",runtime="TF1"',
            predict + rest,
            INFERENCE_US,
        ),
    ]
    return "\n".join(lines) + "\n"


def process_text(t: float) -> str:
    cpu, memory = "namedprocess_namegroup_cpu_seconds_total", "namedprocess_namegroup_memory_bytes"
    pool = 'groupname="servelab-load"'
    lines = [
        "# TYPE namedprocess_namegroup_cpu_seconds_total counter",
        f'{cpu}{{{pool},mode="system"}} {POOL_SYSTEM_CORES * t}',
        f'{cpu}{{{pool},mode="user"}} {POOL_USER_CORES * t}',
        'namedprocess_namegroup_cpu_seconds_total{groupname="ovms",mode="user"} 0',
        "# TYPE namedprocess_namegroup_memory_bytes gauge",
        # the resident size moves a little from scrape to scrape; the peak is the highest
        f'{memory}{{{pool},memtype="resident"}} {POOL_RSS - (1000 if int(t) % 2 else 0)}',
        'namedprocess_namegroup_memory_bytes{groupname="servelab-load",memtype="virtual"} 9e+09',
        'namedprocess_namegroup_memory_bytes{groupname="ovms",memtype="resident"} 0',
        "# TYPE namedprocess_namegroup_num_procs gauge",
        'namedprocess_namegroup_num_procs{groupname="servelab-load"} 3',
        'namedprocess_namegroup_num_procs{groupname="ovms"} 0',
    ]
    return "\n".join(lines) + "\n"


PAGES: dict[str, Callable[[float], str]] = {
    "/ovms": ovms_text,
    "/tfs": tfserving_text,
    "/process": process_text,
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusAPI]:
    if shutil.which(PROMETHEUS) is None:
        missing(f"{PROMETHEUS} is not installed (`make test` installs Debian's prometheus)")
    root = tmp_path_factory.mktemp("prometheus")
    prometheus_port, page_port = free_ports(2)
    started = time.time()

    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            page = PAGES.get(self.path)
            body = page(time.time() - started).encode() if page else b""
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    pages = http.server.ThreadingHTTPServer(("127.0.0.1", page_port), Pages)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    target = f"127.0.0.1:{page_port}"
    config = root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 800ms}\n"
        "scrape_configs:\n"
        "  - job_name: model_server\n"
        "    static_configs:\n"
        f"      - {{targets: ['{target}'], labels: {{kind: ovms, __metrics_path__: /ovms}}}}\n"
        f"      - {{targets: ['{target}'], labels: {{kind: tfserving, __metrics_path__: /tfs}}}}\n"
        "  - job_name: process\n"
        "    metrics_path: /process\n"
        "    static_configs:\n"
        # one machine: both platforms' targets are the one exporter
        f"      - {{targets: ['{target}'], labels: {{platform: server, host: server}}}}\n"
        f"      - {{targets: ['{target}'], labels: {{platform: client, host: client}}}}\n"
    )
    log = root / "prometheus.log"
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    url = f"http://127.0.0.1:{prometheus_port}"
    try:
        _await_ready(url, process, log)
        yield PrometheusAPI(url)
    finally:
        process.terminate()
        process.wait(timeout=20)
        pages.shutdown()


def _await_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"prometheus not ready after 30 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def window(prometheus: PrometheusAPI) -> Window:
    """A 5-s window of the pages' recent past, with a scrape of each job after it."""
    assert prometheus.wait_for_scrapes("model_server", 0.0, timeout_s=30)
    time.sleep(8)
    now = prometheus.scalar("time()")
    window = Window(now - 6.5, now - 1.5)
    for job in ("model_server", "process"):
        assert prometheus.wait_for_scrapes(job, window.end_epoch + 1.2, timeout_s=15)
    return window


def _about(rate: float, window: Window) -> tuple[float, float]:
    # counters are whole numbers interpolated at the window's edges
    expected = rate * window.duration_s
    return expected, 0.05 * expected + 2


@pytest.mark.parametrize("kind", ["ovms", "tfserving"])
def test_the_predict_calls_and_their_times_are_read_apart_from_other_calls(
    prometheus, window, kind
):
    seen = server_metrics(prometheus, kind, "tiny", window)
    assert seen is not None
    # OVMS counts by method and interface; TF Serving's counter has no API label
    counted = PREDICT_PER_S + (REST_PER_S if kind == "tfserving" else 0)
    served, served_slack = _about(counted, window)
    assert abs(seen.requests - served) <= served_slack, (seen.requests, served)
    assert seen.requests_per_s == pytest.approx(counted, rel=0.1)
    expected, slack = _about(PREDICT_PER_S, window)
    errors, error_slack = _about(FAILED_PER_S, window)
    assert abs(seen.errors - errors) <= error_slack, (seen.errors, errors)
    # gRPC Predict's own request time: the REST and status calls' are left out
    assert seen.request_ms_mean == pytest.approx(REQUEST_US / 1e3)
    assert seen.inference_ms_mean == pytest.approx(INFERENCE_US / 1e3)
    assert seen.serving_overhead_ms == pytest.approx((REQUEST_US - INFERENCE_US) / 1e3)
    assert abs(seen.request_samples - expected) <= slack
    # no process exporter figures given: the server program's CPU is unknown, not guessed
    assert seen.process_cpu is None


def test_each_programs_cpu_and_peak_memory_come_once_from_a_shared_exporter(prometheus, window):
    (pool,) = program_use(prometheus, window)  # ovms had no process: left out
    assert pool.program == "servelab-load"
    assert pool.platforms == ["client", "server"]
    # user and system time added up, counted once though two targets scrape it
    assert pool.cpu_cores == pytest.approx(POOL_USER_CORES + POOL_SYSTEM_CORES, rel=0.05)
    assert pool.peak_rss_bytes == POOL_RSS
    assert pool.processes == 3
    assert 4 <= pool.samples <= 6, "a scrape a second over a 5-s window"
