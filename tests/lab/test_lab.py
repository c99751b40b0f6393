"""The whole lab on this machine: lab.yml with the smoke plan, then what users rely on.

Real Ansible, real HAProxy, Prometheus and node exporter from Debian's packages,
real refserver processes on both runtimes, the real client pool in its own light
venv; only the plan is small. The first run keeps the lab up, so that
provisioning it again must change nothing; then a server killed in the middle of
a point gives an invalid point and a finished run, `--resume` measures nothing
twice, and both the end of a run and teardown leave nothing running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from servelab.controller.cpusets import parse_cpuset
from tests.support.affinity import thread_cpus
from tests.support.lab import BIN, PROJECT, env, playbook, recap

PROMETHEUS = "http://127.0.0.1:19090"


def _lab_processes(state: Path) -> list[str]:
    """Command lines of running processes that belong to this lab's state directory."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if str(state) in line]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("lab")
    state, results = root / "state", root / "results"
    run = playbook("lab.yml", state, results, "-e", "servelab_teardown=false")
    yield state, results, run
    playbook("playbooks/teardown.yml", state, results)


def _document(results: Path) -> dict:
    return json.loads((results / "latest" / "results.json").read_text())


def test_lab_measures_every_point_valid(lab):
    _, results, run = lab
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # waiting for the controller (its points, teardown, report) prints no retries
    assert "FAILED - RETRYING" not in run.stdout[run.stdout.index("TASK [Start the controller]") :]
    document = _document(results)
    assert document["run"]["plan"]["name"] == "smoke"
    assert document["run"]["finished"] is not None
    assert document["failures"] == []
    points = {(p["server"], p["batch"]): p for p in document["points"]}
    assert set(points) == {(s, b) for s in ("ref-openvino", "ref-tensorflow") for b in (1, 4)}
    for (server, batch), point in points.items():
        assert point["valid"], (server, batch, point["reasons"])
        client = point["clients"]["client"]
        # frames/s is verified responses x batch over the window, as the pool measured it
        expected = client["requests"]["verified"] * batch / client["window"]["duration_s"]
        assert point["throughput_fps"] == pytest.approx(expected)
        # HAProxy forwarded what the clients sent, to within the requests in flight
        assert abs(point["proxy"]["requests"] - point["requests"]) <= 0.05 * point["requests"] + 2
        # the server counted the same Predict calls; like HAProxy's, its counter is read
        # at the window's edges by interpolating between scrapes, which on a busy 2-core
        # host come late and unevenly (CI saw 2.2% over a 4-s window)
        assert abs(point["server_metrics"]["requests"] - point["requests"]) <= (
            0.05 * point["requests"] + 2
        )
        assert 0 < point["cpu"]["server"] <= 1 and 0 < point["cpu"]["client"] <= 1
        assert point["cpu"]["shared_host"] is True
        assert (point["in_process_fps"] is not None) == (server == "ref-openvino")
        # enough requests, and every latency behind the percentiles counted
        assert point["requests"] >= document["run"]["plan"]["validity"].get("min_requests", 100)
        assert point["latency_ms"]["samples"] == point["requests"]
        # each node exporter host's frequency, read or "not exposed" (this VM has no cpufreq)
        assert {f["host"] for f in point["frequency"]} == {"server", "client"}
        # the process exporter: each program's CPU and peak memory over the window, the
        # server program's CPU, and the pools' share the client-CPU rule judges
        programs = {u["program"]: u for u in point["programs"]}
        for program in ("servelab-refserver", "haproxy", "servelab-load", "prometheus"):
            use = programs[program]
            assert use["cpu_cores"] > 0 and use["peak_rss_bytes"] > 2**20, use
            assert use["samples"] >= 3 and use["platforms"] == ["client", "server"], use
        assert point["server_metrics"]["process_cpu"] == programs["servelab-refserver"]["cpu_cores"]
        assert point["cpu"]["client_pool_source"] == "process exporter"
        # the server-side breakdown: request time holds the inference time
        metrics = point["server_metrics"]
        assert 0 < metrics["inference_ms_mean"] <= metrics["request_ms_mean"]
        assert abs(metrics["request_samples"] - point["requests"]) <= 0.05 * point["requests"] + 2
    hosts = document["run"]["hosts"]
    for host in hosts["server"] + hosts["client"]:
        tuning = host["fingerprint"]
        assert tuning["thp"] in ("always", "madvise", "never", "unknown"), tuning
        assert all(isinstance(value, str) and value for value in tuning.values()), tuning
    assert hosts["server"][0]["cores"] == os.cpu_count()
    assert "haproxy" in document["run"]["versions"]["client_packages"]
    # each server kind's own version, as its program says it
    servers = document["run"]["versions"]["servers"]
    assert set(servers) == {"ref-openvino", "ref-tensorflow"}
    assert all(v.startswith("servelab-refserver ") for v in servers.values()), servers


