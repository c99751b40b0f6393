"""The prometheus role (with node_exporter): a Prometheus that scrapes the lab every second.

Real processes on loopback: Debian's prometheus-node-exporter and prometheus run as
lab processes (the node_exporter role, then the prometheus role) under a temporary
state directory on free ports, Prometheus scraping the node
exporter twice (as the server and as the client platform, as on the embedded
one-machine lab) and a real refserver's /metrics. What users rely on: the series
carry the job and labels given, refserver's request counter reaches Prometheus
exactly, samples come every second, a second run changes nothing, a required
target that is down fails the play naming it, a wrong variable fails before
anything starts, and `stopped` leaves no process behind.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import to_tensor_proto
from tests.support.refserver import RefServerProcess, free_port, running_refserver
from tests.support.roles import PlayResult, apply_role

PROJECT = Path(__file__).resolve().parents[2]
ROLES = {name: PROJECT / "roles" / name for name in ("node_exporter", "prometheus")}
BIN = Path(sys.executable).parent
# The daemons' process names, as start-stop-daemon matches them (15 characters kept).
DAEMONS = {"node_exporter": "prometheus-node", "prometheus": "prometheus"}
PREDICTS = 7
# TF Serving's metrics path, the job's own; the refserver target overrides it.
TFSERVING_METRICS_PATH = "/monitoring/prometheus/metrics"


def _play(directory: Path, variables: dict[str, Any], name: str = "play.yml") -> PlayResult:
    """Apply the node_exporter role, then the prometheus role, as the lab's client.yml
    does; the outcome of the first play that failed, else both plays' counts summed."""
    results = []
    for role, path in ROLES.items():
        mine = {k: v for k, v in variables.items() if not k.startswith(_OTHER_PREFIX[role])}
        result = apply_role(path, mine, directory / f"{role}-{name}")
        if result.returncode != 0:
            return result
        results.append(result)
    recap = {k: sum(r.recap.get(k, 0) for r in results) for k in results[0].recap}
    return PlayResult(0, "\n".join(r.output for r in results), recap)


# Each play gets the lab-wide settings and its own role's variables.
_OTHER_PREFIX = {"node_exporter": "prometheus_", "prometheus": "node_exporter_"}


def _variables(state: Path, node_exporter_port: int, prometheus_port: int, **more: Any) -> dict:
    return {
        "servelab_state_dir": str(state),
        "servelab_bind_address": "127.0.0.1",
        "servelab_node_exporter_port": node_exporter_port,
        "servelab_prometheus_port": prometheus_port,
        **more,
    }


def _pid(pidfile: Path) -> int | None:
    return int(pidfile.read_text()) if pidfile.exists() else None


def _stop_daemons(monitoring_dir: Path) -> None:
    """Stop what the role may have left running, whatever state the test ended in."""
    for daemon, process_name in DAEMONS.items():
        pidfile = monitoring_dir / f"{daemon}.pid"
        if pidfile.exists():
            stop = ["start-stop-daemon", "--stop", "--pidfile", str(pidfile), "--name"]
            stop += [process_name, "--retry", "TERM/20/KILL/5", "--remove-pidfile"]
            subprocess.run(stop, capture_output=True, check=False)


def _processes_mentioning(*needles: str) -> list[str]:
    """Command lines of running processes that contain any of `needles`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if any(needle in args for needle in needles):
            found.append(f"{entry.name}: {args}")
    return found


@dataclass
class Lab:
    directory: Path
    state: Path
    node_exporter_port: int
    prometheus_port: int
    refserver: RefServerProcess
    variables: dict[str, Any]
    first: PlayResult
    pids: dict[str, int | None]

    @property
    def monitoring_dir(self) -> Path:
        return self.state / "monitoring"

    def api(self, path: str, **params: str) -> Any:
        """GET Prometheus' HTTP API; the `data` of its answer."""
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]


def _until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s (last: {value!r})")
        time.sleep(0.2)  # the next poll; Prometheus scrapes every second


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, tiny_repo: Path) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("monitoring")
    state = directory / "state"
    node_exporter_port, prometheus_port = free_port(), free_port()
    node_exporter = f"127.0.0.1:{node_exporter_port}"
    with running_refserver("openvino", tiny_repo) as refserver:
        rest = refserver.rest_url.removeprefix("http://")
        variables = _variables(
            state,
            node_exporter_port,
            prometheus_port,
            prometheus_scrape_jobs=[
                {
                    "job": "node",
                    "targets": [
                        {"address": node_exporter, "labels": {"platform": p, "host": p}}
                        for p in ("server", "client")
                    ],
                },
                {
                    "job": "model_server",
                    "required": False,
                    "metrics_path": TFSERVING_METRICS_PATH,
                    "targets": [
                        {
                            "address": rest,
                            "labels": {"kind": "ref-openvino"},
                            "metrics_path": "/metrics",
                        },
                        # not running: a job that is not required does not hold the play up
                        {"address": f"127.0.0.1:{free_port()}", "labels": {"kind": "tfserving"}},
                    ],
                },
            ],
        )
        try:
            first = _play(directory, variables)
            pids = {d: _pid(state / "monitoring" / f"{d}.pid") for d in DAEMONS}
            yield Lab(
                directory=directory,
                state=state,
                node_exporter_port=node_exporter_port,
                prometheus_port=prometheus_port,
                refserver=refserver,
                variables=variables,
                first=first,
                pids=pids,
            )
        finally:
            _stop_daemons(state / "monitoring")


