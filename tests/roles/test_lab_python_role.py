"""The lab_python role: servelab into a venv from wheels the controller fetched.

The whole path (wheelhouse, copy, pip --no-index) runs over SSH in
tests/test_multihost.py; here the light venv on this machine, its second run, and
the preflight that refuses a host whose Python cannot use the controller's wheels.
"""

from __future__ import annotations

import subprocess

from tests.support.roles import PROJECT, apply_role

ROLE = PROJECT / "roles" / "lab_python"


def test_a_light_venv_runs_the_pool_and_a_second_run_changes_nothing(tmp_path):
    venv = tmp_path / "pool" / "venv"
    variables = {
        "lab_python_venv": str(venv),
        "lab_python_source": str(PROJECT),
        "servelab_project_dir": str(PROJECT),
        "servelab_venv": str(venv),
    }
    first = apply_role(ROLE, variables, tmp_path / "play.yml")
    assert first.returncode == 0, first.output[-4000:]
    assert first.changed > 0
    # the pool runs from it, and no TensorFlow came with it
    done = subprocess.run(
        [str(venv / "bin" / "servelab-load"), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--concurrency" in done.stdout, done.stderr
    assert not list((venv / "lib").glob("python3*/site-packages/tensorflow"))
    assert (tmp_path / "pool" / "dist" / "wheelhouse").is_dir()

    second = apply_role(ROLE, variables, tmp_path / "play.yml")
    assert second.returncode == 0, second.output[-4000:]
    assert second.changed == 0, second.output[-4000:]


def test_a_host_python_that_cannot_use_the_wheels_is_named(tmp_path):
    result = apply_role(
        ROLE,
        {
            "lab_python_venv": str(tmp_path / "venv"),
            "lab_python_interpreter": "/nonexistent/python3",
            "lab_python_source": str(PROJECT),
            "servelab_project_dir": str(PROJECT),
            "servelab_venv": str(tmp_path / "venv"),
        },
        tmp_path / "play.yml",
    )
    assert result.returncode != 0
    output = " ".join(result.output.split())
    assert "lab_python_interpreter /nonexistent/python3 on localhost is not runnable" in output
    assert "give the host the same Python minor version and machine" in output
    assert not (tmp_path / "venv").exists()
