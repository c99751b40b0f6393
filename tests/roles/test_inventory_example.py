"""inventory/two-hosts.example.yml, copied into inventory/ as its header says, means
what it says: its settings win over inventory/group_vars/all.yml's defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.lab import PROJECT, command


def _debug(message: str) -> list[str]:
    return ["-m", "ansible.builtin.debug", "-a", f"msg={message}"]


def _resolved(inventory: Path, host: str, *names: str) -> list[object]:
    """Variables as a play on `host` sees them (debug runs on the control node)."""
    expression = "{{ [" + ", ".join(names) + "] | to_json }}"
    done = command(
        "ansible",
        "-i",
        str(inventory),
        host,
        *_debug(expression),
        extra_env={
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        },
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"][host]
    return json.loads(result["msg"])


def test_the_example_inventory_sets_what_it_says(tmp_path):
    folder = tmp_path / "inventory"
    folder.mkdir()
    (folder / "group_vars").symlink_to(PROJECT / "inventory" / "group_vars")
    inventory = folder / "mylab.yml"
    shutil.copyfile(PROJECT / "inventory" / "two-hosts.example.yml", inventory)

    listed = command("ansible-inventory", "-i", str(inventory), "--list")
    assert listed.returncode == 0, listed.stderr
    groups = json.loads(listed.stdout)
    assert groups["server_platform"]["hosts"] == ["server"]
    assert groups["client_platform"]["hosts"] == ["client1", "client2"]

    names = ("servelab_state_dir", "servelab_venv_install", "servelab_bind_address")
    server = dict(zip(names, _resolved(inventory, "server", *names), strict=True))
    assert server == {
        "servelab_state_dir": "/var/lib/servelab",
        "servelab_venv_install": True,
        "servelab_bind_address": "10.10.0.10",
    }
    client = _resolved(inventory, "client2", "servelab_state_dir", "servelab_bind_address")
    assert client == ["/var/lib/servelab", "10.10.0.12"]
    monitor = _resolved(inventory, "client2", "servelab_monitor_host", "ansible_become")
    assert monitor == ["client1", True]