def test_lab_shows_each_point_as_it_finishes(lab):
    _, _, run = lab
    # each point's line comes right under its own task, while the run goes on
    # (the YAML callback folds long lines: compare with whitespace collapsed)
    output = " ".join(run.stdout.split())
    for n in range(1, 5):
        shown = re.search(
            rf"TASK \[Show point {n}\] \**\s*ok: \[localhost\] => msg: '([^']*)'", output
        )
        assert shown, output[-3000:]
        assert shown.group(1).startswith(f"point {n}/4 ")
        assert "frames/s" in shown.group(1) and "valid" in shown.group(1)


def test_a_kind_still_serving_is_not_served_again(lab):
    _, _, run = lab
    output = " ".join(run.stdout.split())
    # the second batch of each kind goes straight to its load; a new kind is served
    for kind in ("ref-openvino", "ref-tensorflow"):
        assert f"{kind}-tiny-b4-c2-r0: {kind} still serves, not served again" in output
        assert f"{kind}-tiny-b1-c2-r0: {kind} still serves" not in output


def test_the_report_agrees_with_results_json(lab):
    _, results, _ = lab
    run_dir = (results / "latest").resolve()
    document = _document(results)
    report = (run_dir / "report.md").read_text()
    for point in document["points"]:
        assert f"{point['throughput_fps']:.1f}" in report
    assert "## Where the time went" in report
    assert "## Each lab program's CPU and memory" in report
    for point in document["points"]:
        overhead = (
            point["server_metrics"]["request_ms_mean"]
            - point["server_metrics"]["inference_ms_mean"]
        )
        assert (
            f"{point['latency_ms']['mean']:.2f}" in report
            or f"{point['latency_ms']['mean']:.1f}" in report
        )
        assert any(f"{overhead:.{d}f}" in report for d in (1, 2)), overhead
    assert "| servelab-load |" in report
    for name in ("results.csv", "report.html"):
        assert (run_dir / name).stat().st_size > 0
    assert list((run_dir / "charts").glob("*.png"))


