"""The model_server role's preflight of OVMS on a GPU: without the host's /dev/dri it fails
at once and says what to do, before any image is looked for or any container made."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.roles import apply_role

ROLE = Path(__file__).resolve().parents[2] / "roles" / "model_server"


@pytest.mark.parametrize("device", ["GPU", "HETERO:GPU,CPU"])
def test_a_gpu_device_fails_preflight_on_a_host_without_dev_dri(tmp_path: Path, device: str):
    if Path("/dev/dri").exists():
        pytest.skip("this host has /dev/dri: the failure cannot be seen here")
    variables = {
        "servelab_state_dir": str(tmp_path / "state"),
        "model_server_kind": "ovms",
        "model_server_runtime": "docker",
        "model_server_state": "started",
        "model_server_target_device": device,
    }
    play = apply_role(ROLE, variables, tmp_path / "play.yml", lab_vars=True)
    assert play.returncode != 0
    assert play.recap["failed"] == 1 and play.recap["changed"] == 0, play.output[-3000:]
    message = " ".join(play.output[play.output.index("[ERROR]") :].split())
    assert f"model_server_target_device {device} needs an Intel GPU" in message
    assert "/dev/dri/renderD* device" in message
    assert not (tmp_path / "state").exists(), "nothing was made"
