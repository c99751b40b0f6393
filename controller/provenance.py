"""Where a run was measured: hosts, versions and the commit, for results.json's `run`.

The hosts and versions come from playbooks/phases/facts.yml, which writes
facts.json into the run directory; the commit from git on the controller. Each
host's tuning arrives as the raw lines of its /sys and /proc files ("unknown" where
the host has none); `host_tuning` turns them into the host's `fingerprint`, which
controller/fingerprint.py compares between runs.
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


UNKNOWN = "unknown"


def _bracketed(line: str) -> str:
    """The chosen word of a sysfs choice line: "always [madvise] never" -> "madvise"."""
    if "[" in line and "]" in line:
        return line.split("[", 1)[1].split("]", 1)[0]
    return line


def _count_of_list(ranges: str) -> str:
    """How many ids a kernel id list holds: "0-1,4" -> "3"."""
    try:
        total = 0
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            total += int(high or low) - int(low) + 1
    except ValueError:
        return UNKNOWN
    return str(total)


def host_tuning(raw: dict[str, str]) -> dict[str, str]:
    """A host's fingerprint from facts.yml's raw reads; every value a string, "unknown" if unread.

    boost: on or off, from cpufreq's `boost` (acpi-cpufreq, amd) or intel_pstate's
    `no_turbo` (inverted); smt: the kernel's SMT control (on, off, forceoff,
    notsupported); thp: the transparent huge pages mode and its defrag mode.
    """

    def value(key: str) -> str:
        return (raw.get(key) or UNKNOWN).strip() or UNKNOWN

    boost = value("boost")
    no_turbo = value("intel_no_turbo")
    if boost in ("0", "1"):
        boost = "on" if boost == "1" else "off"
    elif no_turbo in ("0", "1"):
        boost = "off" if no_turbo == "1" else "on"
    else:
        boost = UNKNOWN
    smt = value("smt_control")
    if smt == UNKNOWN and value("smt_active") in ("0", "1"):
        smt = "on" if value("smt_active") == "1" else "off"
    microcode = value("microcode")
    if microcode == UNKNOWN:
        microcode = value("cpuinfo_microcode")
    numa = value("numa_online")
    return {
        "governor": value("governor"),
        "scaling_driver": value("scaling_driver"),
        "boost": boost,
        "smt": smt,
        "thp": _bracketed(value("thp_enabled")),
        "thp_defrag": _bracketed(value("thp_defrag")),
        "numa_nodes": UNKNOWN if numa == UNKNOWN else _count_of_list(numa),
        "microcode": microcode,
        "cmdline": value("cmdline"),
    }


def read_facts(path: Path) -> dict[str, Any]:
    """facts.json as the facts phase wrote it: {"hosts": {...}, "versions": {...}}.

    Each host's raw `tuning` becomes its `fingerprint` (host_tuning).
    """
    facts = json.loads(path.read_text())
    if not isinstance(facts.get("hosts"), dict) or not isinstance(facts.get("versions"), dict):
        raise ValueError(f"{path} lacks 'hosts' or 'versions'")
    for entries in facts["hosts"].values():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and isinstance(entry.get("tuning"), dict):
                entry["fingerprint"] = host_tuning(entry.pop("tuning"))
    return facts
