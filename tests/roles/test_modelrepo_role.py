"""The model_repository role: defaults match argument specs; a second run changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "model_repository"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_model_choices_are_the_buildable_models() -> None:
    from servelab.server.modelrepo import KNOWN_MODELS

    options = _load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert options["model_repository_models"]["choices"] == list(KNOWN_MODELS)


def _play(tmp_path: Path, repo: Path) -> dict:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Model repository",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "roles": [
                        {
                            "role": str(ROLE),
                            "vars": {
                                "model_repository_path": str(repo),
                                "model_repository_models": ["tiny"],
                                "model_repository_ceiling_batches": [1],
                                "model_repository_ceiling_duration_s": 1,
                                "model_repository_venv": str(Path(sys.executable).parent.parent),
                            },
                        }
                    ],
                }
            ]
        )
    )
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local", str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout)["stats"]["localhost"]


def test_role_measures_once_and_second_run_changes_nothing(tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)

    first = _play(tmp_path, repo)
    assert first["failures"] == 0
    assert first["changed"] >= 1  # the ceiling (and the directory mode); the build is current
    assert json.loads((repo / "ceiling.json").read_text())["models"]["tiny"]["1"]

    second = _play(tmp_path, repo)
    assert second["changed"] == 0
    assert second["failures"] == 0
