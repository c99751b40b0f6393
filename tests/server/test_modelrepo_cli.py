"""`servelab models ...` from the command line: JSON for Ansible, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def servelab(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "servelab.controller", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("servelab: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["models", "build", "--models", "resnet_v9"],
            ["unknown model 'resnet_v9'", "resnet_v1_50", "tiny"],
        ),
        (
            ["models", "add", "--name", "mine", "--saved-model", "/nonexistent/sm"],
            ["/nonexistent/sm does not exist", "saved_model.pb"],
        ),
        (
            ["models", "add", "--name", "mine", "--ir", "/nonexistent/ir"],
            ["/nonexistent/ir does not exist", "model.xml"],
        ),
        (["models", "add", "--name", "tiny", "--ir", "/x"], ["'tiny' is a model servelab builds"]),
        (["models", "ceiling", "--models", "tiny"], ["has no OpenVINO IR", "models build"]),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], expected: list[str]):
    result = servelab(*args[:2], "--repo", str(tmp_path / "repo"), *args[2:])
    assert result.returncode == 2
    line = _error_line(result)
    for fragment in expected:
        assert fragment in line


def test_unwritable_repository_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = servelab("models", "build", "--repo", str(blocker / "repo"), "--models", "tiny")
    assert result.returncode == 2
    assert "is not writable" in _error_line(result)
    result = servelab("models", "build", "--repo", str(blocker), "--models", "tiny")
    assert result.returncode == 2
    assert "is a file" in _error_line(result)


def test_bad_flag_value_exits_2(tmp_path: Path) -> None:
    result = servelab(
        "models", "ceiling", "--repo", str(tmp_path), "--models", "tiny", "--batches", "0"
    )
    assert result.returncode == 2
    assert "must be >= 1" in result.stderr


def test_build_json_and_list(tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    result = servelab("models", "build", "--repo", str(repo), "--models", "tiny", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["changed"] is False
    assert document["built"] == []
    assert document["models"][0]["status"] == "unchanged"

    listing = servelab("models", "list", "--repo", str(repo), "--json")
    assert listing.returncode == 0, listing.stderr
    models = json.loads(listing.stdout)
    assert models["tiny"]["ir"] == "ov/tiny/1/model.xml"
    assert models["tiny"]["source"] == "built"
    assert models["tiny"]["size_bytes"] > 0


def test_help_is_fast_and_lists_models() -> None:
    result = servelab("models", "build", "--help")
    assert result.returncode == 0
    assert "resnet_v2_152" in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import servelab.controller.cli, sys; "
            "print('tensorflow' in sys.modules, 'openvino' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split() == ["False", "False"]
