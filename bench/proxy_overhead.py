"""What HAProxy adds to a large gRPC request. Prints figures; exit 1 when over budget.

A refserver (OpenVINO runtime) serves the model; HAProxy runs as the
load_balancer role provisions it (ansible-playbook on this machine, a scratch
state directory, free loopback ports), once per variant:

  tuned     the role's defaults (tune.bufsize 262144, tune.h2.initial-window-size 16777216)
  defaults  HAProxy's own defaults (tune.bufsize 16384, tune.h2.initial-window-size 65535)
  and the tuned config with one more setting each (--variants all): a 1 MiB buffer,
  1 MiB HTTP/2 frames, 4 MiB socket buffers, option http-buffer-request, 2 threads.

The server runs on the server's CPU set, HAProxy and the client on the lab's
(--server-cpus, --lab-cpus; default this machine's split, as inventory/local.yml's).

Then one client sends --requests sequential Predict calls with the same
pre-serialized request (~19 MB: `tiny` at batch 1600, or resnet_v1_50 at batch
32) to each target: directly, through `tuned` and through `defaults`, in rounds
that visit the targets in a fresh random order, so that a slow spell of the
machine hits every variant alike. It prints the median and p90 of each and what
the proxy adds to the direct median.

Budget: the tuned proxy adds at most --max-added (default 5%) to the direct
median. Exit 0 within it, 1 over it or when a call failed or answered wrong.

    .venv/bin/python -m bench.proxy_overhead
    .venv/bin/python -m bench.proxy_overhead --model resnet_v1_50 --batch 32 --requests 20

Models are built once into --repo (default ~/.cache/servelab/bench-models).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import yaml

from servelab.controller.cpusets import CpusetError, format_cpuset
from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import to_ndarray, to_tensor_proto
from tests.support.affinity import bench_split, on_cpus
from tests.support.refserver import running_refserver

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_REPO = Path("~/.cache/servelab/bench-models").expanduser()
ROLE = REPO_ROOT / "roles" / "load_balancer"
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"

# The role's variables per proxied variant; everything else is the role's default.
VARIANTS: dict[str, dict[str, object]] = {
    "tuned": {},
    "defaults": {"load_balancer_bufsize": 16384, "load_balancer_h2_initial_window_size": 65535},
}
# Each one setting on top of the tuned config, to see what it changes.
MORE_VARIANTS: dict[str, dict[str, object]] = {
    "buf1m": {"load_balancer_bufsize": 1048576},
    "frame1m": {
        "load_balancer_bufsize": 1048576,
        "load_balancer_tunes": {"tune.h2.max-frame-size": 1048576},
    },
    "sockbuf4m": {
        "load_balancer_tunes": {
            f"tune.{way}.{side}": 4194304
            for way in ("rcvbuf", "sndbuf")
            for side in ("client", "server")
        }
    },
    "bufreq": {"load_balancer_http_buffer_request": True},
    "threads2": {"load_balancer_nbthread": 2},
}


@dataclass(frozen=True)
class Timing:
    """Sequential Predict calls to one target."""

    variant: str
    target: str
    calls: int
    failures: int
    median_ms: float
    p90_ms: float
    min_ms: float


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def ensure_model(repo: Path, model: str) -> Path:
    """The golden samples of `model`, building it into `repo` first if it is not there."""
    golden = repo / "golden" / f"{model}.npz"
    if not (golden.is_file() and (repo / "ov" / model / "1" / "model.xml").is_file()):
        command = [sys.executable, "-m", "servelab.controller", "models", "build"]
        result = subprocess.run(
            [*command, "--repo", str(repo), "--models", model],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            sys.exit(f"building {model} into {repo} failed:\n{result.stderr[-2000:]}")
    return golden


def _play(scratch: Path, plays: list[dict], name: str) -> None:
    playbook = scratch / name
    playbook.write_text(yaml.safe_dump(plays))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
    }
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), str(playbook)],
        cwd=REPO_ROOT,  # the checkout's ansible.cfg
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name}: ansible-playbook exited {result.returncode}:\n"
                           f"{result.stdout[-3000:]}{result.stderr[-2000:]}")  # fmt: skip


def _role_plays(instances: dict[str, dict], state: str) -> list[dict]:
    return [
        {
            "name": f"HAProxy ({variant})",
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "roles": [{"role": str(ROLE), "vars": variables | {"load_balancer_state": state}}],
        }
        for variant, variables in instances.items()
    ]


@contextlib.contextmanager
def proxies(
    server_port: int, scratch: Path, variants: dict[str, dict[str, object]], cpus: str
) -> Iterator[dict[str, str]]:
    """One HAProxy per variant, provisioned by the role on `cpus`; variant -> its target."""
    instances: dict[str, dict] = {}
    targets: dict[str, str] = {}
    for variant, tuning in variants.items():
        exporter, frontend = free_ports(2)
        instances[variant] = {
            "load_balancer_state_dir": str(scratch / variant),
            "load_balancer_bind_address": LOOPBACK,
            "load_balancer_exporter_port": exporter,
            "load_balancer_client_concurrency": 1,
            "load_balancer_cpus": cpus,
            "load_balancer_frontends": [
                {"name": "refserver", "port": frontend, "server_address": LOOPBACK,
                 "server_port": server_port},
            ],
            **tuning,
        }  # fmt: skip
        targets[variant] = f"{LOOPBACK}:{frontend}"
    try:
        _play(scratch, _role_plays(instances, "started"), "start.yml")
        yield targets
    finally:
        _play(scratch, _role_plays(instances, "stopped"), "stop.yml")


def _config_lines(scratch: Path, variant: str) -> list[str]:
    text = (scratch / variant / "haproxy.cfg").read_text()
    wanted = ("tune.", "nbthread", "option http-buffer-request")
    return [line.strip() for line in text.splitlines() if line.strip().startswith(wanted)]


def measure(
    targets: dict[str, str],
    payload: bytes,
    golden: np.lib.npyio.NpzFile,
    expected: np.ndarray,
    requests: int,
    warmup: int,
    seed: int,
) -> list[Timing]:
    """Sequential calls, rounds over the targets in random order; a Timing per target."""
    channels = {
        v: grpc.insecure_channel(t, options=api.CHANNEL_OPTIONS) for v, t in targets.items()
    }
    calls = {v: c.unary_unary(api.PREDICT) for v, c in channels.items()}
    samples: dict[str, list[float]] = {v: [] for v in targets}
    failures = dict.fromkeys(targets, 0)
    atol, rtol = float(golden["atol"]), float(golden["rtol"])
    try:
        for variant, call in calls.items():  # connect, and check one answer of each fully
            reply = pb.PredictResponse.FromString(call(payload, timeout=120))
            got = to_ndarray(reply.outputs[str(golden["output_name"])])
            if not np.allclose(got, expected, atol=atol, rtol=rtol):
                failures[variant] += 1
            for _ in range(warmup):
                call(payload, timeout=120)
        order = list(targets)
        rng = random.Random(seed)
        for _ in range(requests):
            rng.shuffle(order)
            for variant in order:
                started = time.perf_counter_ns()
                try:
                    calls[variant](payload, timeout=120)
                except grpc.RpcError:
                    failures[variant] += 1
                    continue
                samples[variant].append((time.perf_counter_ns() - started) / 1e6)
    finally:
        for channel in channels.values():
            channel.close()
    return [
        Timing(
            variant=variant,
            target=targets[variant],
            calls=len(samples[variant]),
            failures=failures[variant],
            median_ms=statistics.median(samples[variant]) if samples[variant] else float("nan"),
            p90_ms=_percentile(samples[variant], 90),
            min_ms=min(samples[variant], default=float("nan")),
        )
        for variant in targets
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help=f"default {DEFAULT_REPO}")
    parser.add_argument("--model", default="tiny", help="default tiny")
    parser.add_argument(
        "--batch", type=int, default=1600, help="default 1600 (tiny: a 19.7 MB request)"
    )
    parser.add_argument("--requests", type=int, default=40, help="timed calls per target")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per target first")
    parser.add_argument(
        "--max-added",
        type=float,
        default=0.05,
        help="budget: what the tuned proxy may add, as a fraction of the direct median",
    )
    parser.add_argument(
        "--variants",
        choices=("base", "all"),
        default="all",
        help="base: tuned and HAProxy's defaults; all: and each further setting alone",
    )
    parser.add_argument("--server-cpus", default="", help="cpuset of the server (default split)")
    parser.add_argument("--lab-cpus", default="", help="cpuset of HAProxy and the client")
    parser.add_argument("--seed", type=int, default=0, help="of the rounds' order")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.requests < 1 or args.warmup < 0 or args.max_added < 0:
        parser.error("--batch and --requests must be >= 1, --warmup and --max-added >= 0")

    try:
        server_cpus, lab_cpus = bench_split(args.server_cpus, args.lab_cpus)
    except CpusetError as exc:
        parser.error(str(exc))
    variants = VARIANTS | (MORE_VARIANTS if args.variants == "all" else {})
    repo = args.repo.expanduser()
    golden = np.load(ensure_model(repo, args.model))
    rows = np.arange(args.batch) % len(golden["inputs"])
    inputs, expected = golden["inputs"][rows], golden["outputs"][rows]
    request = pb.PredictRequest(model_spec=api.model_spec(args.model))
    request.inputs[str(golden["input_name"])].CopyFrom(to_tensor_proto(inputs))
    payload = request.SerializeToString()

    print(
        f"# {args.model} batch {args.batch}: request {len(payload) / 1e6:.1f} MB; "
        f"{args.requests} sequential calls per target after {args.warmup} untimed; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; server on CPUs {format_cpuset(server_cpus)}, "
        f"HAProxy and the client on {format_cpuset(lab_cpus)}",
        flush=True,
    )
    os.sched_setaffinity(0, lab_cpus)  # the client; the server is started on its own set
    with contextlib.ExitStack() as stack:
        with on_cpus(server_cpus):
            server = stack.enter_context(running_refserver("openvino", repo, args.model))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="proxy-overhead-")))
        with proxies(server.grpc_port, scratch, variants, format_cpuset(lab_cpus)) as proxied:
            for variant in proxied:
                print(f"  {variant:<9} {' '.join(_config_lines(scratch, variant))}", flush=True)
            targets = {"direct": server.target, **proxied}
            timings = measure(
                targets, payload, golden, expected, args.requests, args.warmup, args.seed
            )

    direct = next(t for t in timings if t.variant == "direct")
    print()
    header = (
        f"{'target':<10}{'calls':>6}{'failed':>7}{'median ms':>11}{'p90 ms':>9}{'min ms':>9}"
        f"{'added ms':>10}{'added':>8}"
    )
    print(header)
    print("-" * len(header))
    for t in timings:
        added_ms = t.median_ms - direct.median_ms
        print(
            f"{t.variant:<10}{t.calls:>6}{t.failures:>7}{t.median_ms:>11.1f}{t.p90_ms:>9.1f}"
            f"{t.min_ms:>9.1f}{added_ms:>+10.1f}{added_ms / direct.median_ms:>+8.0%}"
        )
    print(f"(load average {os.getloadavg()[0]:.2f} at the end; figures mean most on an idle host)")

    problems = [f"{t.variant}: {t.failures} failed or wrong calls" for t in timings if t.failures]
    tuned = next(t for t in timings if t.variant == "tuned")
    added = (tuned.median_ms - direct.median_ms) / direct.median_ms
    verdict = "within" if added <= args.max_added else "OVER"
    print(
        f"tuned proxy adds {added:+.0%} to the direct median; {verdict} the budget "
        f"(at most {args.max_added:.0%})"
    )
    if added > args.max_added:
        problems.append(f"the tuned proxy adds {added:.0%} (budget {args.max_added:.0%})")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
