"""`servelab wait-available`: wait until a model server reports its models AVAILABLE.

It asks TF Serving's status route (`GET /v1/models/<name>`), which refserver, TF
Serving and OpenVINO Model Server all answer, and gives up at once when the
server's process has died (a pidfile whose process is gone, or a docker container
that no longer runs) instead of waiting out the timeout. Only the standard library:
it runs on any server host.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

POLL_S = 0.5


class NotAvailable(RuntimeError):
    """The server died or did not report the model AVAILABLE in time."""

    exit_code = 1


def model_state(base_url: str, model: str) -> str:
    """The state of the model's newest version, or what went wrong asking for it."""
    try:
        with urllib.request.urlopen(f"{base_url}/v1/models/{model}", timeout=5) as reply:
            status = json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (OSError, ValueError) as error:  # not listening yet, or not JSON
        return f"no answer ({getattr(error, 'reason', error)})"
    versions = status.get("model_version_status") or []
    if not versions:
        return "no versions"
    newest = max(versions, key=lambda v: int(v.get("version", 0)))
    return str(newest.get("state", "UNKNOWN"))


def _alive(pidfile: Path | None) -> bool:
    if pidfile is None:
        return True
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _container_running(container: str | None) -> bool:
    if container is None:
        return True
    try:
        inspected = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.Running}}", container],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True  # docker itself did not answer: the timeout decides
    return inspected.returncode == 0 and inspected.stdout.strip() == "true"


def wait_available(
    base_url: str,
    models: list[str],
    timeout_s: float,
    pidfile: Path | None = None,
    container: str | None = None,
) -> None:
    """Return once every model is AVAILABLE; NotAvailable names the first that is not."""
    deadline = time.monotonic() + timeout_s
    for model in models:
        while True:
            state = model_state(base_url, model)
            if state == "AVAILABLE":
                break
            if not _alive(pidfile):
                raise NotAvailable(
                    f"the server of {pidfile} is not running (model {model}: {state})"
                )
            if not _container_running(container):
                raise NotAvailable(f"container {container} is not running (model {model}: {state})")
            if time.monotonic() > deadline:
                raise NotAvailable(
                    f"model {model} is not AVAILABLE at {base_url} after {timeout_s:g} s "
                    f"(last state: {state})"
                )
            time.sleep(POLL_S)


def register(groups: Any) -> None:
    parser = groups.add_parser(
        "wait-available", help="wait until a model server reports its models AVAILABLE"
    )
    parser.add_argument("--url", required=True, help="the server's REST base, http://HOST:PORT")
    parser.add_argument("--models", nargs="+", required=True, metavar="MODEL")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--pidfile", type=Path, help="give up as soon as this process is gone")
    parser.add_argument("--container", help="give up as soon as this docker container stops")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        print("servelab: error: --timeout must be positive", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        wait_available(
            args.url.rstrip("/"), args.models, args.timeout, args.pidfile, args.container
        )
    except NotAvailable as error:
        print(f"servelab: {error}", file=sys.stderr)
        return error.exit_code
    print(f"{', '.join(args.models)} AVAILABLE after {time.monotonic() - started:.1f} s")
    return 0