def test_first_run_starts_both_daemons(lab: Lab) -> None:
    assert lab.first.returncode == 0, lab.first.output[-5000:]
    assert lab.first.recap["changed"] > 0
    assert all(lab.pids.values()), lab.pids
    for daemon in DAEMONS:
        assert (lab.monitoring_dir / f"{daemon}.log").exists(), daemon
    assert (lab.monitoring_dir / "prometheus-data").is_dir()


def test_prometheus_scrapes_each_target_with_its_labels_every_second(lab: Lab) -> None:
    def scraped() -> dict[str, list[dict]] | None:
        """Active targets by job, once every target has had a scrape."""
        by_job: dict[str, list[dict]] = {}
        for target in lab.api("targets", state="active")["activeTargets"]:
            by_job.setdefault(target["labels"]["job"], []).append(target)
        targets = [t for job in by_job.values() for t in job]
        return by_job if all(t["health"] != "unknown" for t in targets) else None

    by_job = _until(scraped, 10, "a scrape of every target")

    # the same node exporter twice, kept apart by its platform label
    node = {t["labels"]["platform"]: t for t in by_job["node"]}
    assert set(node) == {"server", "client"}
    for platform, target in node.items():
        assert target["health"] == "up", target
        assert target["labels"]["host"] == platform
        assert target["labels"]["instance"] == f"127.0.0.1:{lab.node_exporter_port}"
        assert target["scrapeInterval"] == "1s"

    # a target's own metrics_path wins over the job's
    servers = {t["labels"]["kind"]: t for t in by_job["model_server"]}
    assert servers["ref-openvino"]["scrapeUrl"] == f"{lab.refserver.rest_url}/metrics"
    assert servers["ref-openvino"]["health"] == "up", servers["ref-openvino"]
    assert servers["tfserving"]["scrapeUrl"].endswith(TFSERVING_METRICS_PATH)
    assert servers["tfserving"]["health"] == "down"

    # the samples themselves are a second apart
    def samples() -> list[float] | None:
        series = lab.query('up{job="node",platform="server"}[6s]')
        values = series[0]["values"] if series else []
        return [float(t) for t, _ in values] if len(values) >= 5 else None

    stamps = _until(samples, 20, "five samples of the node exporter")
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert statistics.median(gaps) == pytest.approx(1.0, abs=0.05), gaps
    assert max(gaps) < 2.5, gaps


def _predict(target: str, inputs: np.ndarray, count: int) -> None:
    request = pb.PredictRequest(model_spec=api.model_spec("tiny"))
    request.inputs["input"].CopyFrom(to_tensor_proto(inputs))
    with grpc.insecure_channel(target, options=api.CHANNEL_OPTIONS) as channel:
        stub = api.PredictionServiceStub(channel)
        for _ in range(count):
            response = stub.Predict(request, timeout=30)
            assert "probabilities" in response.outputs


def test_prometheus_holds_the_servers_request_count_and_both_platforms_cpu(
    lab: Lab, tiny_repo: Path
) -> None:
    with np.load(tiny_repo / "golden" / "tiny.npz") as golden:
        inputs = golden["inputs"][:1]
    _predict(lab.refserver.target, inputs, PREDICTS)

    # refserver's own counter, scraped after the last request, labelled as the job said
    promql = (
        'sum(refserver_requests_success_total{job="model_server",kind="ref-openvino",'
        'model="tiny",method="Predict"})'
    )

    def counted() -> float | None:
        result = lab.query(promql)
        value = float(result[0]["value"][1]) if result else None
        return value if value == PREDICTS else None

    assert _until(counted, 15, f"{PREDICTS} Predict requests in Prometheus") == PREDICTS

    # each platform's CPU: over all modes, as many CPU-seconds per second as it has CPUs
    def cpu() -> dict[str, float] | None:
        rates = lab.query('sum by (platform) (rate(node_cpu_seconds_total{job="node"}[5s]))')
        found = {r["metric"]["platform"]: float(r["value"][1]) for r in rates}
        return found if set(found) == {"server", "client"} else None

    rates = _until(cpu, 15, "the CPU rate of both platforms")
    cpus = lab.query('count by (platform) (node_cpu_seconds_total{job="node",mode="idle"})')
    assert {c["metric"]["platform"] for c in cpus} == {"server", "client"}
    for count in cpus:
        assert rates[count["metric"]["platform"]] == pytest.approx(
            float(count["value"][1]), rel=0.25
        ), rates
    busy = lab.query('sum by (platform) (rate(node_cpu_seconds_total{mode!="idle"}[5s]))')
    assert {b["metric"]["platform"] for b in busy} == {"server", "client"}
    assert all(float(b["value"][1]) > 0 for b in busy), busy

    # the embedded lab's requests cross the loopback device, which Debian's build leaves out
    loopback = lab.query('node_network_receive_bytes_total{job="node",device="lo"}')
    assert {s["metric"]["platform"] for s in loopback} == {"server", "client"}


