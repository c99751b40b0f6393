"""The model_server role through phases/serve.yml: a server that cannot start fails fast."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.lab import PROJECT, command
from tests.support.refserver import free_port


def _serve(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    ports = {
        kind: {"grpc": free_port(), "rest": free_port()}
        for kind in ("ovms", "tfserving", "ref-openvino", "ref-tensorflow")
    }
    extra_vars = {
        "servelab_plan_file": str(PROJECT / "plans" / "smoke.yml"),
        "servelab_state_dir": str(state),
        "servelab_server_ports": ports,
        "servelab_serve_kind": "ref-openvino",
    }
    return command(
        "ansible-playbook",
        "playbooks/phases/serve.yml",
        "-e",
        json.dumps(extra_vars),
        *extra,
        timeout_s=600,
    )


def test_a_server_that_dies_at_start_fails_the_play_at_once(tiny_repo: Path, tmp_path: Path):
    state = tmp_path / "state"
    shutil.copytree(tiny_repo, state / "models")
    bad = json.dumps({"model_server_plugin_config": {"NO_SUCH_OPENVINO_PROPERTY": 1}})
    started = time.monotonic()
    result = _serve(state, "-e", bad)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "did not become AVAILABLE" in result.stdout
    assert "is not running" in result.stdout
    assert str(state / "model_server" / "ref-openvino.log") in result.stdout
    # the role noticed the dead process; it did not sit out model_server_start_timeout_s
    assert elapsed < 120
    log = (state / "model_server" / "ref-openvino.log").read_text()
    assert "NO_SUCH_OPENVINO_PROPERTY" in log
