"""Shared fixtures: model repositories holding the tiny model.

The repositories are built once per test session in a subprocess (so the test
process itself never loads TensorFlow for them) with the real builder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.docker import docker_engine  # noqa: F401  (a fixture for every test module)

TINY_OTHER_SEED = 4242


def _build(repo: Path, *extra: str) -> Path:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [
        sys.executable,
        "-m",
        "servelab.controller",
        "models",
        "build",
        "--repo",
        str(repo),
        "--models",
        "tiny",
        *extra,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"building the tiny model failed ({result.returncode}):\n{result.stderr}")
    return repo


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with `tiny` built (SavedModel, IR, golden samples, manifest)."""
    return _build(tmp_path_factory.mktemp("tiny_repo"))


@pytest.fixture(scope="session")
def tiny_repo_other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny` with the same names and shapes but weights from another seed."""
    return _build(tmp_path_factory.mktemp("tiny_repo_other"), "--seed", str(TINY_OTHER_SEED))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow run only when asked for: `-m slow` or SERVELAB_RUN_SLOW=1."""
    if "slow" in (config.getoption("markexpr") or "") or os.environ.get("SERVELAB_RUN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or SERVELAB_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
