"""refserver as a process: several models, REST status and metrics, SIGTERM, load failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import to_ndarray, to_tensor_proto
from tests.support.refserver import RefServerProcess, free_port, running_refserver


@pytest.fixture(scope="module")
def golden(tiny_repo: Path) -> dict[str, np.ndarray]:
    with np.load(tiny_repo / "golden" / "tiny.npz") as data:
        return {key: data[key] for key in data.files}


def _request(array: np.ndarray, model: str = "tiny", **spec) -> pb.PredictRequest:
    request = pb.PredictRequest(model_spec=api.model_spec(model, **spec))
    request.inputs["input"].CopyFrom(to_tensor_proto(array))
    return request


def _assert_golden(response: pb.PredictResponse, golden: dict, rows: np.ndarray) -> None:
    np.testing.assert_allclose(
        to_ndarray(response.outputs["probabilities"]),
        golden["outputs"][rows],
        atol=float(golden["atol"]),
        rtol=float(golden["rtol"]),
    )


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def _samples(server: RefServerProcess) -> dict[tuple[str, tuple], float]:
    status, _, text = _get(f"{server.rest_url}/metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_the_requests_made(tiny_repo: Path, golden) -> None:
    with (
        running_refserver("openvino", tiny_repo) as server,
        grpc.insecure_channel(server.target, options=api.CHANNEL_OPTIONS) as channel,
    ):
        stub = api.PredictionServiceStub(channel)
        for batch in (1, 2, 3, 4, 5):
            stub.Predict(_request(golden["inputs"][np.arange(batch) % 8]), timeout=30)
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                stub.Predict(_request(np.zeros((1, 8, 8, 3), np.float32)), timeout=30)
        with pytest.raises(grpc.RpcError):
            stub.Predict(_request(golden["inputs"][:1], version=9), timeout=30)
        with pytest.raises(grpc.RpcError):
            stub.Predict(_request(golden["inputs"][:1], model="other"), timeout=30)
        samples = _samples(server)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    ok = {"model": "tiny", "version": "1", "method": "Predict"}
    assert value("refserver_requests_success_total", **ok) == 5
    fail = {"model": "tiny", "method": "Predict"}
    assert value("refserver_requests_fail_total", **fail, version="1", code="INVALID_ARGUMENT") == 2
    assert value("refserver_requests_fail_total", **fail, version="9", code="NOT_FOUND") == 1
    assert (
        value(
            "refserver_requests_fail_total",
            model="other",
            method="Predict",
            version="",
            code="NOT_FOUND",
        )
        == 1
    )
    for histogram in ("refserver_request_time_seconds", "refserver_inference_time_seconds"):
        assert value(f"{histogram}_count", model="tiny") == 5
        assert value(f"{histogram}_bucket", model="tiny", le="+Inf") == 5
        assert value(f"{histogram}_sum", model="tiny") > 0
    # The runtime's share can't exceed the whole handler's time.
    assert value("refserver_inference_time_seconds_sum", model="tiny") <= value(
        "refserver_request_time_seconds_sum", model="tiny"
    )


def test_rest_status_route_speaks_tf_serving_json(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        status, content_type, body = _get(f"{server.rest_url}/v1/models/tiny")
        assert (status, content_type) == (200, "application/json")
        assert json.loads(body) == {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
        status, _, body = _get(f"{server.rest_url}/v1/models/tiny/versions/1")
        assert status == 200 and json.loads(body)["model_version_status"][0]["version"] == "1"
        status, content_type, body = _get(f"{server.rest_url}/v1/models/resnet")
        assert (status, content_type) == (404, "application/json")
        assert json.loads(body) == {"error": "model 'resnet' not found; this server serves 'tiny'"}
        status, _, body = _get(f"{server.rest_url}/v1/models/tiny/versions/2")
        assert status == 404
        assert "version 2 not found; serving version 1" in json.loads(body)["error"]


def test_config_file_serves_several_models(tiny_repo: Path, tmp_path: Path, golden) -> None:
    config_file = tmp_path / "models.json"
    config_file.write_text(
        json.dumps(
            {
                "model_config_list": [
                    {"config": {"name": "tiny", "base_path": str(tiny_repo / "ov" / "tiny")}},
                    {
                        "config": {
                            "name": "tiny_latency",
                            "base_path": str(tiny_repo / "ov" / "tiny"),
                            "nireq": 1,
                            "plugin_config": {"PERFORMANCE_HINT": "LATENCY"},
                        }
                    },
                ]
            }
        )
    )
    with (
        running_refserver(
            "openvino", None, config_path=config_file, wait_for=["tiny", "tiny_latency"]
        ) as server,
        grpc.insecure_channel(server.target, options=api.CHANNEL_OPTIONS) as channel,
    ):
        stub = api.PredictionServiceStub(channel)
        rows = np.arange(3)
        for name in ("tiny", "tiny_latency"):
            response = stub.Predict(_request(golden["inputs"][rows], model=name), timeout=30)
            assert response.model_spec.name == name
            _assert_golden(response, golden, rows)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(_request(golden["inputs"][rows], model="resnet"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "serves 'tiny', 'tiny_latency'" in caught.value.details()
        log = server.log()
    assert "hint=LATENCY nireq=1" in log
    assert "hint=THROUGHPUT" in log


def test_sigterm_drains_an_inflight_request(tiny_repo: Path, golden) -> None:
    """A big batch is inside Predict when SIGTERM comes: it still completes, exit code 0."""
    rows = np.arange(8192) % len(golden["inputs"])  # ~100 MB, about a second of inference
    server_cm = running_refserver("openvino", tiny_repo, log_level="DEBUG")
    with server_cm as server:
        channel = grpc.insecure_channel(server.target, options=api.CHANNEL_OPTIONS)
        stub = api.PredictionServiceStub(channel)
        future = stub.Predict.future(_request(golden["inputs"][rows]), timeout=120)
        deadline = time.monotonic() + 60
        while "Predict tiny version 1: inferring" not in server.log():
            assert time.monotonic() < deadline, server.log()
            assert not future.done(), "the request finished before the server saw it"
            time.sleep(0.005)
        server.process.send_signal(15)
        response = future.result()
        assert server.process.wait(timeout=60) == 0
        channel.close()
        log = server.log()
    _assert_golden(response, golden, rows)
    assert "draining in-flight" in log
    assert log.rstrip().endswith("refserver: stopped")


def test_openvino_server_never_imports_tensorflow(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "_pywrap_tensorflow" not in maps
    assert "libtensorflow_framework" not in maps


def test_a_model_that_fails_to_load_ends_the_server_with_2(tmp_path: Path) -> None:
    version = tmp_path / "broken" / "1"
    version.mkdir(parents=True)
    (version / "model.xml").write_text("<net name='broken'>not an IR</net>")
    port, rest_port = free_port(), free_port()
    result = subprocess.run(
        [
            sys.executable, "-m", "servelab.refserver", "--runtime", "openvino",
            "--model_name", "broken", "--model_path", str(tmp_path / "broken"),
            "--port", str(port), "--rest_port", str(rest_port),
        ],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"model broken version 1 failed to load from {version}" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_bad_flag(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        result = subprocess.run(
            [
                sys.executable, "-m", "servelab.refserver", "--runtime", "openvino",
                "--model_name", "tiny", "--model_path", str(tiny_repo / "ov" / "tiny"),
                "--port", str(server.grpc_port), "--rest_port", str(free_port()),
            ],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"servelab-refserver: error: --port {server.grpc_port}: "
        f"cannot bind 127.0.0.1:{server.grpc_port} (Address already in use)"
    )


def test_the_start_line_names_the_precision_plugin_config_asks_for(tiny_repo: Path, golden):
    # bf16 or f32 changes throughput; the server must say which one it runs.
    config = json.dumps({"INFERENCE_PRECISION_HINT": "f32"})
    with running_refserver("openvino", tiny_repo, plugin_config=config) as server:
        with grpc.insecure_channel(server.target, options=api.CHANNEL_OPTIONS) as channel:
            response = api.PredictionServiceStub(channel).Predict(
                _request(golden["inputs"][:2]), timeout=30
            )
        _assert_golden(response, golden, np.arange(2))
        assert "precision=f32" in server.log()
