#!/usr/bin/python
"""lab_daemon: one lab daemon to its state, and "started" verified, in one task.

The lab runs HAProxy, Prometheus, the node exporter and the native model servers as
lab processes under start-stop-daemon (pidfile and log in the lab's state directory,
never the system's services). Their start, status and stop, and the "wait until it
answers, still alive?, show the end of its log, fail" that follows a start, live
here once; the roles only say which daemon, with what arguments, ready how.

With runtime=container the container itself is the caller's (docker_container);
this module then only verifies it: alive is `docker top`, its log `docker logs`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: lab_daemon
short_description: Start, stop and verify a lab daemon under start-stop-daemon
description:
  - Brings one lab process to I(state) with start-stop-daemon, a pidfile and a log,
    restarts it when its recorded command line changed or I(restart) is true, and
    verifies a start by I(ready_url) or I(ready_command), failing with the end of
    the daemon's log when it died or did not answer.
options:
  name: {description: The daemon as messages name it, type: str, required: true}
  state: {description: started or stopped, type: str, default: started, choices: [started, stopped]}
  runtime: {description: process (start-stop-daemon) or container (verify only), type: str,
            default: process, choices: [process, container]}
  executable: {description: The program, type: path}
  args: {description: Its arguments, type: list, elements: str, default: []}
  pidfile: {description: The pidfile start-stop-daemon makes and checks, type: path}
  log: {description: stdout and stderr of the daemon, type: path}
  process_name: {description: Match the process by this name (15 characters) beside the pidfile,
                 type: str}
  match_executable: {description: Match the process by its executable when no process_name,
                     type: bool, default: true}
  lock: {description: A file that serializes starts of this daemon (flock), type: path}
  cmdline_file: {description: Where the command line is kept; a change restarts the daemon,
                 type: path}
  restart: {description: Restart a running daemon, type: bool, default: false}
  environment: {description: Extra environment of the daemon, type: dict, default: {}}
  notify_timeout_s: {description: Wait for sd_notify readiness this long (0 - no), type: int,
                     default: 0}
  stop_retry: {description: start-stop-daemon's --retry schedule, type: str,
               default: TERM/30/KILL/5}
  container: {description: The container's name (runtime container), type: str}
  ready_url: {description: Verified when this URL answers 200, type: str}
  waiting_statuses: {description: HTTP statuses that mean "not yet" (-1 - nothing listens),
                     type: list, elements: int, default: [-1]}
  ready_command: {description: Verified when this command exits 0, type: list, elements: str}
  ready_what: {description: What the command waits for, in its failure message, type: str,
               default: ready}
  timeout_s: {description: How long the daemon may take to be ready, type: int, default: 30}
  context: {description: The settings behind the daemon, for failure messages, type: str,
            default: ""}
  bind_address: {description: Where free_ports and ready_ports are, type: str, default: 127.0.0.1}
  free_ports: {description: "Ports ({name, port}) nothing else may hold before a start",
               type: list, elements: dict, default: []}
  ports_hint: {description: What to do about a port in use, in its failure message, type: str,
               default: ""}
  ready_ports: {description: Verified when each of these ports accepts connections, type: list,
                elements: int, default: []}
  ready_contains: {description: Texts the answer of ready_url must hold, type: list, elements: str,
                   default: []}
  directories: {description: Directories the daemon needs (made 0755 when missing), type: list,
                elements: path, default: []}
  cpus: {description: "The CPUs (a cpuset, 0-3,8) the process starts on, through taskset, so that
         its threads and children inherit them; empty - unpinned", type: str, default: ""}
"""

POLL_S = 0.25
RECHECK_S = 0.5
TAIL_LINES = 8
# start-stop-daemon --status: 0 running; 1 dead, pidfile left; 3 not running; 4 unknown.
RUNNING, DEAD, NOT_RUNNING, UNKNOWN = 0, 1, 3, 4


