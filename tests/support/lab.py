"""Run the lab's playbooks on this machine, as a user would, and read what they say.

    run = playbook("lab.yml", state, results, "-e", "servelab_runtime=docker")
    assert run.returncode == 0 and all(c["changed"] == 0 for c in recap(run.stdout).values())

Every run gets its own state and results directories, the checkout's ansible.cfg and
inventory, and a quick model repository ceiling.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
SMOKE = PROJECT / "plans" / "smoke.yml"


def env() -> dict[str, str]:
    """This environment with the test's venv first on PATH (ansible-playbook's siblings)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def command(
    name: str,
    *args: str,
    timeout_s: float = 1800,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """One of the venv's commands (ansible-playbook, servelab), from the checkout."""
    return subprocess.run(
        [str(BIN / name), *args],
        cwd=PROJECT,
        env={**env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
    )


def playbook(
    name: str,
    state: Path | None,
    results: Path,
    *extra: str,
    plan: Path | None = SMOKE,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook on this checkout; plan None leaves the plan to the inventory, state
    None the state directory to the lab's default."""
    plan_vars = ["-e", f"servelab_plan_file={plan}"] if plan else []
    state_vars = ["-e", f"servelab_state_dir={state}"] if state else []
    return command(
        "ansible-playbook",
        name,
        *plan_vars,
        *state_vars,
        "-e",
        f"servelab_results_dir={results}",
        "-e",
        '{"model_repository_ceiling_duration_s": 2}',
        *extra,
        extra_env=extra_env,
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP's counts per host: {"server": {"ok": 12, "changed": 0, ...}}."""
    counts = {}
    for host, line in re.findall(r"^(\w+)\s+:\s+(ok=.*)$", output, flags=re.M):
        counts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    return counts
