"""The process_exporter role alone: Debian's process exporter as a lab process on loopback.

What users rely on: its groups name the lab's programs (a console script run by Python is
found by its command line), a second run changes nothing, changed groups restart it, a
wrong variable fails before anything starts, and stopped leaves no process and no pidfile.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.refserver import free_port
from tests.support.roles import PlayResult, apply_role

ROLE = Path(__file__).resolve().parents[2] / "roles" / "process_exporter"


def _play(directory: Path, variables: dict[str, Any], name: str = "play.yml") -> PlayResult:
    return apply_role(ROLE, variables, directory / name)


def _running(pid: int) -> bool:
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
    pool: subprocess.Popen

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "process_exporter.pid"

    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def procs(self, group: str) -> int | None:
        found = re.search(
            rf'^namedprocess_namegroup_num_procs{{groupname="{re.escape(group)}"}} (\S+)$',
            self.metrics(),
            re.MULTILINE,
        )
        return int(float(found.group(1))) if found else None


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exporter]:
    directory = tmp_path_factory.mktemp("process_exporter")
    state = directory / "state"
    port = free_port()
    # a stand-in for the pool's console script: Python running a file named servelab-load
    script = directory / "bin" / "servelab-load"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(600)\n")
    pool = subprocess.Popen([sys.executable, str(script), "--concurrency", "1"])
    variables = {
        "servelab_state_dir": str(state),
        "servelab_bind_address": "127.0.0.1",
        "servelab_process_exporter_port": port,
    }
    first = _play(directory, variables)
    try:
        yield Exporter(directory, state / "monitoring", port, variables, first, pool)
    finally:
        pool.kill()
        pool.wait()
        pidfile = state / "monitoring" / "process_exporter.pid"
        if pidfile.exists():
            stop = ["start-stop-daemon", "--stop", "--pidfile", str(pidfile), "--name"]
            stop += ["prometheus-proc", "--retry", "TERM/20/KILL/5", "--remove-pidfile"]
            subprocess.run(stop, capture_output=True, check=False)


def test_its_groups_name_the_lab_programs(exporter: Exporter) -> None:
    assert exporter.first.returncode == 0, exporter.first.output[-5000:]
    assert exporter.first.changed > 0
    assert _running(exporter.pid())
    # other labs on this machine may run pools too: at least the stand-in
    assert exporter.procs("servelab-load") >= 1
    assert exporter.procs("process_exporter") >= 1, "it sees itself"
    # the group's pattern takes the stand-in's command line, as the exporter joins it
    config = yaml.safe_load((exporter.state_dir / "process_exporter.yml").read_text())
    (pool,) = [g for g in config["process_names"] if g["name"] == "servelab-load"]
    cmdline = Path(f"/proc/{exporter.pool.pid}/cmdline").read_bytes().rstrip(b"\0")
    assert re.search(pool["cmdline"][0], cmdline.replace(b"\0", b" ").decode())
    metrics = exporter.metrics()
    assert 'namedprocess_namegroup_cpu_seconds_total{groupname="servelab-load",mode="user"}' in (
        metrics
    )
    assert 'namedprocess_namegroup_memory_bytes{groupname="servelab-load",memtype="resident"}' in (
        metrics
    )
    assert "namedprocess_namegroup_thread_cpu_seconds_total" not in metrics, "-threads=false"


def test_a_second_run_changes_nothing(exporter: Exporter) -> None:
    pid = exporter.pid()
    second = _play(exporter.directory, exporter.variables, "second.yml")
    assert second.returncode == 0 and second.changed == 0, second.output[-5000:]
    assert exporter.pid() == pid


def test_changed_groups_restart_it(exporter: Exporter) -> None:
    pid = exporter.pid()
    # this test's own stand-in alone, by its directory
    groups = [{"name": "pool", "cmdline": [re.escape(str(exporter.directory / "bin"))]}]
    variables = {**exporter.variables, "process_exporter_groups": groups}
    changed = _play(exporter.directory, variables, "changed.yml")
    assert changed.returncode == 0, changed.output[-5000:]
    assert exporter.pid() != pid and not _running(pid)
    deadline = time.monotonic() + 10
    while exporter.procs("pool") is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert exporter.procs("pool") == 1
    assert exporter.procs("servelab-load") is None


@pytest.mark.parametrize(
    ("wrong", "named"),
    [
        ({"process_exporter_port": 70000}, "process_exporter_port"),
        ({"process_exporter_groups": [{"name": "nothing"}]}, "process_exporter_groups"),
        ({"process_exporter_state": "running"}, "process_exporter_state"),
    ],
    ids=["port", "group", "state"],
)
def test_a_wrong_variable_fails_before_anything_starts(
    tmp_path: Path, wrong: dict[str, Any], named: str
) -> None:
    state = tmp_path / "state"
    variables = {"servelab_state_dir": str(state), "servelab_bind_address": "127.0.0.1"}
    play = _play(tmp_path, {**variables, "servelab_process_exporter_port": free_port(), **wrong})
    assert play.returncode != 0
    assert play.recap["failed"] == 1 and play.recap["changed"] == 0, play.output[-3000:]
    assert named in play.output[play.output.index("[ERROR]") :]
    assert not state.exists()


def test_stopped_leaves_no_process(exporter: Exporter) -> None:
    pid = exporter.pid()
    variables = {**exporter.variables, "process_exporter_state": "stopped"}
    stopped = _play(exporter.directory, variables, "stopped.yml")
    assert stopped.returncode == 0 and stopped.changed == 1, stopped.output[-5000:]
    assert not _running(pid) and not exporter.pidfile.exists()
    again = _play(exporter.directory, variables, "stopped.yml")
    assert again.returncode == 0 and again.changed == 0, again.output[-5000:]
