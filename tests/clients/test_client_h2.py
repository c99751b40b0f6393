"""The default engine's own HTTP/2 transport against real refservers (tiny model).

The engine runs in this process where a test needs to reach into a run (kill the
server, stall it, cap the stream ids); otherwise through `servelab-load`.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import hpack
import pytest

from servelab.clients import h2
from servelab.clients.h2engine import H2Engine, TargetUnreachable, grpc_timeout, prepare_predict
from servelab.wire import api
from tests.support.engine import TINY_SAMPLE_BYTES, running_engine, wait_for, worker_config
from tests.support.load import SHORT, predict_successes, run_load
from tests.support.refserver import free_ports, running_refserver, start_refserver

# --- the request as it goes on the wire ---------------------------------------------------


def test_the_request_header_block_decodes_to_the_grpc_headers() -> None:
    request = prepare_predict("127.0.0.1:9001", b"\x01\x02", timeout_s=2.5)
    headers = hpack.Decoder().decode(request.header_block)
    assert headers == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", api.PREDICT),
        (":authority", "127.0.0.1:9001"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "2500m"),
        ("user-agent", "servelab-load (h2)"),
    ]
    assert request.body == b"\x00\x00\x00\x00\x02\x01\x02"  # uncompressed, 2 bytes


def test_long_header_values_use_multi_byte_lengths() -> None:
    value = "x" * 300  # a string length past the 7-bit prefix
    block = h2.encode_header_block([("x-long", value), (":path", "/" + "p" * 200)])
    assert hpack.Decoder().decode(block) == [("x-long", value), (":path", "/" + "p" * 200)]


@pytest.mark.parametrize(("seconds", "header"), [(30, "30000m"), (0.0004, "1m"), (1e6, "1000000S")])
def test_grpc_timeout_fits_eight_digits(seconds: float, header: str) -> None:
    assert grpc_timeout(seconds) == header


# --- against refserver --------------------------------------------------------------------


def test_a_large_request_round_trips_and_verifies(tiny_repo: Path) -> None:
    # 1400 samples: a 17.2 MB request (a batch-32 ResNet request is 19.3 MB), too
    # large for one HTTP/2 frame, sent in 16 KiB frames as grpcio's windows open;
    # two clients interleave their streams.
    batch = 1400
    with running_refserver("openvino", tiny_repo) as server:
        before = predict_successes(server.rest_url)
        rc, summary, stderr = run_load(
            server.target, tiny_repo, "--batch", str(batch), "--concurrency", "2",
            "--processes", "1", *SHORT,
        )  # fmt: skip
        after = predict_successes(server.rest_url)
    assert batch * TINY_SAMPLE_BYTES > h2.MAX_FRAME_LIMIT + 1  # past one frame and 16 MiB
    assert rc == 0, (stderr, summary and summary["problems"])
    requests = summary["requests"]
    assert requests["errors_total"] == {} and requests["verification_failures_total"] == 0
    assert 0 < requests["verified"] == requests["completed"]
    assert requests["sent_total"] == requests["succeeded_total"] == after - before
    assert summary["frames"] == requests["verified"] * batch


def test_a_server_error_status_is_counted_by_its_code(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        config = worker_config(server.target, tiny_repo, model="nosuch")
        with running_engine(config) as (_, recorder):
            assert wait_for(lambda: recorder.all_phases.error_count >= 4, 10)
    phases = recorder.all_phases
    assert phases.completed == 0
    assert set(phases.errors) == {"NOT_FOUND"}
    # grpc-message arrives percent-decoded, as the server wrote it.
    assert recorder.first_error.startswith("NOT_FOUND: model 'nosuch' not found; this server")


def test_a_stalled_server_gives_deadline_exceeded_and_the_connection_goes_on(
    tiny_repo: Path,
) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        config = worker_config(server.target, tiny_repo, timeout_s=0.3)
        with running_engine(config) as (engine, recorder):
            assert wait_for(lambda: recorder.all_phases.completed > 20, 10)
            server.process.send_signal(signal.SIGSTOP)
            try:
                assert wait_for(lambda: recorder.all_phases.error_count >= 4, 10)
            finally:
                server.process.send_signal(signal.SIGCONT)
            resumed_from = recorder.all_phases.completed
            assert wait_for(lambda: recorder.all_phases.completed > resumed_from + 20, 10)
    assert set(recorder.all_phases.errors) == {"DEADLINE_EXCEEDED"}
    assert engine.connections_opened == 1  # the streams were reset, not the connection


def test_a_killed_server_gives_unavailable_and_the_pool_reconnects(tiny_repo: Path) -> None:
    grpc_port, rest_port = free_ports(2)
    server = start_refserver("openvino", tiny_repo, port=grpc_port, rest_port=rest_port)
    try:
        config = worker_config(server.target, tiny_repo, clients=3)
        with running_engine(config) as (engine, recorder):
            assert wait_for(lambda: recorder.all_phases.completed > 20, 10)
            server.process.kill()
            server.process.wait()
            # Each client fails, pauses 50 ms, and fails again: the connection is refused.
            assert wait_for(lambda: recorder.all_phases.error_count >= 12, 10)
            failed_at = recorder.all_phases.completed
            server = start_refserver("openvino", tiny_repo, port=grpc_port, rest_port=rest_port)
            assert wait_for(lambda: recorder.all_phases.completed > failed_at + 20, 30)
    finally:
        server.stop()
    assert set(recorder.all_phases.errors) == {"UNAVAILABLE"}
    assert engine.connections_opened > 2  # the first, refused attempts, the one that worked
    assert "UNAVAILABLE" in recorder.first_error


def test_stream_ids_running_out_move_the_clients_to_a_new_connection(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        config = worker_config(server.target, tiny_repo, clients=3)
        before = predict_successes(server.rest_url)
        # 20 streams per connection (ids 1, 3, ... 39).
        with running_engine(config, max_stream_id=39) as (engine, recorder):
            assert wait_for(lambda: recorder.all_phases.completed > 100, 10)
        after = predict_successes(server.rest_url)
    phases = recorder.all_phases
    assert phases.errors == {} and phases.verification_failures == 0
    assert phases.completed == recorder.sent_total == after - before
    assert engine.connections_opened >= phases.completed // 20


def test_an_unreachable_target_fails_the_engine_at_once(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        config = worker_config(server.target, tiny_repo)
    # The server has stopped: nothing listens on its port now.
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match=r"cannot reach 127\.0\.0\.1:\d+: connect"):
        H2Engine(config)
    assert time.monotonic() - started < 2.0


def test_the_grpcio_engine_stays_selectable(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        before = predict_successes(server.rest_url)
        rc, summary, stderr = run_load(
            server.target, tiny_repo, "--api", "servelab-grpcio", "--concurrency", "2",
            "--processes", "1", *SHORT,
        )  # fmt: skip
        after = predict_successes(server.rest_url)
    assert rc == 0, stderr
    assert summary["api"] == "servelab-grpcio"
    requests = summary["requests"]
    assert requests["verified"] > 0 and requests["errors_total"] == {}
    assert requests["sent_total"] == requests["succeeded_total"] == after - before


def test_a_draining_server_lets_calls_in_flight_finish(tiny_repo: Path) -> None:
    # SIGTERM: refserver unloads its model (UNAVAILABLE), its gRPC server sends
    # GOAWAY, ends the calls it holds (some with CANCELLED) and closes; reconnects
    # are refused (UNAVAILABLE). No call is cut off mid-answer: that would be
    # INTERNAL or a verification failure.
    server = start_refserver("openvino", tiny_repo)
    try:
        config = worker_config(server.target, tiny_repo, clients=3)
        with running_engine(config) as (_, recorder):
            assert wait_for(lambda: recorder.all_phases.completed > 20, 10)
            server.process.send_signal(signal.SIGTERM)
            assert wait_for(lambda: recorder.all_phases.error_count >= 6, 30)
            assert server.process.wait(timeout=30) == 0
    finally:
        server.stop()
    phases = recorder.all_phases
    assert "UNAVAILABLE" in phases.errors
    assert set(phases.errors) <= {"UNAVAILABLE", "CANCELLED"}
    assert phases.verification_failures == 0 and phases.completed > 20
