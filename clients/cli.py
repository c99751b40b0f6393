"""`servelab-load`: a closed-loop pool of verifying clients for a TF Serving gRPC target.

Exit status: 0 a clean run; 1 the benchmark found a problem (transport errors,
verification failures, nothing completed, a lost worker); 2 bad input (a one-line
message on stderr); 130 interrupted (the summary of what was measured is written).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

PROG = "servelab-load"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a non-negative number of seconds")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _epoch(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Unix time in seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a Unix time in seconds")
    return value


def _target(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Closed-loop, verifying load on a model server speaking the TF Serving "
        "gRPC API. Writes one JSON summary.",
    )
    target = parser.add_argument_group("target")
    target.add_argument("--target", type=_target, required=True, help="gRPC HOST:PORT")
    target.add_argument("--model", required=True, help="model name")
    target.add_argument(
        "--model-version", type=_positive_int, default=None, help="default: the latest"
    )
    target.add_argument("--signature", default="serving_default", help="signature name")
    target.add_argument("--batch", type=_positive_int, default=1, help="samples per request")

    load = parser.add_argument_group("load")
    load.add_argument(
        "--concurrency", type=_positive_int, default=1, help="clients, one request in flight each"
    )
    load.add_argument(
        "--processes",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="worker processes the clients are spread over (default: the host's cores)",
    )
    load.add_argument(
        "--api",
        choices=("servelab", "servelab-grpcio", "tensorflow-serving-api"),
        default="servelab",
        help="servelab: servelab's messages over its own HTTP/2 client, one connection "
        "per process (default, the cheapest); servelab-grpcio: the same messages over "
        "grpcio; tensorflow-serving-api: the official stubs and TensorFlow, as the "
        "published clients did",
    )
    load.add_argument("--warmup", type=_seconds, default=5.0, help="seconds before the window")
    load.add_argument(
        "--duration", type=_positive_seconds, default=30.0, help="the window, seconds"
    )
    load.add_argument("--cooldown", type=_seconds, default=2.0, help="seconds after the window")
    load.add_argument(
        "--start-at",
        type=_epoch,
        default=None,
        metavar="EPOCH",
        help="Unix time at which the warm-up begins (the same on every client host)",
    )
    load.add_argument(
        "--timeout", type=_positive_seconds, default=30.0, help="deadline per request, seconds"
    )
    load.add_argument(
        "--error-pause",
        type=_seconds,
        default=0.1,
        help="seconds a client waits after a transport error before its next request",
    )
    load.add_argument(
        "--connect-timeout",
        type=_positive_seconds,
        default=10.0,
        help="seconds to wait for the target before giving up",
    )

    data = parser.add_argument_group("input")
    data.add_argument(
        "--input",
        default="golden",
        metavar="golden|random|FILE.npy",
        help="golden samples (default; verified by value), random values of the model's "
        "input shape, or samples from an .npy file (rows taken cyclically)",
    )
    data.add_argument("--model-repo", type=Path, help="model repository: REPO/golden/MODEL.npz")
    data.add_argument("--golden", type=Path, help="golden samples file (.npz)")
    data.add_argument("--seed", type=int, default=0, help="seed of random input")

    parser.add_argument("--out", type=Path, help="write the summary here (default: stdout)")
    return parser


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.replace(tmp.name, out)


def _check_args(args: argparse.Namespace) -> None:
    from servelab.clients.workload import BadInput

    if args.input not in ("golden", "random") and not args.input.endswith(".npy"):
        raise BadInput(f"--input {args.input!r}: expected golden, random or a .npy file")
    if args.golden is not None and args.model_repo is not None:
        raise BadInput("give --golden or --model-repo, not both")
    if args.start_at is not None and args.start_at < time.time():
        raise BadInput(
            f"--start-at {args.start_at:.3f} is {time.time() - args.start_at:.1f} s in the past"
        )
    if (
        args.api == "tensorflow-serving-api"
        and importlib.util.find_spec("tensorflow_serving") is None
    ):
        raise BadInput("--api tensorflow-serving-api needs the tensorflow-serving-api package")
    if args.api == "servelab" and importlib.util.find_spec("hpack") is None:
        raise BadInput(
            "--api servelab needs the hpack package (a servelab dependency); "
            "or choose --api servelab-grpcio"
        )
    if args.out is not None and args.out.is_dir():
        raise BadInput(f"--out {args.out} is a directory")


def _golden_path(args: argparse.Namespace) -> Path | None:
    if args.input != "golden":
        return None
    from servelab.clients.workload import BadInput

    if args.golden is not None:
        return args.golden
    if args.model_repo is not None:
        return args.model_repo / "golden" / f"{args.model}.npz"
    raise BadInput("golden input needs --model-repo or --golden (or --input random)")


def run(args: argparse.Namespace) -> int:
    from servelab.clients.pool import PoolConfig, run_pool
    from servelab.clients.summary import RunFacts, summarize
    from servelab.clients.worker import LoadSettings
    from servelab.clients.workload import Golden, build_workload, fetch_signature

    _check_args(args)
    golden_path = _golden_path(args)
    signature = fetch_signature(
        args.target, args.model, args.model_version, args.signature, args.connect_timeout
    )
    golden = Golden.load(golden_path) if golden_path is not None else None
    workload = build_workload(
        signature, args.signature, args.batch, args.input, golden, seed=args.seed
    )
    load = LoadSettings(
        target=args.target,
        workload=workload,
        api=args.api,
        timeout_s=args.timeout,
        error_pause_s=args.error_pause,
        warmup_s=args.warmup,
        duration_s=args.duration,
        cooldown_s=args.cooldown,
        connect_timeout_s=args.connect_timeout,
    )
    config = PoolConfig(
        load=load,
        concurrency=args.concurrency,
        processes=args.processes,
        start_at=args.start_at,
    )
    pool = run_pool(config)
    facts = RunFacts(
        target=args.target,
        model=args.model,
        version=workload.version,
        signature=args.signature,
        batch=args.batch,
        concurrency=args.concurrency,
        api=args.api,
        input=str(golden_path) if golden_path is not None else args.input,
        scheduled_start_epoch=pool.scheduled_start_epoch,
        warmup_s=args.warmup,
        duration_s=args.duration,
        cooldown_s=args.cooldown,
        clients_per_process=pool.clients_per_process,
        interrupted=pool.interrupted,
        parent_cpu_s=pool.parent_cpu_s,
        parent_peak_rss_mb=pool.parent_peak_rss_mb,
        workers_lost=pool.workers_lost,
    )
    summary = summarize(facts, pool.reports)
    _write(summary.to_json(), args.out)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_PROBLEM if summary.problems else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from servelab.clients.workload import BadInput

    try:
        return run(args)
    except BadInput as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before the pool started: nothing was measured
        print(f"{PROG}: interrupted before the load started", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
