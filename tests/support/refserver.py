"""Start a real refserver process for a test and stop it with SIGTERM afterwards.

    with running_refserver("openvino", tiny_repo) as server:
        channel = grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS)

The helper picks free loopback ports, runs `python -m servelab.refserver` with
the test's interpreter, and returns once GetModelStatus reports every awaited
model AVAILABLE (it polls the server; it never sleeps in place of a check).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb

RUNTIME_DIRS = {"openvino": "ov", "tensorflow": "tf"}
AVAILABLE = pb.ModelVersionStatus.AVAILABLE
END = pb.ModelVersionStatus.END


class RefServerError(RuntimeError):
    """refserver did not come up; the message carries the tail of its log."""


@dataclass
class RefServerProcess:
    runtime: str
    grpc_port: int
    rest_port: int
    process: subprocess.Popen
    log_path: Path
    models: tuple[str, ...] = field(default=())

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the exit (kill after `timeout_s`); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports nothing listens on right now (held together while picked)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def refserver_command(runtime: str, flags: dict[str, object]) -> list[str]:
    """The command line: each flag `key=value` becomes `--key value` (True: `--key`)."""
    command = [sys.executable, "-m", "servelab.refserver", "--runtime", runtime]
    for key, value in flags.items():
        if value is None or value is False:
            continue
        command.append(f"--{key}")
        if value is not True:
            command.append(str(value))
    return command


def _log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_available(server: RefServerProcess, models: Sequence[str], timeout_s: float) -> None:
    """Poll GetModelStatus until each model is AVAILABLE; RefServerError otherwise."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(server.target) as channel:
        stub = api.ModelServiceStub(channel)
        pending = list(models)
        while pending:
            if server.process.poll() is not None:
                raise RefServerError(
                    f"refserver exited with {server.process.returncode} before "
                    f"{pending[0]} was AVAILABLE:\n{_log_tail(server.log_path)}"
                )
            if time.monotonic() > deadline:
                raise RefServerError(
                    f"{pending[0]} not AVAILABLE within {timeout_s} s:\n"
                    f"{_log_tail(server.log_path)}"
                )
            try:
                response = stub.GetModelStatus(
                    pb.GetModelStatusRequest(model_spec=api.model_spec(pending[0])), timeout=1.0
                )
            except grpc.RpcError:
                response = None  # not listening yet
            states = [s.state for s in response.model_version_status] if response else []
            if states and all(state == AVAILABLE for state in states):
                pending.pop(0)
                continue
            if states and any(state == END for state in states):
                raise RefServerError(
                    f"{pending[0]} ended while loading:\n{_log_tail(server.log_path)}"
                )
            # Wait a little for the next poll; returns early if the process exits.
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=0.05)


def start_refserver(
    runtime: str,
    repo: Path | str | None,
    model: str = "tiny",
    *,
    wait_for: Sequence[str] | None = None,
    timeout_s: float = 120.0,
    **flags: object,
) -> RefServerProcess:
    """Start refserver and wait until it serves; the caller stops it (see running_refserver).

    Without `model_path` or `config_path` in `flags`, the model is served from
    `repo/ov/<model>` (openvino) or `repo/tf/<model>` (tensorflow). Extra flags
    use refserver's names: `nireq=2`, `plugin_config='{"NUM_STREAMS": 1}'`, ...
    """
    if "config_path" not in flags:
        flags.setdefault("model_name", model)
        if "model_path" not in flags:
            if repo is None:
                raise ValueError("running_refserver needs repo, model_path or config_path")
            flags["model_path"] = Path(repo) / RUNTIME_DIRS[runtime] / model
    awaited = tuple(wait_for) if wait_for is not None else (str(flags.get("model_name", model)),)
    fixed_ports = "port" in flags or "rest_port" in flags
    log_dir = Path(tempfile.mkdtemp(prefix="refserver-"))
    for attempt in range(3):
        ports = {
            "port": flags.get("port") or free_port(),
            "rest_port": flags["rest_port"] if "rest_port" in flags else free_port(),
        }
        log_path = log_dir / f"refserver-{attempt}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                refserver_command(runtime, {**flags, **ports}),
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                stdin=subprocess.DEVNULL,
            )
        server = RefServerProcess(
            runtime=runtime,
            grpc_port=int(ports["port"]),
            rest_port=int(ports["rest_port"]),
            process=process,
            log_path=log_path,
            models=awaited,
        )
        try:
            wait_available(server, awaited, timeout_s)
            return server
        except RefServerError:
            server.stop(timeout_s=10)
            # Another process took a port between free_port() and the bind: retry.
            if fixed_ports or "cannot bind" not in server.log() or attempt == 2:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def running_refserver(
    runtime: str,
    repo: Path | str | None,
    model: str = "tiny",
    **flags: object,
) -> Iterator[RefServerProcess]:
    """A refserver serving `model` from `repo` for the `with` block; SIGTERM at its end."""
    server = start_refserver(runtime, repo, model, **flags)
    try:
        yield server
    finally:
        server.stop()