@dataclass
class Daemon:
    name: str
    runtime: str = "process"
    executable: str = ""
    args: list[str] = field(default_factory=list)
    pidfile: str = ""
    log: str = ""
    process_name: str | None = None
    match_executable: bool = True
    lock: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    notify_timeout_s: int = 0
    stop_retry: str = "TERM/30/KILL/5"
    container: str | None = None
    cpus: str = ""  # a cpuset; empty: wherever the scheduler likes

    def match_argv(self) -> list[str]:
        """How start-stop-daemon tells this daemon from a stale pidfile's other program."""
        if self.process_name:
            return ["--name", self.process_name]
        return ["--exec", self.executable] if self.match_executable else []

    def status_argv(self) -> list[str]:
        return ["start-stop-daemon", "--status", "--pidfile", self.pidfile, *self.match_argv()]

    def stop_argv(self) -> list[str]:
        return [
            "start-stop-daemon", "--stop", "--pidfile", self.pidfile, *self.match_argv(),
            "--retry", self.stop_retry, "--remove-pidfile",
        ]  # fmt: skip

    def start_argv(self) -> list[str]:
        program = (
            ["--exec", self.executable]
            if not self.process_name and self.match_executable
            else ["--startas", self.executable]
        )
        name = ["--name", self.process_name] if self.process_name else []
        notify = (
            ["--notify-await", "--notify-timeout", str(self.notify_timeout_s)]
            if self.notify_timeout_s > 0
            else []
        )
        lock = ["flock", self.lock] if self.lock else []
        # The affinity is set before start-stop-daemon forks: its child, the daemon's
        # exec and every thread it makes inherit it.
        pinned = ["taskset", "--cpu-list", self.cpus] if self.cpus else []
        return [
            *lock, *pinned, "start-stop-daemon", "--start", "--background", "--make-pidfile",
            "--pidfile", self.pidfile, *name, *program, "--output", self.log, *notify,
            "--", *self.args,
        ]  # fmt: skip

    def cmdline(self) -> str:
        """The command line as kept in cmdline_file, one argument a line; new CPUs restart
        the daemon as new arguments do."""
        pinned = [f"cpus={self.cpus}"] if self.cpus else []
        return "\n".join([*pinned, self.executable, *self.args]) + "\n"

    def alive_argv(self) -> list[str]:
        if self.runtime == "container":
            return ["docker", "top", str(self.container)]
        return self.status_argv()

    def tail_argv(self) -> list[str]:
        if self.runtime == "container":
            return ["docker", "logs", "--tail", str(TAIL_LINES), str(self.container)]
        return ["tail", "-n", str(TAIL_LINES), self.log]

    def log_name(self) -> str:
        return f"`docker logs {self.container}`" if self.runtime == "container" else self.log


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env} if env else None,
    )


def http_get(url: str) -> tuple[int, str]:
    """The status the URL answers with (-1 when nothing answers) and the body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (OSError, ValueError):
        return -1, ""


def accepts(host: str, port: int) -> bool:
    """Whether something listens on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def check_free(host: str, ports: list[dict], hint: str) -> None:
    """NotReady naming the first port another process holds."""
    for entry in ports:
        if accepts(host, int(entry["port"])):
            raise NotReady(
                f"port {entry['port']} ({entry['name']}) on {host} is in use by another process"
                + (f"; {hint}" if hint else "")
            )


class NotReady(Exception):
    """The daemon died or did not answer; the message says which, with its log's end."""


def _tail(daemon: Daemon) -> str:
    result = run(daemon.tail_argv())
    return " | ".join((result.stdout + result.stderr).splitlines())


def _fail(daemon: Daemon, what: str, context: str) -> NotReady:
    where = f" ({context})" if context else ""
    return NotReady(f"{daemon.name} {what}{where}; the end of {daemon.log_name()}: {_tail(daemon)}")


def _alive(daemon: Daemon) -> bool:
    """Whether it runs. A process just started may still be start-stop-daemon's fork,
    before its exec, and not match yet: "not running" needs a second look."""
    for attempt in range(2):
        if run(daemon.alive_argv()).returncode == 0:
            return True
        if attempt == 0:
            time.sleep(RECHECK_S)
    return False


