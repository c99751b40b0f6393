"""The default engine through the lab's HAProxy (h2 on both sides), as the lab runs it.

HAProxy is provisioned by the load_balancer role (the helpers of its own test), here
with at most 2 concurrent streams per connection so that a pool of 4 clients on one
connection has to honor SETTINGS_MAX_CONCURRENT_STREAMS.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servelab.clients import h2
from tests.support.engine import TINY_SAMPLE_BYTES, running_engine, wait_for, worker_config
from tests.support.haproxy import (
    BIN,
    LOOPBACK,
    backend_responses,
    frontend_requests,
    play,
    role_variables,
    stop_haproxy,
)
from tests.support.refserver import RefServerProcess, running_refserver

MAX_STREAMS = 2


@pytest.fixture(scope="module")
def refserver(tiny_repo: Path) -> Iterator[RefServerProcess]:
    with running_refserver("openvino", tiny_repo) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(
    refserver: RefServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict, int]]:
    """HAProxy from the role in front of the refserver: its variables and the h2 port."""
    directory = tmp_path_factory.mktemp("h2_proxy")
    variables = role_variables(directory / "state", refserver, client_concurrency=MAX_STREAMS)
    variables["load_balancer_h2_max_concurrent_streams"] = MAX_STREAMS
    try:
        result = play(directory, variables)
        assert result.returncode == 0, result.output[-4000:]
        yield variables, variables["load_balancer_frontends"][0]["port"]
    finally:
        stop_haproxy(directory / "state")


def load_through(port: int, repo: Path, out: Path, *extra: str) -> dict:
    pool = subprocess.run(
        [str(BIN / "servelab-load"), "--target", f"{LOOPBACK}:{port}", "--model", "tiny",
         "--model-repo", str(repo), "--processes", "1", "--warmup", "0.3", "--duration", "1.5",
         "--cooldown", "0", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert pool.returncode == 0, pool.stderr[-3000:]
    return json.loads(out.read_text())["requests"]


def test_more_clients_than_streams_share_one_connection_through_haproxy(
    proxy: tuple[dict, int], tiny_repo: Path, tmp_path: Path
) -> None:
    variables, port = proxy
    before = frontend_requests(variables)["ref-openvino"]
    answered_before = backend_responses(variables, "ref-openvino")
    requests = load_through(port, tiny_repo, tmp_path / "s.json", "--concurrency", "4")
    after = frontend_requests(variables)["ref-openvino"]

    assert requests["errors_total"] == {} and requests["verification_failures_total"] == 0
    assert requests["succeeded_total"] == requests["sent_total"] > 0
    # HAProxy saw each request once (plus the pool's GetModelMetadata), none refused.
    assert after - before == requests["sent_total"] + 1
    answered = backend_responses(variables, "ref-openvino")
    assert answered["2xx"] - answered_before["2xx"] == requests["sent_total"] + 1
    assert answered["5xx"] == answered_before["5xx"]


def test_a_large_request_through_haproxy_verifies(
    proxy: tuple[dict, int], tiny_repo: Path, tmp_path: Path
) -> None:
    batch = 1400  # 17.2 MB per request: beyond HAProxy's 16 MiB window, its 256 KiB buffers
    requests = load_through(
        proxy[1], tiny_repo, tmp_path / "s.json", "--concurrency", "2", "--batch", str(batch)
    )
    assert batch * TINY_SAMPLE_BYTES > h2.MAX_FRAME_LIMIT + 1  # past one frame and 16 MiB
    assert requests["errors_total"] == {} and requests["verification_failures_total"] == 0
    assert requests["verified"] > 0


def test_haproxy_answering_for_a_stopped_server_counts_unavailable(
    proxy: tuple[dict, int], refserver: RefServerProcess, tiny_repo: Path
) -> None:
    # The second frontend's server is not running: HAProxy answers 503 itself, a
    # plain HTTP response without grpc-status.
    variables, _ = proxy
    idle = f"{LOOPBACK}:{variables['load_balancer_frontends'][1]['port']}"
    config = worker_config(refserver.target, tiny_repo, target=idle)
    with running_engine(config) as (_, recorder):
        assert wait_for(lambda: recorder.all_phases.error_count >= 2, 10)
    assert recorder.all_phases.completed == 0
    assert set(recorder.all_phases.errors) == {"UNAVAILABLE"}
    assert recorder.first_error == "UNAVAILABLE: HTTP status 503"
