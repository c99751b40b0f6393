"""A Docker engine for the docker runtime's tests, and what they find left of the lab.

`python -m tests.support.docker start` (run by `make test`) starts Debian's dockerd
when no engine answers, and waits until it does. A test asks for the `docker_engine`
fixture: without an engine it is skipped with the reason printed, unless CI=true or
SERVELAB_REQUIRE_DOCKER=1 (which .ci/run sets), where the same reason fails it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.required import missing

DOCKERD_LOG = Path("/var/log/servelab-dockerd.log")
# Everything of the lab carries this label or these names.
LAB_LABEL = "org.servelab.component"
LAB_NETWORK = "servelab"


def _docker(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *argv], capture_output=True, text=True, check=False, timeout=timeout
    )


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed (Debian's docker.io; `make test` installs it)"
    info = _docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip() or info.stdout.strip()}"
    return None


def start_engine(timeout_s: float = 60.0) -> str | None:
    """Start dockerd when no engine answers; return why there is none, or None."""
    if engine_problem() is None:
        return None
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (Debian's docker.io)"
    if os.geteuid() != 0:
        return "dockerd is not running, and starting it needs root"
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen(
            ["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if engine_problem() is None:
            return None
        time.sleep(0.5)
    return f"dockerd did not answer within {timeout_s:.0f} s; see {DOCKERD_LOG}"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker engine that answers; without one, a skip (a failure in CI)."""
    problem = engine_problem()
    if problem is None:
        return
    reason = f"needs a Docker engine: {problem}"
    missing(reason, f"{reason} (in CI, or with SERVELAB_REQUIRE_DOCKER=1, this is a failure)")


def volumes() -> set[str]:
    """The names of every volume, the anonymous ones that images' VOLUMEs make included."""
    return set(_docker("volume", "ls", "--quiet").stdout.split())


def lab_leftovers(volumes_before: set[str]) -> list[str]:
    """The lab's containers and network that exist now, and volumes made since."""
    found = []
    containers = _docker("ps", "-a", "--filter", f"label={LAB_LABEL}", "--format", "{{.Names}}")
    found += [f"container {name}" for name in containers.stdout.split()]
    name = f"name=^{LAB_NETWORK}$"
    networks = _docker("network", "ls", "--filter", name, "--format", "{{.Name}}")
    found += [f"network {name}" for name in networks.stdout.split()]
    found += [f"volume {name}" for name in sorted(volumes() - volumes_before)]
    return found


def main(argv: list[str]) -> int:
    if argv != ["start"]:
        print("usage: docker.py start", file=sys.stderr)
        return 2
    problem = start_engine()
    if problem:
        # Not fatal here: the tests that need the engine skip or fail with this reason.
        print(f"no Docker engine: {problem}", file=sys.stderr)
    else:
        print("Docker engine:", _docker("info", "--format", "{{.ServerVersion}}").stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
