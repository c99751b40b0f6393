"""The lab across hosts: one server and two client hosts made of network namespaces.

Everything goes over real SSH to sshds inside the namespaces (tests/support/netns.py),
with the inventory a real lab would use: the server host gets its own servelab[server]
venv from wheels the controller fetched, both client hosts run a pool through HAProxy
on the first, and Prometheus there scrapes all three. A second run on a link shaped
to 200 Mbit/s shows the large batch's throughput fall and the report lay it on the
network. At the end, teardown leaves no namespace, link or sshd behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import required
from tests.support.lab import command
from tests.support.netns import NetLab

SHAPED_MBIT = 200
BATCHES = (1, 64)


def _require_namespaces() -> None:
    """Skip with the reason where namespaces cannot be made; in CI that is a failure."""
    missing = None
    if os.geteuid() != 0:
        missing = "root (ip netns, veth links, sshd)"
    elif shutil.which("ip") is None or shutil.which("tc") is None:
        missing = "iproute2 (ip, tc)"
    if missing:
        required.missing(f"namespace hosts need {missing}")


def _lab(
    inventory: Path, plan: Path, results: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return command(
        "ansible-playbook",
        "-i",
        str(inventory),
        "lab.yml",
        "-e",
        f"servelab_plan_file={plan}",
        "-e",
        f"servelab_results_dir={results}",
        "-e",
        '{"model_repository_ceiling_duration_s": 2}',
        *extra,
    )


def _document(results: Path) -> dict:
    return json.loads((results / "latest" / "results.json").read_text())


@pytest.fixture(scope="module")
def netlab(tmp_path_factory: pytest.TempPathFactory):
    _require_namespaces()
    root = tmp_path_factory.mktemp("netlab")
    lab = NetLab(root)
    inventory = lab.up()
    plan = root / "multihost.yml"
    plan.write_text(
        yaml.safe_dump(
            {
                "name": "multihost",
                "servers": ["ref-openvino"],
                "models": ["tiny"],
                "batches": list(BATCHES),
                "concurrency": [2],
                "repeats": 1,
                "window": {"warmup_s": 3, "duration_s": 4, "cooldown_s": 0.5},
                # the smoke plan's bounds: three hosts' daemons share two cores here
                "validity": {
                    "max_client_cpu": 0.9,
                    "proxy_tolerance": 0.1,
                    "max_spread": 0.5,
                    "stability_intervals": 2,
                },
            }
        )
    )
    try:
        yield lab, inventory, plan
    finally:
        lab.down()


@pytest.fixture(scope="module")
def open_run(netlab):
    """lab.yml over SSH; the lab stays up for the shaped run."""
    lab, inventory, plan = netlab
    results = lab.root / "results-open"
    run = _lab(inventory, plan, results, "-e", "servelab_teardown=false")
    return results, run


@pytest.fixture(scope="module")
def shaped_run(netlab, open_run):
    """The same plan again on the provisioned lab, by the controller alone, over a
    shaped server link; it ends with the lab's teardown."""
    lab, inventory, plan = netlab
    lab.shape("server", SHAPED_MBIT)
    results = lab.root / "results-shaped"
    monitor = lab.host("client1").address
    try:
        run = command(
            "servelab",
            "run",
            "--plan",
            str(plan),
            "--results",
            str(results),
            "--inventory",
            str(inventory),
            "--prometheus",
            f"http://{monitor}:19090",
            "--extra-vars",
            json.dumps({"servelab_link_speed_mbps": SHAPED_MBIT}),
        )
    finally:
        lab.unshape("server")
    return results, run