def test_a_second_run_changes_nothing(lab: Lab) -> None:
    second = _play(lab.directory, lab.variables)
    assert second.returncode == 0, second.output[-5000:]
    assert second.recap["changed"] == 0, second.output[-5000:]
    assert {d: _pid(lab.monitoring_dir / f"{d}.pid") for d in DAEMONS} == lab.pids


def test_a_required_target_that_is_down_fails_the_play_naming_it(lab: Lab) -> None:
    down = f"127.0.0.1:{free_port()}"
    jobs = [
        *lab.variables["prometheus_scrape_jobs"],
        {"job": "haproxy", "targets": [{"address": down, "labels": {"platform": "client"}}]},
    ]
    variables = {**lab.variables, "prometheus_scrape_jobs": jobs, "prometheus_target_timeout_s": 10}
    started = time.monotonic()
    play = _play(lab.directory, variables, "down.yml")
    elapsed = time.monotonic() - started

    assert play.returncode != 0 and play.recap["failed"] == 1, play.output[-5000:]
    message = re.search(r"scrape job haproxy is required.*", play.output)
    assert message, play.output[-5000:]
    assert f"Target {down} " in message.group(0)
    assert 'labels {"platform": "client"}' in message.group(0)
    assert "connection refused" in message.group(0)  # Prometheus' own lastError
    assert "scrape job node" not in play.output, play.output[-5000:]
    assert "scrape job model_server" not in play.output, play.output[-5000:]
    # the new job reached Prometheus by a reload, not a restart
    assert _pid(lab.monitoring_dir / "prometheus.pid") == lab.pids["prometheus"]
    assert elapsed < 60


@pytest.mark.parametrize(
    ("wrong", "named"),
    [
        ({"prometheus_retention": "15 days"}, "prometheus_retention"),
        ({"prometheus_state": "running"}, "prometheus_state"),
        ({"prometheus_scrape_jobs": [{"job": "node", "targets": []}]}, "prometheus_scrape_jobs"),
        ({"prometheus_scrape_jobs": [{"job": "node"}]}, "prometheus_scrape_jobs"),
        # preflight fails before anything starts
        ({"prometheus_port": 70000}, "prometheus_port"),
    ],
    ids=["retention", "state", "job-without-targets", "job-without-targets-key", "port"],
)
def test_a_wrong_variable_fails_before_anything_starts(
    tmp_path: Path, wrong: dict[str, Any], named: str
) -> None:
    state = tmp_path / "state"
    port = free_port()
    variables = {**_variables(state, port, free_port()), **wrong}
    play = apply_role(ROLES["prometheus"], variables, tmp_path / "play.yml")
    assert play.returncode != 0
    assert play.recap["failed"] == 1 and play.recap["changed"] == 0, play.output[-3000:]
    failure = play.output[play.output.index("[ERROR]") :]
    assert named in failure
    assert not state.exists()
    assert _processes_mentioning(f"=127.0.0.1:{port} ") == []


def test_stopped_stops_both_daemons_and_leaves_no_process(lab: Lab) -> None:
    variables = {
        **lab.variables,
        "prometheus_state": "stopped",
        "node_exporter_state": "stopped",
    }
    stopped = _play(lab.directory, variables, "stopped.yml")
    assert stopped.returncode == 0, stopped.output[-5000:]
    assert stopped.recap["changed"] == 2  # one stop each

    for daemon, pid in lab.pids.items():
        assert not Path(f"/proc/{pid}").exists(), daemon
        assert not (lab.monitoring_dir / f"{daemon}.pid").exists(), daemon
    listening = (f"=127.0.0.1:{lab.node_exporter_port} ", f"=127.0.0.1:{lab.prometheus_port} ")
    assert _processes_mentioning(str(lab.state), *listening) == []

    again = _play(lab.directory, variables, "stopped.yml")
    assert again.returncode == 0 and again.recap["changed"] == 0, again.output[-5000:]