def wait_ready(
    daemon: Daemon,
    *,
    url: str | None,
    waiting_statuses: list[int],
    command: list[str] | None,
    ready_what: str,
    timeout_s: int,
    context: str,
    host: str = "127.0.0.1",
    ports: tuple[int, ...] = (),
    contains: tuple[str, ...] = (),
) -> None:
    """Return once the daemon answers as asked and still runs; NotReady otherwise."""
    deadline = time.monotonic() + timeout_s
    for port in ports:
        while not accepts(host, port):
            if not _alive(daemon):
                raise _fail(daemon, "is not running", context)
            if time.monotonic() > deadline:
                raise _fail(daemon, f"does not accept connections on {host}:{port}", context)
            time.sleep(POLL_S)
    if command:
        result = run(command, daemon.environment)
        if result.returncode != 0:
            raise _fail(daemon, f"did not become {ready_what}: {result.stderr.strip()}", context)
    status, missing = 200, []
    if url:
        while True:
            status, body = http_get(url)
            missing = [text for text in contains if text not in body]
            answered = status not in waiting_statuses and not (status == 200 and missing)
            if answered or time.monotonic() > deadline:
                break
            if not _alive(daemon):
                raise _fail(daemon, "is not running", context)
            time.sleep(POLL_S)
    # Another program may answer on the port while ours died at its bind.
    if not _alive(daemon):
        raise _fail(daemon, "is not running", context)
    if status in waiting_statuses:
        raise _fail(daemon, f"did not answer on {url} within {timeout_s} s", context)
    if status != 200:
        raise _fail(daemon, f"answered {status} on {url}", context)
    if missing:
        raise _fail(daemon, f"answered on {url} without {', '.join(missing)}", context)


@dataclass
class Outcome:
    changed: bool = False
    started: bool = False
    stopped: bool = False
    running: bool = False


