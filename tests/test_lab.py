"""The whole lab on this machine: lab.yml with the smoke plan, then idempotence.

Real Ansible, real refserver processes on both runtimes, the real client pool
installed into its own light venv; only the plan is small.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def _playbook(playbook: str, state: Path, results: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{PLAYBOOK.parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [
            str(PLAYBOOK),
            playbook,
            "-e",
            f"servelab_plan_file={PROJECT / 'plans' / 'smoke.yml'}",
            "-e",
            f"servelab_state_dir={state}",
            "-e",
            f"servelab_results_dir={results}",
            "-e",
            '{"model_repository_ceiling_duration_s": 2}',
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def _recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for host, counts in re.findall(r"^(\w+)\s+:\s+(ok=.*)$", output, flags=re.M):
        recap[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return recap


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("lab")
    state, results = root / "state", root / "results"
    run = _playbook("lab.yml", state, results)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return state, results, run.stdout


def test_lab_measures_every_point_of_the_plan(lab_run):
    _, results, _ = lab_run
    document = json.loads((results / "latest" / "results.json").read_text())
    assert document["run"]["plan"]["name"] == "smoke"
    assert document["run"]["finished"] is not None
    assert document["failures"] == []
    points = {(p["server"], p["batch"]): p for p in document["points"]}
    assert set(points) == {(s, b) for s in ("ref-openvino", "ref-tensorflow") for b in (1, 4)}
    for (server, batch), point in points.items():
        assert point["valid"], (server, batch, point["reasons"])
        assert point["requests"] > 0
        assert point["verify_failures"] == 0
        assert point["errors"] == {}
        client = point["clients"]["client"]
        # frames/s is verified responses x batch over the window, as the pool measured it
        expected = client["requests"]["verified"] * batch / client["window"]["duration_s"]
        assert point["throughput_fps"] == pytest.approx(expected)
        assert point["latency_ms"]["p50"] > 0
        # the model repository measured OpenVINO alone at this model and batch
        if server == "ref-openvino":
            assert point["in_process_fps"] > 0
        else:
            assert point["in_process_fps"] is None


def test_lab_stops_its_servers_at_the_end(lab_run):
    state, _, _ = lab_run
    assert not list((state / "model_server").glob("*.pid"))


def test_a_second_provisioning_changes_nothing(lab_run):
    state, results, _ = lab_run
    for playbook in ("playbooks/server.yml", "playbooks/client.yml"):
        run = _playbook(playbook, state, results)
        assert run.returncode == 0, run.stdout[-4000:]
        recap = _recap(run.stdout)
        assert recap, run.stdout[-2000:]
        assert all(counts["changed"] == 0 for counts in recap.values()), (playbook, recap)
