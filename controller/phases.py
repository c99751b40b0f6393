"""The one wrapper around ansible-runner: run a phase playbook, say whether it passed."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


class PhaseFailed(RuntimeError):
    """A phase playbook that did not pass; the message carries Ansible's own words."""


@dataclass
class PhaseResult:
    playbook: str
    status: str
    rc: int
    failures: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0 and not any(self.failures.values())


def _reason(result: dict[str, Any]) -> str:
    """Ansible's message, with the last line a failed command wrote to stderr."""
    message = str(result.get("msg") or "")
    stderr = str(result.get("stderr") or "").strip()
    if stderr:
        message = f"{message}: {stderr.splitlines()[-1]}" if message else stderr.splitlines()[-1]
    return message or str(result)[:500]


def _failure_message(event: dict[str, Any]) -> str | None:
    if event.get("event") not in ("runner_on_failed", "runner_on_unreachable"):
        return None
    data = event.get("event_data", {})
    if data.get("ignore_errors"):
        return None
    result = data.get("res", {})
    # A failed loop says "One or more items failed"; its items say why.
    items = [r for r in result.get("results", []) if isinstance(r, dict) and r.get("failed")]
    text = "; ".join(_reason(r) for r in items) or _reason(result)
    return f"{data.get('host', '?')}: {data.get('task', '?')}: {text}"


def run_phase(
    playbook: str,
    extravars: dict[str, Any],
    *,
    inventory: Path,
) -> PhaseResult:
    """Run `playbook` (relative to the project) against `inventory`; PhaseFailed if it fails."""
    import ansible_runner  # the controller's dependency; imported only when a phase runs

    messages: list[str] = []

    def handle(event: dict[str, Any]) -> bool:
        message = _failure_message(event)
        if message:
            messages.append(message)
        return True

    # ansible-runner finds ansible-playbook on PATH: the one beside this Python.
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="servelab-phase-") as private:
        runner = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(PROJECT_DIR),
            playbook=playbook,
            inventory=str(inventory.resolve()),
            extravars=extravars,
            envvars={"PATH": env_path, "ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg")},
            suppress_env_files=True,
            quiet=True,
            event_handler=handle,
        )
        failures: dict[str, int] = {}
        for kind in ("failures", "dark"):
            for host, count in (runner.stats or {}).get(kind, {}).items():
                failures[host] = failures.get(host, 0) + int(count)
        result = PhaseResult(playbook, runner.status, int(runner.rc), failures, messages)
    if not result.ok:
        detail = "; ".join(messages) or f"status {result.status}, rc {result.rc}"
        raise PhaseFailed(f"{playbook} failed: {detail}")
    return result
