"""The node_exporter role alone: Debian's node exporter as a lab process on loopback.

What users rely on: it answers on /metrics with the loopback device counted, a
second run changes nothing, a changed command line restarts it, a wrong variable
fails before anything starts, and stopped leaves no process and no pidfile.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.refserver import free_port
from tests.support.roles import PlayResult, apply_role

ROLE = Path(__file__).resolve().parents[2] / "roles" / "node_exporter"


def _play(directory: Path, variables: dict[str, Any], name: str = "play.yml") -> PlayResult:
    return apply_role(ROLE, variables, directory / name)


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie whose parent has not reaped it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@dataclass
class Exporter:
    directory: Path
    state_dir: Path
    port: int
    variables: dict[str, Any]
    first: PlayResult

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "node_exporter.pid"

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    directory = tmp_path_factory.mktemp("node_exporter")
    state = directory / "state"
    port = free_port()
    variables = {
        "servelab_state_dir": str(state),
        "servelab_bind_address": "127.0.0.1",
        "servelab_node_exporter_port": port,
    }
    first = _play(directory, variables)
    try:
        yield Exporter(directory, state / "monitoring", port, variables, first)
    finally:
        pidfile = state / "monitoring" / "node_exporter.pid"
        if pidfile.exists():
            stop = ["start-stop-daemon", "--stop", "--pidfile", str(pidfile), "--name"]
            stop += ["prometheus-node", "--retry", "TERM/20/KILL/5", "--remove-pidfile"]
            subprocess.run(stop, capture_output=True, check=False)


def test_it_answers_with_the_loopback_device(exporter: Exporter) -> None:
    assert exporter.first.returncode == 0, exporter.first.output[-5000:]
    assert exporter.first.changed > 0
    assert _running(exporter.pid())
    metrics = exporter.metrics()
    assert 'node_network_receive_bytes_total{device="lo"}' in metrics
    assert "node_systemd_" not in metrics  # Debian's default collector, switched off
    assert (exporter.state_dir / "textfile").is_dir()


def test_a_second_run_changes_nothing(exporter: Exporter) -> None:
    pid = exporter.pid()
    second = _play(exporter.directory, exporter.variables, "second.yml")
    assert second.returncode == 0 and second.changed == 0, second.output[-5000:]
    assert exporter.pid() == pid


def test_a_changed_command_line_restarts_it(exporter: Exporter) -> None:
    pid = exporter.pid()
    variables = {**exporter.variables, "node_exporter_disabled_collectors": ["systemd", "arp"]}
    changed = _play(exporter.directory, variables, "changed.yml")
    assert changed.returncode == 0, changed.output[-5000:]
    assert exporter.pid() != pid and not _running(pid)
    assert "node_arp_entries" not in exporter.metrics()
    cmdline = (exporter.state_dir / "node_exporter.cmdline").read_text().splitlines()
    assert cmdline[-2:] == ["--no-collector.systemd", "--no-collector.arp"]


@pytest.mark.parametrize(
    ("wrong", "named"),
    [
        ({"node_exporter_port": 70000}, "node_exporter_port"),
        ({"node_exporter_disabled_collectors": ["no such"]}, "node_exporter_disabled_collectors"),
        ({"node_exporter_state": "running"}, "node_exporter_state"),
    ],
    ids=["port", "collector", "state"],
)
def test_a_wrong_variable_fails_before_anything_starts(
    tmp_path: Path, wrong: dict[str, Any], named: str
) -> None:
    state = tmp_path / "state"
    variables = {"servelab_state_dir": str(state), "servelab_bind_address": "127.0.0.1"}
    play = _play(tmp_path, {**variables, "servelab_node_exporter_port": free_port(), **wrong})
    assert play.returncode != 0
    assert play.recap["failed"] == 1 and play.recap["changed"] == 0, play.output[-3000:]
    assert named in play.output[play.output.index("[ERROR]") :]
    assert not state.exists()


def test_stopped_leaves_no_process(exporter: Exporter) -> None:
    pid = exporter.pid()
    variables = {**exporter.variables, "node_exporter_state": "stopped"}
    stopped = _play(exporter.directory, variables, "stopped.yml")
    assert stopped.returncode == 0 and stopped.changed == 1, stopped.output[-5000:]
    assert not _running(pid) and not exporter.pidfile.exists()
    again = _play(exporter.directory, variables, "stopped.yml")
    assert again.returncode == 0 and again.changed == 0, again.output[-5000:]