def _with_children(pid: int) -> list[int]:
    """The process and its descendants (HAProxy's master forks its worker)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    family, grown = {pid}, True
    while grown:
        children = {child for child, parent in parents.items() if parent in family}
        grown = not children <= family
        family |= children
    return sorted(family)


def test_the_server_and_the_lab_run_inside_their_cpu_sets(lab):
    """Every thread of the model server the run left up on the server set, every thread
    of HAProxy, Prometheus and the node exporter on the lab set: the local inventory's
    split of this machine, as results.json records it."""
    state, results, run = lab
    # whether every point was valid is the test above's; here, where each one ran
    assert (results / "latest" / "results.json").is_file(), run.stdout[-3000:]
    document = _document(results)
    sets = document["run"]["hosts"]["server"][0]["cpus"]
    assert sets["server"] and sets["lab"], sets
    assert document["run"]["hosts"]["client"][0]["cpus"] == sets
    expected = {"server": parse_cpuset(sets["server"]), "lab": parse_cpuset(sets["lab"])}
    assert not expected["server"] & expected["lab"]
    seen: dict[str, int] = {}
    for pidfile in sorted(state.glob("*/*.pid")):
        side = "server" if pidfile.parent.name == "model_server" else "lab"
        for pid in _with_children(int(pidfile.read_text())):
            allowed = thread_cpus(pid)
            assert set(allowed.values()) <= {expected[side]}, (pidfile.name, pid, allowed)
            seen[pidfile.stem] = seen.get(pidfile.stem, 0) + len(allowed)
    print(f"threads checked per daemon: {seen}")
    assert {"haproxy", "prometheus", "node_exporter"} <= set(seen), seen
    assert any(name.startswith("ref-") for name in seen), "the model server the run left up"
    for point in document["points"]:
        if point["server"] == "ref-openvino":
            assert point["in_process_cpus"] == sets["server"], "the ceiling on the server's set"
        assert point["cpu"]["lab_set_cpus"] == len(expected["lab"])
        assert 0.0 <= point["cpu"]["lab_set"] <= 1.0


@pytest.fixture(scope="module")
def provisioned(lab):
    """Both platforms provisioned again on the lab the run kept up."""
    state, results, _ = lab
    platforms = ("playbooks/server.yml", "playbooks/client.yml")
    again = {name: playbook(name, state, results) for name in platforms}
    return state, results, again


def test_a_second_provisioning_changes_nothing(provisioned):
    _, _, second = provisioned
    for name, run in second.items():
        assert run.returncode == 0, run.stdout[-4000:]
        counts = recap(run.stdout)
        assert counts, run.stdout[-2000:]
        assert all(c["changed"] == 0 for c in counts.values()), (name, counts)


def _servelab_run(state: Path, results: Path, *args: str) -> subprocess.Popen:
    extra = {
        "servelab_state_dir": str(state),
        "servelab_venv": str(BIN.parent),
    }
    return subprocess.Popen(
        [
            str(BIN / "servelab"),
            "run",
            *args,
            "--results",
            str(results),
            "--prometheus",
            PROMETHEUS,
            "--extra-vars",
            json.dumps(extra),
        ],
        cwd=PROJECT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _served_requests(rest_url: str) -> float:
    with urllib.request.urlopen(f"{rest_url}/metrics", timeout=2) as response:
        text = response.read().decode()
    found = re.findall(
        r'^refserver_requests_success_total\{.*method="Predict".*\} (\S+)$', text, re.M
    )
    return sum(float(v) for v in found)


def _plan(tmp_path: Path, batches: list[int]) -> Path:
    data = yaml.safe_load((PROJECT / "plans" / "smoke.yml").read_text())
    data.update({"name": "one-kind", "servers": ["ref-openvino"], "batches": batches})
    data["baseline"] = "ref-openvino"
    data["window"] = {"warmup_s": 1, "duration_s": 6, "cooldown_s": 0.5}
    path = tmp_path / "plan.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def killed_run(provisioned, tmp_path_factory):
    """A run whose server is killed once the first point's load is under way."""
    state, results, _ = provisioned
    pidfile = state / "model_server" / "ref-openvino.pid"
    plan = _plan(tmp_path_factory.mktemp("killed"), [1, 4])
    run = _servelab_run(state, results, "--plan", str(plan))
    try:
        deadline = time.monotonic() + 240
        killed = False
        while time.monotonic() < deadline and not killed:
            try:
                if _served_requests("http://127.0.0.1:8001") > 200:
                    os.kill(int(pidfile.read_text()), signal.SIGKILL)
                    killed = True
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        assert killed, "the first point's load never reached the server"
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    return run.returncode, output


def _run_dir(output: str) -> Path:
    return Path(re.search(r"^results: (\S+)$", output, re.M).group(1))


def test_a_server_killed_mid_point_gives_an_invalid_point_and_the_run_goes_on(killed_run):
    returncode, output = killed_run
    assert returncode == 1, output[-3000:]
    document = json.loads((_run_dir(output) / "results.json").read_text())
    points = {p["batch"]: p for p in document["points"]}
    assert not points[1]["valid"]
    assert any("UNAVAILABLE" in reason for reason in points[1]["reasons"]), points[1]["reasons"]
    # the server came back for the next point, and the run finished
    assert points[4]["valid"], points[4]["reasons"]
    assert document["run"]["finished"] is not None


