"""The whole lab on the docker runtime, with images built here (no registry is reachable).

lab.yml as a user runs it with `servelab_runtime=docker servelab_docker_images=build`:
the images are built from a debootstrapped Debian base, the model servers run as
containers on the lab's docker network, HAProxy, Prometheus and the node exporters
as containers on the host's network. The run leaves the lab up
(servelab_teardown=false), so that provisioning again must change nothing and the
containers can be looked at; then teardown leaves no container, network or volume.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import docker
from tests.support.lab import PROJECT, playbook, recap

DOCKER = ["-e", "servelab_runtime=docker", "-e", "servelab_docker_images=build"]
PROVISIONING = ("playbooks/server.yml", "playbooks/client.yml")


def _inspect(container: str) -> dict:
    out = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[0]


# The docker runtime's default state directory (inventory/group_vars/all.yml).
DEFAULT_STATE = Path("/var/lib/servelab")


@pytest.fixture(scope="module")
def docker_lab(docker_engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("docker_lab")
    results = root / "results"
    # as a new user runs it: the default state directory, from the user's own home of
    # mode 0700 (root's on Debian), which the containers' user cannot enter; the real
    # home, so that the controller's wheelhouse and pip's cache are the ones a user has
    home = Path.home()
    assert home.stat().st_mode & 0o077 == 0, f"{home} is not mode 0700, as this test needs"
    existed = DEFAULT_STATE.exists()
    state = DEFAULT_STATE
    plan = yaml.safe_load((PROJECT / "plans" / "smoke.yml").read_text())
    plan.update({"name": "docker-smoke", "batches": [1]})
    plan_file = root / "plan.yml"
    plan_file.write_text(yaml.safe_dump(plan))
    volumes_before = docker.volumes()

    def run(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return playbook(name, None, results, *DOCKER, *extra, plan=plan_file)

    try:
        yield run, state, results, volumes_before
    finally:
        run("playbooks/teardown.yml")
        if not existed:  # what this test made, and nothing a user had there before
            shutil.rmtree(DEFAULT_STATE, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_run(docker_lab):
    """lab.yml on the docker runtime, the lab left up after the run for a look."""
    run, _, results, _ = docker_lab
    result = run("lab.yml", "-e", "servelab_teardown=false")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result, results


def test_the_lab_measures_every_point_valid_in_containers(lab_run):
    _, results = lab_run
    document = json.loads((results / "latest" / "results.json").read_text())
    # the default state directory held the lab's files, not the 0700 home
    assert (DEFAULT_STATE / "load_balancer" / "haproxy.cfg").is_file()
    assert {p["server"] for p in document["points"]} == {"ref-openvino", "ref-tensorflow"}
    for point in document["points"]:
        assert point["valid"], point["reasons"]
        # the containerized server counted the Predict calls the clients made; its count
        # is Prometheus' 1-s samples interpolated at the 4-s window's edges, where warm-up
        # and cool-down run at other rates (CI saw 2.2%)
        assert abs(point["server_metrics"]["requests"] - point["requests"]) <= (
            0.05 * point["requests"] + 2
        )
    hosts = document["run"]["hosts"]
    assert {h["runtime"] for h in hosts["server"] + hosts["client"]} == {"docker"}
    images = document["run"]["versions"]["images"]
    assert any("servelab/refserver:bookworm" in tags for tags in images), images
    # each image's registry digest beside its id (none for an image built here), and
    # each host's tuning read from /sys and /proc
    assert set(document["run"]["versions"]["image_digests"]) == set(images)
    assert all("governor" in h["fingerprint"] for h in hosts["server"] + hosts["client"])
    report = (Path(results) / "latest" / "report.md").read_text()
    for point in document["points"]:
        assert f"{point['throughput_fps']:.1f}" in report
    assert "servelab/refserver:bookworm" in report
    # provenance: each server's own version
    servers = document["run"]["versions"]["servers"]
    assert all(v.startswith("servelab-refserver ") for v in servers.values()), servers
    # the process exporter's container saw the programs of the other containers
    for point in document["points"]:
        programs = {u["program"] for u in point["programs"]}
        assert {"servelab-refserver", "haproxy", "servelab-load", "prometheus"} <= programs


def test_a_second_provisioning_changes_nothing(docker_lab, lab_run):
    run = docker_lab[0]
    for name in PROVISIONING:
        result = run(name)
        assert result.returncode == 0, result.stdout[-4000:]
        counts = recap(result.stdout)
        assert counts and all(c["changed"] == 0 for c in counts.values()), (name, counts)


def test_the_client_platform_runs_in_containers_as_a_user(lab_run):
    for name in ("servelab-haproxy", "servelab-prometheus", "servelab-node-exporter"):
        container = _inspect(name)
        assert container["State"]["Running"], name
        assert container["Config"]["User"] == "65534:65534", name
        assert container["HostConfig"]["NetworkMode"] == "host", name
        assert container["Config"]["Image"].startswith("servelab/"), name


def test_the_last_kind_is_a_healthy_container_on_the_lab_network(docker_lab, lab_run):
    # the plan's last point served ref-tensorflow; serving it again changes nothing
    again = docker_lab[0]("playbooks/phases/serve.yml", "-e", "servelab_serve_kind=ref-tensorflow")
    assert again.returncode == 0 and recap(again.stdout)["server"]["changed"] == 0, again.stdout
    container = _inspect("servelab-ref-tensorflow")
    assert container["State"]["Health"]["Status"] == "healthy"
    assert container["Config"]["User"] == "65534:65534"
    assert list(container["NetworkSettings"]["Networks"]) == ["servelab"]
    address = container["NetworkSettings"]["Networks"]["servelab"]["IPAddress"]
    assert address.startswith("198.19.0.")
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts["/models"]["RW"] is False and mounts["/config"]["RW"] is False
    bindings = container["HostConfig"]["PortBindings"]
    assert bindings["8502/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8502"}]


def test_a_taken_port_fails_the_start_by_name(docker_lab, lab_run):
    run = docker_lab[0]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 9001))
        holder.listen()
        result = run("playbooks/phases/serve.yml", "-e", "servelab_serve_kind=ref-openvino")
    assert result.returncode != 0
    message = " ".join(result.stdout.split())
    assert "port 9001 (ref-openvino grpc) on 127.0.0.1 is in use by another process" in message


def test_teardown_leaves_no_container_network_or_volume(docker_lab, lab_run):
    run, _, _, volumes_before = docker_lab
    result = run("playbooks/teardown.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert docker.lab_leftovers(volumes_before) == []
