"""The CPU sets' preflight (playbooks/tasks/cpusets.yml) on this machine, through
ansible-playbook: sets within the host pass; a CPU the host lacks and an overlap fail
by the variable's name, the host's and a set that would be right; the inventory may
allow an overlap. And the local inventory's default split of this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from servelab.controller.cpusets import default_split, format_cpuset, host_cpus
from tests.support.lab import BIN, PROJECT, env

PREFLIGHT = PROJECT / "playbooks" / "tasks" / "cpusets.yml"
ONLINE = Path("/sys/devices/system/cpu/online").read_text().strip()
_LIMIT = Path("/sys/fs/cgroup/cpuset.cpus.effective")
CGROUP = _LIMIT.read_text().strip() if _LIMIT.is_file() else ""


def _preflight(tmp_path: Path, **sets: object) -> subprocess.CompletedProcess[str]:
    play = tmp_path / "preflight.yml"
    play.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Preflight",
                    "hosts": "lab-host",
                    "gather_facts": False,
                    "vars": {"ansible_connection": "local",
                             "ansible_python_interpreter": sys.executable,
                             "servelab_cpus_may_overlap": False, **sets},
                    "tasks": [{"ansible.builtin.import_tasks": str(PREFLIGHT)}],
                }
            ]
        )
    )  # fmt: skip
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "lab-host,", str(play)],
        cwd=PROJECT,
        env={**env(), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def cpus() -> list[int]:
    online = sorted(os.sched_getaffinity(0))
    if len(online) < 2:
        pytest.skip("a split needs two CPUs")
    return online


def test_disjoint_sets_within_the_host_pass(tmp_path: Path, cpus: list[int]):
    result = _preflight(
        tmp_path, servelab_server_cpus=str(cpus[-1]), servelab_lab_cpus=str(cpus[0])
    )
    assert result.returncode == 0, result.stdout


def test_a_cpu_the_host_lacks_fails_by_name(tmp_path: Path, cpus: list[int]):
    missing = max(cpus) + 64
    result = _preflight(
        tmp_path, servelab_server_cpus=f"{cpus[-1]},{missing}", servelab_lab_cpus=str(cpus[0])
    )
    assert result.returncode != 0
    assert (
        f"servelab_server_cpus '{cpus[-1]},{missing}' on lab-host names CPU(s) {missing}, "
        "which the host does not have"
    ) in result.stdout


def test_an_overlap_fails_unless_the_inventory_allows_it(tmp_path: Path, cpus: list[int]):
    both = format_cpuset(cpus)
    sets = {"servelab_server_cpus": both, "servelab_lab_cpus": str(cpus[0])}
    refused = _preflight(tmp_path, **sets)
    assert refused.returncode != 0
    assert f"share CPU(s) {cpus[0]}: the lab would take the server's time" in refused.stdout
    allowed = _preflight(tmp_path, **sets, servelab_cpus_may_overlap=True)
    assert allowed.returncode == 0, allowed.stdout


def test_the_local_inventory_splits_this_machine():
    result = subprocess.run(
        [str(BIN / "ansible-inventory"), "--host", "server"],
        cwd=PROJECT, env=env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    raw = yaml.safe_load(result.stdout)
    assert raw["servelab_server_cpus"] == "{{ servelab_local_cpus.server }}"
    shown = subprocess.run(
        [str(BIN / "ansible"), "server:client", "-m", "ansible.builtin.debug", "-a",
         "msg={{ servelab_server_cpus }}/{{ servelab_lab_cpus }}"],
        cwd=PROJECT, env={**env(), "ANSIBLE_NOCOLOR": "1"}, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    expected = default_split(host_cpus(ONLINE, CGROUP))
    assert shown.stdout.count(f"msg: {expected.server}/{expected.lab}") == 2, shown.stdout