def test_resume_measures_only_what_is_missing(provisioned, killed_run):
    state, results, _ = provisioned
    run_dir = _run_dir(killed_run[1])
    # An interrupted run: only its valid second point made it to disk.
    document = json.loads((run_dir / "results.json").read_text())
    kept = next(p for p in document["points"] if p["batch"] == 4)
    document["points"] = [kept]
    document["run"]["finished"] = None
    (run_dir / "results.json").write_text(json.dumps(document))

    # the user's way back: lab.yml provisions again (the run ended with teardown) and resumes
    resumed = playbook("lab.yml", state, results, "-e", f"servelab_resume={run_dir}", plan=None)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    output = " ".join(resumed.stdout.split())
    assert re.search(r"point 2/2 ref-openvino-tiny-b4-c2-r0: [^']*\(measured before\)", output)
    document = json.loads((run_dir / "results.json").read_text())
    points = {p["batch"]: p for p in document["points"]}
    assert sorted(points) == [1, 4]
    assert points[4] == kept  # not measured again
    assert points[1]["valid"], points[1]["reasons"]
    assert document["run"]["finished"] is not None
    assert len(document["run"]["resumed"]) == 1
    # a run without --keep-up ends with teardown
    assert _lab_processes(state) == []


@pytest.fixture(scope="module")
def lab_daemons_killed(provisioned, killed_run, tmp_path_factory):
    """A two-point run whose Prometheus, HAProxy and node exporter are killed (SIGKILL) once
    the first point's load is under way."""
    state, results, _ = provisioned
    # the run before ended with teardown: provision again, as lab.yml would
    for name in ("playbooks/server.yml", "playbooks/client.yml"):
        again = playbook(name, state, results)
        assert again.returncode == 0, again.stdout[-3000:]
    daemons = {
        "Prometheus": state / "monitoring" / "prometheus.pid",
        "HAProxy": state / "load_balancer" / "haproxy.pid",
        "node exporter": state / "monitoring" / "node_exporter.pid",
    }
    plan = _plan(tmp_path_factory.mktemp("lab_faults"), [1, 4])
    run = _servelab_run(state, results, "--plan", str(plan))
    killed: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            try:
                if _served_requests("http://127.0.0.1:8001") > 100:
                    for name, pidfile in daemons.items():
                        killed[name] = int(pidfile.read_text().split()[0])
                        os.kill(killed[name], signal.SIGKILL)
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        assert len(killed) == 3, f"the first point's load never reached the server ({killed})"
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    return run.returncode, output, daemons, killed


def test_lab_daemons_killed_mid_point_cost_one_measurement_not_the_run(lab_daemons_killed):
    returncode, output, _, _ = lab_daemons_killed
    run_dir = _run_dir(output)
    document = json.loads((run_dir / "results.json").read_text())
    points = {p["batch"]: p for p in document["points"]}
    # the spoiled point was measured again with the daemons back; the other one is valid
    assert points[1]["valid"], points[1]["reasons"]
    assert points[4]["valid"], points[4]["reasons"]
    assert returncode == 0, output[-3000:]
    assert document["failures"] == []
    # the first attempt was written down as a lab fault, naming what died
    fault = re.search(r"^point 1/2 \S+: .*FAILED: lab fault: (.*)$", output, re.M)
    assert fault, output[-3000:]
    assert "Prometheus" in fault.group(1)
    # then the same point again, measured with the daemons back
    assert re.search(r"^point 1/2 \S+: [\d.]+ frames/s, .*, valid", output, re.M), output[-3000:]


def test_teardown_leaves_no_process_behind(provisioned):
    state, results, _ = provisioned
    run = playbook("playbooks/teardown.yml", state, results)
    assert run.returncode == 0, run.stdout[-3000:]
    assert _lab_processes(state) == []
