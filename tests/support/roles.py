"""Apply one role to this machine through ansible-playbook, as a test of that role.

    result = apply_role(ROLES / "monitoring", {"monitoring_...": ...}, tmp_path / "play.yml")
    assert result.recap["changed"] == 0

The play runs on localhost, from the checkout (its ansible.cfg) and with the test's
Python as the interpreter. With `lab_vars=False` it has an inventory of its own
(`-i localhost,`), so the lab's group_vars fill in nothing the test left out.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.lab import BIN, PROJECT, env

RECAP = re.compile(r"^localhost\s+:\s+(ok=.*)$", re.MULTILINE)


@dataclass(frozen=True)
class PlayResult:
    returncode: int
    output: str  # stdout and stderr
    recap: dict[str, int]  # the PLAY RECAP's counts: ok, changed, failed, ...

    @property
    def changed(self) -> int:
        return self.recap["changed"]


def apply_role(
    role: Path,
    variables: dict[str, Any],
    playbook: Path,
    *,
    lab_vars: bool = False,
    timeout_s: float = 600,
) -> PlayResult:
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"Apply {role.name}",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "vars": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                    },
                    "roles": [{"role": str(role), "vars": variables}],
                }
            ]
        )
    )
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            *([] if lab_vars else ["-i", "localhost,"]),
            str(playbook),
        ],
        cwd=PROJECT,
        env={**env(), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    match = RECAP.search(result.stdout)
    recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))} if match else {}
    return PlayResult(result.returncode, result.stdout + result.stderr, recap)
