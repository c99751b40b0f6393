"""The container_images role: the docker runtime's images, present in this machine's engine.

Build mode for real: a Debian base from debootstrap, then haproxy, prometheus,
node_exporter and refserver built from it through the host's network, each labelled
with the hash of its build context. What users rely on: every image is there with
that label, its entrypoint runs as the lab's container user, a second run changes
nothing, an image whose label no longer matches its context is rebuilt, an image build
mode cannot make (ovms) fails the play by name before anything is built, and a
missing engine is named with what to do. The images stay for the tests that run the
lab on the docker runtime; a cold build takes minutes, a warm run well under one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.roles import PROJECT, PlayResult, apply_role

ROLE = PROJECT / "roles" / "container_images"
LAB_VARS = yaml.safe_load((PROJECT / "inventory" / "group_vars" / "all.yml").read_text())
BUILT_IMAGES: dict[str, str] = LAB_VARS["servelab_built_images"]
CONTAINER_USER: str = LAB_VARS["servelab_container_user"]
BASE = "servelab/debian:bookworm"
CONTEXT_LABEL = "org.servelab.context"
BUILT = ["haproxy", "prometheus", "node_exporter", "refserver"]
# A cold build (debootstrap, apt-get in four builds, servelab[server]'s wheels) takes minutes.
COLD_TIMEOUT_S = 3600


def _docker(*argv: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *argv], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _inspect(ref: str) -> dict[str, Any] | None:
    """The image's `docker image inspect` record, or None when it is absent."""
    found = _docker("image", "inspect", ref)
    return json.loads(found.stdout)[0] if found.returncode == 0 else None


def _label(ref: str) -> str | None:
    image = _inspect(ref)
    return ((image or {}).get("Config", {}).get("Labels") or {}).get(CONTEXT_LABEL)


def _context_hash(context: Path) -> str:
    """The hash the role labels an image with: its Dockerfile's, which names everything
    else the build copies (the refserver's wheels by checksum and name)."""
    return hashlib.sha256((context / "Dockerfile").read_bytes()).hexdigest()


def _oneline(result: PlayResult) -> str:
    return " ".join(result.output.split())


def _play(directory: Path, variables: dict[str, Any], timeout_s: float = 600) -> PlayResult:
    """Apply the role with the lab's group_vars, in build mode, on a state dir of its own."""
    mode = {"servelab_docker_images": "build", "servelab_state_dir": str(directory / "state")}
    return apply_role(
        ROLE,
        {**mode, **variables},
        directory / "play.yml",
        lab_vars=True,
        timeout_s=timeout_s,
    )


@dataclass
class Built:
    directory: Path
    first: PlayResult
    second: PlayResult

    @property
    def contexts(self) -> Path:
        return self.directory / "state" / "images"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Built:
    directory = tmp_path_factory.mktemp("container_images")
    variables = {"container_images_wanted": BUILT}
    first = _play(directory, variables, timeout_s=COLD_TIMEOUT_S)
    # nothing to compare a failed first run with
    second = first if first.returncode else _play(directory, variables, timeout_s=COLD_TIMEOUT_S)
    return Built(directory, first, second)


def test_each_image_is_present_with_the_hash_of_its_context(built: Built) -> None:
    assert built.first.returncode == 0, built.first.output[-5000:]
    assert _inspect(BASE) is not None
    for name in BUILT:
        context = built.contexts / name
        dockerfile = (context / "Dockerfile").read_text()
        # only the local base, never a registry
        bases = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM ")]
        assert set(bases) <= {BASE, "python"}, (name, bases)
        assert _label(BUILT_IMAGES[name]) == _context_hash(context), name
    # the checkout's wheel is in the refserver's context, and its checksum in the
    # Dockerfile, so a changed checkout changes the label
    wheels = list((built.contexts / "refserver").glob("servelab-*.whl"))
    assert len(wheels) == 1
    dockerfile = (built.contexts / "refserver" / "Dockerfile").read_text()
    assert wheels[0].name in dockerfile
    assert hashlib.sha256(wheels[0].read_bytes()).hexdigest() in dockerfile


