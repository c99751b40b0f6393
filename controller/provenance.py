"""Where a run was measured: hosts, versions and the commit, for results.json's `run`.

The hosts and versions come from playbooks/phases/facts.yml, which writes
facts.json into the run directory; the commit from git on the controller.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def git_commit(project_dir: Path) -> str | None:
    """The checkout's commit, with `-dirty` when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(project_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(project_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


def read_facts(path: Path) -> dict[str, Any]:
    """facts.json as the facts phase wrote it: {"hosts": {...}, "versions": {...}}."""
    facts = json.loads(path.read_text())
    if not isinstance(facts.get("hosts"), dict) or not isinstance(facts.get("versions"), dict):
        raise ValueError(f"{path} lacks 'hosts' or 'versions'")
    return facts
