"""`servelab-load` run as a user runs it, and what refserver counted, for the pool's tests."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

# refserver runs 2 infer requests by default; the pools here keep within that.
SHORT = ("--warmup", "0.5", "--duration", "1.5", "--cooldown", "0.3")


def load_command(target: str, repo: Path, *extra: str, model: str = "tiny") -> list[str]:
    """`servelab-load` against `target`, verifying against `repo`'s golden samples."""
    return [
        sys.executable,
        "-m",
        "servelab.clients",
        "--target",
        target,
        "--model",
        model,
        "--model-repo",
        str(repo),
        *extra,
    ]


def run_load(target: str, repo: Path, *extra: str, timeout: float = 60) -> tuple[int, dict, str]:
    result = subprocess.run(
        load_command(target, repo, *extra), capture_output=True, text=True, timeout=timeout
    )
    summary = json.loads(result.stdout) if result.stdout.strip() else None
    return result.returncode, summary, result.stderr


def predict_successes(rest_url: str) -> int:
    with urllib.request.urlopen(f"{rest_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        labels_match = 'method="Predict"' in line and 'model="tiny"' in line
        if line.startswith("refserver_requests_success_total{") and labels_match:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
