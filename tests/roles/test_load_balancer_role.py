"""The load_balancer role: real HAProxy in front of a real refserver, on loopback.

The role runs through ansible-playbook (the venv's) from a playbook in tmp_path,
with the checkout's ansible.cfg. Every HAProxy a test starts is stopped by its
fixture's finalizer, also when the test fails.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import to_ndarray, to_tensor_proto
from tests.support.affinity import some_cpu, thread_cpus
from tests.support.haproxy import (
    BIN,
    LOOPBACK,
    ROLE,
    backend_responses,
    frontend_requests,
    lab_processes,
    play,
    role_variables,
    stop_haproxy,
)
from tests.support.refserver import RefServerProcess, free_ports, running_refserver
from tests.support.roles import PlayResult


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_each_frontend_is_a_described_dict() -> None:
    options = _load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    frontend = options["load_balancer_frontends"]
    assert frontend["elements"] == "dict"
    assert set(frontend["options"]) == {"name", "port", "server_address", "server_port"}
    assert all(o["required"] and "description" in o for o in frontend["options"].values())


# --- running the role ---------------------------------------------------------------------


def master_pid(state_dir: Path) -> int:
    return int((state_dir / "haproxy.pid").read_text())


def alive(pid: int) -> bool:
    """The process runs (a zombie does not: PID 1 here may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def predict_through(port: int, golden: np.lib.npyio.NpzFile) -> np.ndarray:
    """One Predict with the golden inputs through a frontend; the probabilities."""
    request = pb.PredictRequest(model_spec=api.model_spec("tiny"))
    request.inputs["input"].CopyFrom(to_tensor_proto(golden["inputs"]))
    with grpc.insecure_channel(f"{LOOPBACK}:{port}", options=api.CHANNEL_OPTIONS) as channel:
        response = api.PredictionServiceStub(channel).Predict(request, timeout=30)
    return to_ndarray(response.outputs["probabilities"])


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refserver(tiny_repo: Path) -> Iterator[RefServerProcess]:
    with running_refserver("openvino", tiny_repo) as server:
        yield server


@dataclass
class Balancer:
    directory: Path
    variables: dict
    first: PlayResult

    @property
    def state_dir(self) -> Path:
        return Path(self.variables["load_balancer_state_dir"])

    def port(self, kind: str) -> int:
        return next(
            f["port"] for f in self.variables["load_balancer_frontends"] if f["name"] == kind
        )


@pytest.fixture(scope="module")
def balancer(
    refserver: RefServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Balancer]:
    """HAProxy provisioned by the role in front of the refserver; stopped at the end."""
    directory = tmp_path_factory.mktemp("load_balancer")
    variables = role_variables(directory / "state", refserver, client_concurrency=2)
    variables["load_balancer_cpus"] = str(some_cpu())  # as the lab's CPU set would
    try:
        first = play(directory, variables)
        assert first.returncode == 0, first.output[-4000:]
        yield Balancer(directory, variables, first)
    finally:
        stop_haproxy(directory / "state")


# --- behaviour ----------------------------------------------------------------------------


def test_haproxy_counts_exactly_the_requests_the_pool_sent(
    balancer: Balancer, tiny_repo: Path, tmp_path: Path
) -> None:
    before = frontend_requests(balancer.variables)
    answered_before = backend_responses(balancer.variables, "ref-openvino")
    summary_path = tmp_path / "summary.json"
    pool = subprocess.run(
        [str(BIN / "servelab-load"), "--target", f"{LOOPBACK}:{balancer.port('ref-openvino')}",
         "--model", "tiny", "--model-repo", str(tiny_repo), "--concurrency", "2",
         "--processes", "1", "--warmup", "0", "--duration", "2", "--cooldown", "0",
         "--out", str(summary_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert pool.returncode == 0, pool.stderr[-3000:]
    requests = json.loads(summary_path.read_text())["requests"]
    after = frontend_requests(balancer.variables)

    # Every answer through the proxy was right.
    assert requests["succeeded_total"] == requests["sent_total"] > 0
    assert requests["errors_total"] == {}
    assert requests["verification_failures_total"] == 0
    # The pool sends one GetModelMetadata, then its Predicts, and waits for every
    # response before it exits: HAProxy has counted them all, no more, no fewer.
    proxied = after["ref-openvino"] - before.get("ref-openvino", 0)
    assert proxied == requests["sent_total"] + 1
    # Each kind has its own frontend; the idle one counted nothing.
    assert after["ref-tensorflow"] == before["ref-tensorflow"] == 0
    # ... and the server answered each (a gRPC status travels in trailers, inside a 200).
    answered = backend_responses(balancer.variables, "ref-openvino")
    assert answered["2xx"] - answered_before["2xx"] == proxied
    assert answered["5xx"] == answered_before["5xx"] == 0


def test_haproxy_and_every_thread_of_it_run_inside_its_cpus(balancer: Balancer) -> None:
    config = balancer.state_dir / "haproxy.cfg"
    pids = lab_processes(config)
    assert len(pids) >= 2, f"the master and its worker: {pids}"
    allowed = {tid: cpus for pid in pids for tid, cpus in thread_cpus(pid).items()}
    wanted = frozenset({int(balancer.variables["load_balancer_cpus"])})
    assert set(allowed.values()) == {wanted}, allowed


def test_a_second_run_changes_nothing(balancer: Balancer) -> None:
    assert balancer.first.changed > 0
    pid = master_pid(balancer.state_dir)

    second = play(balancer.directory, balancer.variables)

    assert second.returncode == 0, second.output[-4000:]
    assert second.changed == 0, second.output[-4000:]
    assert second.recap["failed"] == 0
    assert master_pid(balancer.state_dir) == pid and alive(pid)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        (
            {"load_balancer_client_concurrency": 2048},
            "load_balancer_client_concurrency 2048 reaches load_balancer_maxconn 1024",
        ),
        (
            {"load_balancer_frontends": [{"name": "ref-openvino", "server_address": LOOPBACK,
                                          "server_port": 9001}]},
            "missing required arguments: port found in load_balancer_frontends",
        ),
    ],
    ids=["concurrency-above-maxconn", "frontend-without-port"],
)  # fmt: skip
def test_a_wrong_variable_fails_before_anything_changes(
    refserver: RefServerProcess, tmp_path: Path, override: dict, named: str
) -> None:
    state_dir = tmp_path / "state"
    variables = role_variables(state_dir, refserver, client_concurrency=0) | override
    try:
        result = play(tmp_path, variables)
    finally:
        stop_haproxy(state_dir)

    assert result.returncode != 0
    assert named in " ".join(result.output.split()), result.output[-4000:]
    assert result.recap["changed"] == 0
    assert not state_dir.exists(), "nothing written"
    assert lab_processes(state_dir / "haproxy.cfg") == []


def test_a_changed_config_reloads_and_stopped_leaves_nothing_running(
    refserver: RefServerProcess, tiny_repo: Path, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    config = state_dir / "haproxy.cfg"
    variables = role_variables(state_dir, refserver, client_concurrency=2)
    golden = np.load(tiny_repo / "golden" / "tiny.npz")
    try:
        started = play(tmp_path, variables)
        assert started.returncode == 0, started.output[-4000:]
        pid = master_pid(state_dir)
        openvino = variables["load_balancer_frontends"][0]["port"]
        np.testing.assert_allclose(
            predict_through(openvino, golden), golden["outputs"],
            atol=float(golden["atol"]), rtol=float(golden["rtol"]),
        )  # fmt: skip
        assert frontend_requests(variables)["ref-openvino"] == 1

        # A new server kind: the config changes, HAProxy reloads, the master stays.
        (extra,) = free_ports(1)
        changed = variables | {
            "load_balancer_frontends": [
                *variables["load_balancer_frontends"],
                {"name": "ovms", "port": extra, "server_address": LOOPBACK,
                 "server_port": refserver.grpc_port},
            ]
        }  # fmt: skip
        reloaded = play(tmp_path, changed)
        assert reloaded.returncode == 0, reloaded.output[-4000:]
        assert "Reload HAProxy for its new config" in reloaded.output
        assert reloaded.changed == 2  # the config and the reload; no start
        assert master_pid(state_dir) == pid and alive(pid)
        assert "ovms" in config.read_text()
        np.testing.assert_allclose(
            predict_through(extra, golden), golden["outputs"],
            atol=float(golden["atol"]), rtol=float(golden["rtol"]),
        )  # fmt: skip
        # The documented cost of a reload: the new worker counts from zero.
        counted = frontend_requests(changed)
        del counted["exporter"]
        assert counted == {"ref-openvino": 0, "ref-tensorflow": 0, "ovms": 1}

        stopped = play(tmp_path, changed | {"load_balancer_state": "stopped"})
        assert stopped.returncode == 0, stopped.output[-4000:]
        assert stopped.changed == 1
        assert not alive(pid)
        assert not (state_dir / "haproxy.pid").exists()
        assert lab_processes(config) == [], "a worker of the lab's HAProxy is left"
        for port in (openvino, extra, variables["load_balancer_exporter_port"]):
            with pytest.raises(ConnectionRefusedError), socket.create_connection((LOOPBACK, port)):
                pass
    finally:
        stop_haproxy(state_dir)
