"""The lab_daemon module, called directly: a real process under start-stop-daemon.

The daemon is a small Python program that logs a line and sleeps, or serves HTTP on
a free port. What the daemon roles rely on: a start makes a pidfile and a log, a
second call changes nothing, a new command line restarts it, a port another process
holds fails by name before a start, a daemon that dies at its start fails with the
end of its log, and stopped leaves no process and no pidfile.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.affinity import some_cpu, thread_cpus
from tests.support.refserver import free_port

MODULE = Path(__file__).resolve().parents[2] / "roles" / "lab_daemon" / "library" / "lab_daemon.py"
_spec = importlib.util.spec_from_file_location("lab_daemon", MODULE)
assert _spec and _spec.loader
lab_daemon = importlib.util.module_from_spec(_spec)
sys.modules["lab_daemon"] = lab_daemon  # dataclasses look their module up by name
_spec.loader.exec_module(lab_daemon)

SERVE = (
    "import http.server, sys; print('serving', flush=True); "
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), "
    "http.server.SimpleHTTPRequestHandler).serve_forever()"
)
DIE = "import sys; print('no such model: resnet', flush=True); sys.exit(3)"


def _daemon(tmp_path: Path, *args: str) -> lab_daemon.Daemon:
    return lab_daemon.Daemon(
        name="the test daemon",
        executable=sys.executable,
        args=list(args),
        pidfile=str(tmp_path / "test.pid"),
        log=str(tmp_path / "test.log"),
        stop_retry="TERM/10/KILL/5",
    )


def _pid(daemon: lab_daemon.Daemon) -> int:
    return int(Path(daemon.pidfile).read_text())


def _running(pid: int) -> bool:
    """Whether the process runs (a zombie whose parent has not reaped it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def served(tmp_path: Path, port: int) -> Iterator[lab_daemon.Daemon]:
    daemon = _daemon(tmp_path, "-c", SERVE, str(port))
    yield daemon
    lab_daemon.converge(daemon, "stopped")


def test_start_verify_again_and_stop(served: lab_daemon.Daemon, port: int, tmp_path: Path):
    cmdline = str(tmp_path / "test.cmdline")
    first = lab_daemon.converge(served, "started", cmdline)
    assert first.started and first.changed
    url = f"http://127.0.0.1:{port}/"
    lab_daemon.wait_ready(
        served, url=url, waiting_statuses=[-1], command=None, ready_what="ready",
        timeout_s=10, context="",
    )  # fmt: skip
    pid = _pid(served)
    assert _running(pid)
    assert Path(cmdline).read_text() == f"{sys.executable}\n-c\n{SERVE}\n{port}\n"

    again = lab_daemon.converge(served, "started", cmdline)
    assert not again.changed and _pid(served) == pid

    stopped = lab_daemon.converge(served, "stopped")
    assert stopped.stopped and stopped.changed
    assert not _running(pid)
    assert not Path(served.pidfile).exists()
    assert not lab_daemon.converge(served, "stopped").changed


def test_a_new_command_line_restarts_the_daemon(served: lab_daemon.Daemon, tmp_path: Path):
    cmdline = str(tmp_path / "test.cmdline")
    lab_daemon.converge(served, "started", cmdline)
    pid = _pid(served)
    other = free_port()
    served.args[-1] = str(other)
    restarted = lab_daemon.converge(served, "started", cmdline)
    assert restarted.stopped and restarted.started
    assert _pid(served) != pid and not _running(pid)
    lab_daemon.wait_ready(
        served, url=f"http://127.0.0.1:{other}/", waiting_statuses=[-1], command=None,
        ready_what="ready", timeout_s=10, context="",
    )  # fmt: skip


def test_a_port_in_use_fails_before_the_start(served: lab_daemon.Daemon, port: int):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(lab_daemon.NotReady) as failure:
            lab_daemon.converge(
                served,
                "started",
                before_start=lambda: lab_daemon.check_free(
                    "127.0.0.1", [{"name": "web", "port": port}], "give it a free port"
                ),
            )
    assert str(failure.value) == (
        f"port {port} (web) on 127.0.0.1 is in use by another process; give it a free port"
    )
    assert not Path(served.pidfile).exists()


def test_a_daemon_that_dies_fails_with_the_end_of_its_log(tmp_path: Path, port: int):
    daemon = _daemon(tmp_path, "-c", DIE)
    lab_daemon.converge(daemon, "started")
    with pytest.raises(lab_daemon.NotReady) as failure:
        lab_daemon.wait_ready(
            daemon, url=f"http://127.0.0.1:{port}/", waiting_statuses=[-1], command=None,
            ready_what="ready", timeout_s=30, context="test_port 1",
        )  # fmt: skip
    message = str(failure.value)
    assert message.startswith("the test daemon is not running (test_port 1); the end of ")
    assert daemon.log in message and "no such model: resnet" in message


def test_a_ready_command_that_fails_names_what_was_awaited(served: lab_daemon.Daemon):
    lab_daemon.converge(served, "started")
    with pytest.raises(lab_daemon.NotReady) as failure:
        lab_daemon.wait_ready(
            served, url=None, waiting_statuses=[-1],
            command=[sys.executable, "-c", "import sys; sys.exit('model tiny: LOADING')"],
            ready_what="AVAILABLE", timeout_s=5, context="",
        )  # fmt: skip
    assert str(failure.value).startswith("the test daemon did not become AVAILABLE: model tiny")


THREADS = (
    "import threading, time; print('threads', flush=True); "
    "[threading.Thread(target=time.sleep, args=(60,), daemon=True).start() for _ in range(3)]; "
    "time.sleep(60)"
)


def test_a_pinned_daemon_and_every_thread_of_it_run_inside_its_cpus(tmp_path: Path):
    cpu = some_cpu()
    daemon = _daemon(tmp_path, "-c", THREADS)
    daemon.cpus = str(cpu)
    cmdline = str(tmp_path / "test.cmdline")
    try:
        lab_daemon.converge(daemon, "started", cmdline)
        pid = _pid(daemon)
        deadline = time.monotonic() + 10
        while len(thread_cpus(pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        allowed = thread_cpus(pid)
        assert len(allowed) == 4, f"the daemon's main thread and its 3 threads: {allowed}"
        assert set(allowed.values()) == {frozenset({cpu})}
        assert Path(cmdline).read_text().startswith(f"cpus={cpu}\n{sys.executable}\n")
        # other CPUs restart it, as other arguments do
        daemon.cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
        restarted = lab_daemon.converge(daemon, "started", cmdline)
        assert restarted.stopped and restarted.started
        assert set(thread_cpus(_pid(daemon)).values()) == {frozenset(os.sched_getaffinity(0))}
    finally:
        lab_daemon.converge(daemon, "stopped")