def _pid_of(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="utf-8") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _exited(pid: int) -> bool:
    """Gone, or a zombie: its ports and files are released."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _await_exit(daemon: Daemon, pid: int, timeout_s: float = 10.0) -> None:
    # start-stop-daemon stops waiting once the process no longer matches its executable,
    # which happens while the kernel still tears the process down (its /proc/<pid>/exe is
    # gone before its sockets are): a start right after would find the ports taken.
    deadline = time.monotonic() + timeout_s
    while not _exited(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{daemon.name} (pid {pid}) had not exited {timeout_s} s after its stop"
            )
        time.sleep(0.02)


def converge(
    daemon: Daemon,
    state: str,
    cmdline_file: str | None = None,
    restart: bool = False,
    before_start: Callable[[], None] = lambda: None,
    context: str = "",
    directories: tuple[str, ...] = (),
) -> Outcome:
    """Bring a process daemon to `state`: stop, start or restart it as needed."""
    outcome = Outcome()
    status = run(daemon.status_argv()).returncode
    if status == DEAD:  # or just started, still start-stop-daemon's fork before its exec
        time.sleep(RECHECK_S)
        status = run(daemon.status_argv()).returncode
    if status not in (RUNNING, DEAD, NOT_RUNNING, UNKNOWN):
        raise RuntimeError(f"start-stop-daemon --status of {daemon.name} exited {status}")
    if state == "started":
        for directory in directories:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o755)
                outcome.changed = True
    if state == "started" and cmdline_file and _read(cmdline_file) != daemon.cmdline():
        with open(cmdline_file, "w", encoding="utf-8") as handle:
            handle.write(daemon.cmdline())
        outcome.changed = restart = True
    if status == RUNNING and (state == "stopped" or restart):
        pid = _pid_of(daemon.pidfile)
        stop = run(daemon.stop_argv())
        if stop.returncode not in (0, 1):
            raise RuntimeError(f"stopping {daemon.name} failed: {stop.stderr.strip()}")
        outcome.stopped = outcome.changed = stop.returncode == 0
        if outcome.stopped and pid is not None:
            _await_exit(daemon, pid)
        status = NOT_RUNNING if outcome.stopped else status
    elif status == DEAD and state == "stopped" and os.path.exists(daemon.pidfile):
        os.remove(daemon.pidfile)  # a daemon that died left it
        outcome.changed = True
    if state == "started" and status != RUNNING:
        before_start()
        start = run(daemon.start_argv(), daemon.environment)
        # 1: already running, started meanwhile by the other host of a one-machine lab
        if start.returncode not in (0, 1):
            raise _fail(daemon, f"did not start: {start.stderr.strip()}", context)
        outcome.started = start.returncode == 0
        outcome.changed = outcome.changed or outcome.started
    outcome.running = state == "started"
    return outcome


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
            "runtime": {"type": "str", "default": "process", "choices": ["process", "container"]},
            "executable": {"type": "path"},
            "args": {"type": "list", "elements": "str", "default": []},
            "pidfile": {"type": "path"},
            "log": {"type": "path"},
            "process_name": {"type": "str"},
            "match_executable": {"type": "bool", "default": True},
            "lock": {"type": "path"},
            "cmdline_file": {"type": "path"},
            "restart": {"type": "bool", "default": False},
            "environment": {"type": "dict", "default": {}},
            "notify_timeout_s": {"type": "int", "default": 0},
            "stop_retry": {"type": "str", "default": "TERM/30/KILL/5"},
            "container": {"type": "str"},
            "ready_url": {"type": "str"},
            "waiting_statuses": {"type": "list", "elements": "int", "default": [-1]},
            "ready_command": {"type": "list", "elements": "str"},
            "ready_what": {"type": "str", "default": "ready"},
            "timeout_s": {"type": "int", "default": 30},
            "context": {"type": "str", "default": ""},
            "bind_address": {"type": "str", "default": "127.0.0.1"},
            "free_ports": {"type": "list", "elements": "dict", "default": []},
            "ports_hint": {"type": "str", "default": ""},
            "ready_ports": {"type": "list", "elements": "int", "default": []},
            "ready_contains": {"type": "list", "elements": "str", "default": []},
            "directories": {"type": "list", "elements": "path", "default": []},
            "cpus": {"type": "str", "default": ""},
        },
        required_if=[
            ("runtime", "process", ("executable", "pidfile", "log")),
            ("runtime", "container", ("container",)),
        ],
        supports_check_mode=False,
    )
    p = module.params
    daemon = Daemon(
        name=p["name"],
        runtime=p["runtime"],
        executable=p["executable"] or "",
        args=p["args"],
        pidfile=p["pidfile"] or "",
        log=p["log"] or "",
        process_name=p["process_name"],
        match_executable=p["match_executable"],
        lock=p["lock"],
        environment={k: str(v) for k, v in p["environment"].items()},
        notify_timeout_s=p["notify_timeout_s"],
        stop_retry=p["stop_retry"],
        container=p["container"],
        cpus=p["cpus"] if p["runtime"] == "process" else "",
    )
    try:
        if daemon.runtime == "process":
            outcome = converge(
                daemon,
                p["state"],
                p["cmdline_file"],
                p["restart"],
                lambda: check_free(p["bind_address"], p["free_ports"], p["ports_hint"]),
                p["context"],
                tuple(p["directories"]),
            )
        else:
            outcome = Outcome(running=p["state"] == "started")
        if p["state"] == "started":
            wait_ready(
                daemon,
                url=p["ready_url"],
                waiting_statuses=p["waiting_statuses"],
                command=p["ready_command"],
                ready_what=p["ready_what"],
                timeout_s=p["timeout_s"],
                context=p["context"],
                host=p["bind_address"],
                ports=tuple(p["ready_ports"]),
                contains=tuple(p["ready_contains"]),
            )
    except (NotReady, RuntimeError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(
        changed=outcome.changed,
        started=outcome.started,
        stopped=outcome.stopped,
        running=outcome.running,
    )


if __name__ == "__main__":
    main()
