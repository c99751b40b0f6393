"""The lab's CPU sets in Jinja: the default split of a machine and the preflight's check.

The logic lives in servelab.controller.cpusets, which Ansible imports from the project's
venv; these filters only hand the variables over. ansible.cfg puts this folder on the
filter path, so inventories and every playbook can use them.
"""

from __future__ import annotations

from typing import Any

from servelab.controller.cpusets import (
    cpuset_metrics,
    cpuset_problems,
    default_split,
    host_cpus,
)


def servelab_cpu_split(online: str, cgroup: str = "") -> dict[str, Any]:
    """{server, lab, overlap}: the default sets of a machine from its online CPUs
    (/sys/devices/system/cpu/online) and its cgroup's cpuset.cpus.effective."""
    split = default_split(host_cpus(online, cgroup))
    return {"server": split.server, "lab": split.lab, "overlap": split.overlap}


def servelab_cpuset_problems(
    host: str,
    server_cpus: str,
    lab_cpus: str,
    online: str,
    cgroup: str = "",
    may_overlap: bool = False,
) -> list[str]:
    """What is wrong with a host's servelab_server_cpus and servelab_lab_cpus."""
    return cpuset_problems(
        host,
        str(server_cpus or ""),
        str(lab_cpus or ""),
        host_cpus(online, cgroup),
        may_overlap=bool(may_overlap),
    )


def servelab_cpuset_metrics(sets: dict[str, str]) -> str:
    """The textfile collector's file of a host's sets ({server, lab})."""
    return cpuset_metrics({str(k): str(v or "") for k, v in sets.items()})


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "servelab_cpu_split": servelab_cpu_split,
            "servelab_cpuset_problems": servelab_cpuset_problems,
            "servelab_cpuset_metrics": servelab_cpuset_metrics,
        }
