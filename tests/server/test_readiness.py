"""`servelab wait-available` against a real refserver, a dead one and nothing at all."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servelab.server.readiness import NotAvailable, model_state, wait_available
from tests.support.refserver import free_port, running_refserver


def test_a_served_model_is_available(tiny_repo: Path):
    with running_refserver("openvino", tiny_repo) as server:
        assert model_state(server.rest_url, "tiny") == "AVAILABLE"
        wait_available(server.rest_url, ["tiny"], timeout_s=5)
        assert model_state(server.rest_url, "nothing") == "HTTP 404"
        with pytest.raises(NotAvailable, match="model nothing is not AVAILABLE"):
            wait_available(server.rest_url, ["nothing"], timeout_s=1)


def test_a_dead_server_is_reported_at_once_not_after_the_timeout(tmp_path: Path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pidfile = tmp_path / "server.pid"
    pidfile.write_text(f"{dead.pid}\n")
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        sys.executable,
        "-m",
        "servelab.controller",
        "wait-available",
        "--url",
        url,
        "--models",
        "tiny",
        "--pidfile",
        str(pidfile),
        "--timeout",
        "120",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "is not running" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_container_that_does_not_run_is_reported_at_once():
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed")
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(NotAvailable, match="container servelab-no-such-container is not running"):
        wait_available(url, ["tiny"], timeout_s=60, container="servelab-no-such-container")
    assert time.monotonic() - started < 30, "gave up at once, not after the timeout"
