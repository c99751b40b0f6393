"""The scrape coverage query against a real Prometheus (Debian's package) on loopback.

Prometheus scrapes itself every second as the `haproxy` job and a port nothing
listens on as the `node` job: the first covers a recent window, the second is
scraped (up is 0) but covers none of it, and a job without targets has no entry.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab.controller.prometheus import PrometheusAPI, Window, scrape_coverage
from servelab.controller.validity import coverage_reasons
from tests.support.refserver import free_ports
from tests.support.required import missing

PROMETHEUS = "/usr/bin/prometheus"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusAPI]:
    if shutil.which(PROMETHEUS) is None:
        missing(f"{PROMETHEUS} is not installed (`make test` installs Debian's prometheus)")
    root = tmp_path_factory.mktemp("prometheus")
    port, dead = free_ports(2)
    config = root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 800ms}\n"
        "scrape_configs:\n"
        f"  - {{job_name: haproxy, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
        "  - job_name: node\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{dead}'], labels: {{platform: client}}}}]\n"
    )
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(root / "prometheus.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _await_ready(url, process, root / "prometheus.log")
        yield PrometheusAPI(url)
    finally:
        process.terminate()
        process.wait(timeout=20)


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


def _recent_window(api: PrometheusAPI, seconds: float) -> Window:
    """A window of Prometheus' own recent past, with a scrape of each job after it."""
    # the scrapes begin a few seconds after Prometheus says it is ready
    assert api.wait_for_scrapes("haproxy", 0.0, timeout_s=30)
    time.sleep(seconds + 3)
    now = api.scalar("time()")
    window = Window(now - seconds - 1.5, now - 1.5)
    for job in ("haproxy", "node"):
        assert api.wait_for_scrapes(job, window.end_epoch + 1.2, timeout_s=15)
    return window


def test_a_target_scraped_every_second_covers_the_window(prometheus):
    window = _recent_window(prometheus, 4.0)
    (covered,) = scrape_coverage(prometheus, "haproxy", {}, window)
    assert covered.window_s == pytest.approx(4.0)
    # Prometheus may miss a tick on a busy machine; one missed scrape still covers
    assert covered.fraction == pytest.approx(1.0)
    assert coverage_reasons([covered], 0.9) == []


def test_a_target_that_does_not_answer_covers_none_of_it(prometheus):
    window = _recent_window(prometheus, 4.0)
    (covered,) = scrape_coverage(prometheus, "node", {}, window)
    assert covered.target == "client platform" and covered.covered_s == 0.0
    assert coverage_reasons([covered], 0.9) == [
        "Prometheus' node samples cover 0.0 s of the 4.0-s window (0%), under 90%"
    ]
    assert scrape_coverage(prometheus, "model_server", {"kind": "ref-openvino"}, window) == []