def test_both_client_hosts_load_the_server_over_ssh(netlab, open_run):
    lab, _, _ = netlab
    results, run = open_run
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    document = _document(results)
    assert document["failures"] == []
    # the server host got its own venv from the controller's wheels
    assert (lab.root / "hosts" / "server" / "venv" / "bin" / "servelab-refserver").exists()
    for point in document["points"]:
        assert point["valid"], point["reasons"]
        clients = point["clients"]
        assert set(clients) == {"client1", "client2"}
        per_host = {host: s["requests"]["completed"] for host, s in clients.items()}
        assert all(n > 0 for n in per_host.values()), per_host
        # throughput adds up across hosts, and HAProxy on client1 counted both hosts' requests
        assert point["requests"] == sum(per_host.values())
        assert abs(point["proxy"]["requests"] - point["requests"]) <= (0.05 * point["requests"] + 4)
        assert abs(point["server_metrics"]["requests"] - point["requests"]) <= (
            0.05 * point["requests"] + 4
        )
        # the server host's traffic came over its veth, not loopback
        network = point["network"]
        assert network["host"] == "server"
        assert network["device"] == lab.host("server").veth_host
        assert network["receive_bytes_per_s"] > 0
        assert network["near_capacity"] is False


def test_the_run_records_hosts_links_and_clocks(netlab, open_run):
    lab, _, _ = netlab
    results, _ = open_run
    run = _document(results)["run"]
    server = run["hosts"]["server"][0]
    assert server["network"]["address"] == lab.host("server").address
    assert server["network"]["device"] == lab.host("server").veth_host
    assert {h["name"] for h in run["hosts"]["client"]} == {"client1", "client2"}
    clocks = {c["host"]: c for c in run["clocks"]}
    assert set(clocks) == {"server", "client1", "client2", "controller"}
    # one kernel, one clock: every offset is within its reading's uncertainty and a few ms
    for clock in clocks.values():
        assert abs(clock["offset_ms"]) <= clock["uncertainty_ms"] + 5, clock


def test_the_report_shows_each_client_host_and_the_network_path(netlab, open_run):
    lab, _, _ = netlab
    results, _ = open_run
    document = _document(results)
    report = (results / "latest" / "report.md").read_text()
    assert "## Network path and clocks" in report
    assert lab.host("server").veth_host in report
    for point in document["points"]:
        for host, summary in point["clients"].items():
            assert f"{host}: {summary['requests']['completed']}" in report
    assert "Limited by the network" not in report


def test_a_shaped_link_caps_the_large_batch_and_the_report_says_why(open_run, shaped_run):
    open_results, _ = open_run
    results, run = shaped_run
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    open_points = {p["batch"]: p for p in _document(open_results)["points"]}
    points = {p["batch"]: p for p in _document(results)["points"]}
    large, small = max(BATCHES), min(BATCHES)
    print(
        f"batch {large}: {open_points[large]['throughput_fps']:.0f} frames/s open, "
        f"{points[large]['throughput_fps']:.0f} at {SHAPED_MBIT} Mbit/s; link use "
        f"{points[large]['network']['link_use']:.2f}"
    )
    # the shaped link carries at most SHAPED_MBIT: the large batch's requests need more
    assert points[large]["throughput_fps"] < 0.7 * open_points[large]["throughput_fps"]
    network = points[large]["network"]
    assert network["link_mbps"] == SHAPED_MBIT
    assert network["near_capacity"] is True
    assert network["receive_bytes_per_s"] * 8 <= SHAPED_MBIT * 1e6 * 1.05
    # batch 1 needs a sliver of the link and is not blamed on it
    assert points[small]["network"]["near_capacity"] is False
    report = (results / "latest" / "report.md").read_text()
    assert "**Limited by the network:**" in report
    limited = report.split("**Limited by the network:**")[1].split("\n")[0]
    assert f"batch {large} " in limited and f"batch {small} " not in limited
    assert f"{SHAPED_MBIT} Mbit/s (from the inventory)" in report


def test_teardown_removes_namespaces_links_and_sshds(netlab, shaped_run):
    lab, _, _ = netlab
    # the run's own teardown stopped the lab's daemons on every host
    for host in lab.hosts:
        listening = subprocess.run(
            ["ip", "netns", "exec", host.netns, "ss", "-Hltn"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        ports = {line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines()}
        assert ports <= {"22"}, (host.name, listening)
    lab.down()
    assert lab.leftovers() == []