@pytest.mark.parametrize(
    ("name", "entrypoint", "args", "expected"),
    [
        ("haproxy", None, ["haproxy", "-v"], "HAProxy version"),
        ("prometheus", None, ["--version"], "prometheus, version"),
        # the monitoring role checks configs with the image's own promtool
        ("prometheus", "promtool", ["--version"], "promtool, version"),
        ("node_exporter", None, ["--version"], "node_exporter, version"),
        ("refserver", None, ["--help"], "--runtime"),
        # on PATH, for `servelab wait-available` as a health check
        ("refserver", "servelab", ["--help"], "wait-available"),
    ],
)
def test_each_entrypoint_runs_as_the_container_user(
    built: Built, name: str, entrypoint: str | None, args: list[str], expected: str
) -> None:
    assert built.first.returncode == 0, built.first.output[-5000:]
    argv = ["run", "--rm", "--network", "none", "--user", CONTAINER_USER]
    argv += ["--entrypoint", entrypoint] if entrypoint else []
    done = _docker(*argv, BUILT_IMAGES[name], *args)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout + done.stderr


def test_the_refserver_image_runs_as_its_own_user_by_default(built: Built) -> None:
    image = _inspect(BUILT_IMAGES["refserver"])
    assert image is not None
    assert image["Config"]["User"] == "servelab"
    assert image["Config"]["Entrypoint"] == ["/opt/servelab/bin/servelab-refserver"]


def test_a_second_run_changes_nothing(built: Built) -> None:
    assert built.second.returncode == 0, built.second.output[-5000:]
    assert built.second.changed == 0, built.second.output[-5000:]


def test_an_image_whose_label_no_longer_matches_its_context_is_rebuilt(built: Built) -> None:
    assert built.first.returncode == 0, built.first.output[-5000:]
    ref = BUILT_IMAGES["haproxy"]
    wanted = _label(ref)
    # An image of the same name from another context (another Dockerfile, another wheel).
    container = _docker("create", ref, "haproxy", "-v").stdout.strip()
    try:
        stale = _docker("commit", "--change", f"LABEL {CONTEXT_LABEL}=stale", container, ref)
        assert stale.returncode == 0, stale.stderr
    finally:
        _docker("rm", container)
    assert _label(ref) == "stale"

    again = _play(built.directory, {"container_images_wanted": ["haproxy"]})
    assert again.returncode == 0, again.output[-5000:]
    assert again.changed > 0
    assert _label(ref) == wanted


def test_an_image_build_mode_cannot_make_is_named_before_anything_is_built(
    docker_engine: None, tmp_path: Path
) -> None:
    absent = "servelab-test/absent-ovms:never"
    result = _play(
        tmp_path,
        {
            "container_images_wanted": ["haproxy", "ovms"],
            "servelab_images": {**LAB_VARS["servelab_images"], "ovms": absent},
        },
    )
    assert result.returncode != 0
    assert result.changed == 0, result.output[-5000:]
    output = _oneline(result)
    assert f"the ovms image {absent} is not present on localhost" in output
    assert "`docker load` the image on that host and name it in servelab_images.ovms" in output
    assert "servelab_docker_images=pull" in output
    assert not (tmp_path / "state" / "images").exists()


def test_an_unknown_image_name_is_rejected(tmp_path: Path) -> None:
    result = _play(tmp_path, {"container_images_wanted": ["haproxy", "nginx"]})
    assert result.returncode != 0
    output = _oneline(result)
    assert "container_images_wanted" in output and "nginx" in output
    names = "haproxy, prometheus, node_exporter, process_exporter, refserver, ovms, tfserving"
    assert names in output


def test_a_missing_engine_is_named_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed; the message for it is another")
    # The docker modules and CLI take the engine's address from DOCKER_HOST.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    result = _play(tmp_path, {"container_images_wanted": ["haproxy"]})
    assert result.returncode != 0
    output = _oneline(result)
    assert "no Docker engine runs on localhost" in output
    assert "start dockerd" in output
