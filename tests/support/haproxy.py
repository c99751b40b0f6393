"""The load_balancer role applied on loopback and its HAProxy read back, for the role's
own test and for the client engine's test through HAProxy."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.refserver import RefServerProcess, free_ports
from tests.support.roles import PlayResult, apply_role

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "load_balancer"
BIN = Path(sys.executable).parent
HAPROXY = "/usr/sbin/haproxy"
LOOPBACK = "127.0.0.1"


def play(directory: Path, variables: dict, name: str = "play.yml") -> PlayResult:
    """Apply the role on localhost with `variables`; the output and the PLAY RECAP's counts."""
    return apply_role(ROLE, variables, directory / name, lab_vars=True, timeout_s=300)


def lab_processes(config: Path) -> list[int]:
    """Pids of processes with this HAProxy config on their command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if str(config).encode() in argv:
            pids.append(int(entry.name))
    return pids


def stop_haproxy(state_dir: Path) -> None:
    """Stop the HAProxy of `state_dir` whatever the role did (a finalizer's last resort)."""
    subprocess.run(
        ["start-stop-daemon", "--stop", "--pidfile", str(state_dir / "haproxy.pid"),
         "--exec", HAPROXY, "--retry", "TERM/10/KILL/5", "--remove-pidfile"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    for pid in lab_processes(state_dir / "haproxy.cfg"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def role_variables(state_dir: Path, server: RefServerProcess, client_concurrency: int) -> dict:
    exporter, openvino, tensorflow, nothing = free_ports(4)
    return {
        "load_balancer_state_dir": str(state_dir),
        "load_balancer_bind_address": LOOPBACK,
        "load_balancer_exporter_port": exporter,
        "load_balancer_client_concurrency": client_concurrency,
        "load_balancer_frontends": [
            {"name": "ref-openvino", "port": openvino, "server_address": LOOPBACK,
             "server_port": server.grpc_port},
            # Like the lab between points: a kind whose server is not running.
            {"name": "ref-tensorflow", "port": tensorflow, "server_address": LOOPBACK,
             "server_port": nothing},
        ],
    }  # fmt: skip


def metrics(variables: dict) -> dict[str, dict[tuple, float]]:
    """HAProxy's exporter: metric name -> {sorted label items: value}."""
    url = f"http://{LOOPBACK}:{variables['load_balancer_exporter_port']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def frontend_requests(variables: dict) -> dict[str, float]:
    series = metrics(variables)["haproxy_frontend_http_requests_total"]
    return {dict(labels)["proxy"]: value for labels, value in series.items()}


def backend_responses(variables: dict, kind: str) -> dict[str, float]:
    """The responses a kind's backend passed on, by status class (2xx, 5xx, ...)."""
    series = metrics(variables)["haproxy_backend_http_responses_total"]
    return {
        dict(labels)["code"]: v for labels, v in series.items() if dict(labels)["proxy"] == kind
    }
