"""How much throughput refserver's gRPC layer costs on top of OpenVINO itself.

For each batch size it measures

  (a) in-process: the compiled model, same hint and nireq, fed through an
      AsyncInferQueue kept full for --seconds (the ceiling);
  (b) served: refserver (openvino runtime) at saturation, driven by a
      closed-loop pool of client processes that send a pre-serialized
      PredictRequest and wait for each response before the next;

and prints both, their ratio and the CPU each side used. Both (a) and the server of
(b) run on the server's CPU set, the clients on the lab's (--server-cpus, --lab-cpus;
default this machine's split, as inventory/local.yml's), so the ceiling and the server
get the same cores. Budget: at every batch size the median ratio over the repeats is
>= --min-ratio (95%). Exit 0 when every batch meets it without errors, 1 when one does
not, 2 on bad input.

    .venv/bin/python -m bench.refserver_overhead                 # resnet_v1_50, batches 1 and 8
    .venv/bin/python -m bench.refserver_overhead --batches 1 --seconds 20 --clients 6
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
import psutil

from servelab.controller.cpusets import CpusetError, format_cpuset
from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb
from servelab.wire.tensors import to_tensor_proto
from tests.support.affinity import bench_split, on_cpus
from tests.support.refserver import running_refserver

DEFAULT_REPO = Path("~/.cache/servelab/bench-models").expanduser()
MODEL_INPUT = "input"
MODEL_OUTPUT = "probabilities"


@dataclass(frozen=True)
class OverheadPoint:
    model: str
    batch: int
    repeat: int
    hint: str
    nireq: int
    clients: int
    window_s: float
    in_process_fps: float
    in_process_cpu_cores: float
    in_process_host_cpu_cores: float  # all processes on the host during the in-process window
    served_fps: float
    served_requests: int
    served_errors: int
    served_p50_ms: float
    served_p99_ms: float
    server_cpu_cores: float
    clients_cpu_cores: float
    host_cpu_cores: float  # all processes on the host during the served window

    @property
    def in_process_other_cpu_cores(self) -> float:
        """Cores other processes took while the in-process ceiling was measured."""
        return max(0.0, self.in_process_host_cpu_cores - self.in_process_cpu_cores)

    @property
    def served_other_cpu_cores(self) -> float:
        """Cores other processes took while refserver was measured."""
        return max(0.0, self.host_cpu_cores - self.server_cpu_cores - self.clients_cpu_cores)

    @property
    def ratio(self) -> float:
        return self.served_fps / self.in_process_fps if self.in_process_fps else 0.0


# --- (a) in-process ceiling -------------------------------------------------------------


def _in_process_child(queue, *args) -> None:
    queue.put(_measure_in_process(*args))
    queue.close()
    queue.join_thread()
    # Skip interpreter finalization: tearing down OpenVINO's objects there can deadlock
    # with a completion callback that still wants the GIL, and the figures are sent.
    os._exit(0)


def measure_in_process(
    xml: Path, batch: int, hint: str, nireq: int, seconds: float, warmup_s: float
) -> tuple[float, float, float, int]:
    """_measure_in_process in a fresh process, so OpenVINO's threads and memory go with it."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(
        target=_in_process_child, args=(queue, xml, batch, hint, nireq, seconds, warmup_s)
    )
    child.start()
    try:
        return queue.get(timeout=seconds + warmup_s + 300)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()


def _measure_in_process(
    xml: Path, batch: int, hint: str, nireq: int, seconds: float, warmup_s: float
) -> tuple[float, float, float, int]:
    """(frames/s, cores used, cores the host used, nireq) of the model kept busy in-process."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(xml), "CPU", {"PERFORMANCE_HINT": hint})
    nireq = nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, nireq)
    shape = [batch, *(d.get_length() for d in compiled.inputs[0].get_partial_shape()[1:])]
    data = np.random.default_rng(0).random(shape, dtype=np.float32)
    counted = {"done": 0}
    window = {"open": False}

    def completed(request, _userdata) -> None:
        request.get_output_tensor(0).data.copy()  # the copy refserver makes too
        if window["open"]:
            counted["done"] += 1

    queue.set_callback(completed)
    me = psutil.Process()
    deadline = time.perf_counter() + warmup_s
    while time.perf_counter() < deadline:
        queue.start_async({MODEL_INPUT: data}, share_inputs=True)
    cpu_before, host_before = sum(me.cpu_times()[:2]), _CpuWindow.host_busy()
    started = time.perf_counter()
    window["open"] = True
    deadline = started + seconds
    while time.perf_counter() < deadline:
        queue.start_async({MODEL_INPUT: data}, share_inputs=True)
    window["open"] = False
    elapsed = time.perf_counter() - started
    cpu = sum(me.cpu_times()[:2]) - cpu_before
    host = _CpuWindow.host_busy() - host_before
    queue.wait_all()
    return counted["done"] * batch / elapsed, cpu / elapsed, host / elapsed, nireq


# --- (b) refserver driven by closed-loop clients ---------------------------------------------


def refserver(model: str, base: Path, hint: str, nireq: int, workers: int | None):
    """refserver on the OpenVINO runtime serving `base`, started by the tests' shared helper."""
    flags: dict[str, object] = {"model_path": base, "nireq": nireq, "performance_hint": hint}
    if workers:
        flags["grpc_workers"] = workers
    return running_refserver("openvino", None, model, timeout_s=300.0, **flags)


def _client(
    target: str, payload: bytes, start_at: float, end_at: float, stop_at: float, out
) -> None:
    """One closed-loop client: count responses completed inside [start_at, end_at)."""
    channel = grpc.insecure_channel(target, options=api.CHANNEL_OPTIONS)
    # Bytes in, bytes out: the client spends no CPU on protobuf in the loop.
    predict = channel.unary_unary(api.PREDICT)
    latencies: list[float] = []
    errors = 0
    cpu_start = None
    first_ok = False
    while True:
        now = time.time()
        if now >= stop_at:
            break
        if cpu_start is None and now >= start_at:
            cpu_start = time.process_time()
        sent = time.perf_counter()
        try:
            reply = predict(payload, timeout=60)
            ok = True
        except grpc.RpcError:
            ok = False
        done = time.time()
        if ok and not first_ok:  # check one answer fully; the rest are counted
            response = pb.PredictResponse.FromString(reply)
            first_ok = MODEL_OUTPUT in response.outputs
        if start_at <= done < end_at:
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1
        if cpu_start is not None and done >= end_at and "cpu" not in out:
            out["cpu"] = time.process_time() - cpu_start
    out.setdefault("cpu", time.process_time() - (cpu_start or 0.0))
    out["latencies"] = latencies
    out["errors"] = errors + (0 if first_ok else 1)
    channel.close()


def _client_process(target, payload, start_at, end_at, stop_at, queue) -> None:
    out: dict = {}
    _client(target, payload, start_at, end_at, stop_at, out)
    queue.put(out)


class _CpuWindow:
    """CPU seconds of the server process and of the whole host between two instants."""

    def __init__(self, server_pid: int, start_at: float, end_at: float) -> None:
        self.server = psutil.Process(server_pid)
        self.start_at, self.end_at = start_at, end_at
        self.result: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def host_busy() -> float:
        times = psutil.cpu_times()
        return times.user + times.system + times.nice

    def _run(self) -> None:
        time.sleep(max(0.0, self.start_at - time.time()))
        server, host = sum(self.server.cpu_times()[:2]), self.host_busy()
        time.sleep(max(0.0, self.end_at - time.time()))
        seconds = self.end_at - self.start_at
        self.result = {
            "server_cpu_cores": (sum(self.server.cpu_times()[:2]) - server) / seconds,
            "host_cpu_cores": (self.host_busy() - host) / seconds,
        }

    def join(self) -> dict[str, float]:
        self._thread.join()
        return self.result


def drive_builtin(
    target: str, server_pid: int, payload: bytes, batch: int, clients: int, seconds: float,
    warmup_s: float,
) -> dict:  # fmt: skip
    """Closed-loop client processes sending pre-serialized bytes (no verification)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    spawn_margin_s = 3.0  # time for the spawned clients to import and connect
    start_at = time.time() + spawn_margin_s + warmup_s
    end_at = start_at + seconds
    stop_at = end_at + 0.5
    processes = [
        context.Process(
            target=_client_process, args=(target, payload, start_at, end_at, stop_at, queue)
        )
        for _ in range(clients)
    ]
    for process in processes:
        process.start()
    cpu = _CpuWindow(server_pid, start_at, end_at)
    results = [queue.get(timeout=stop_at - time.time() + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    latencies = np.array([x for r in results for x in r["latencies"]]) * 1000
    requests = len(latencies)
    return {
        "served_fps": requests * batch / seconds,
        "served_requests": requests,
        "served_errors": sum(r["errors"] for r in results),
        "served_p50_ms": float(np.percentile(latencies, 50)) if requests else 0.0,
        "served_p99_ms": float(np.percentile(latencies, 99)) if requests else 0.0,
        "clients_cpu_cores": sum(r["cpu"] for r in results) / seconds,
        **cpu.join(),
    }


def drive_servelab_load(
    target: str, server_pid: int, model: str, repo: Path, batch: int, clients: int,
    seconds: float, warmup_s: float,
) -> dict:  # fmt: skip
    """The project's client pool (servelab-load): closed loop, every response verified."""
    start_at = time.time() + 8.0  # its workers spawn and connect first
    processes = min(clients, len(os.sched_getaffinity(0)))  # the lab set it runs on
    with tempfile.TemporaryDirectory(prefix="refserver-overhead-") as scratch:
        out = Path(scratch) / "summary.json"
        command = [
            sys.executable, "-m", "servelab.clients", "--target", target, "--model", model,
            "--batch", str(batch), "--model-repo", str(repo), "--concurrency", str(clients),
            "--processes", str(processes), "--warmup", str(warmup_s), "--duration",
            str(seconds), "--cooldown", "0.5", "--start-at", f"{start_at:.3f}", "--out", str(out),
        ]  # fmt: skip
        cpu = _CpuWindow(server_pid, start_at + warmup_s, start_at + warmup_s + seconds)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if not out.is_file():
            raise RuntimeError(f"servelab-load exited {result.returncode}: {result.stderr.strip()}")
        summary = json.loads(out.read_text())
    window_s = summary["window"]["duration_s"] or seconds
    requests = summary["requests"]
    return {
        "served_fps": summary["throughput"]["frames_per_s"],
        "served_requests": requests["completed"],
        "served_errors": sum(requests["errors_total"].values())
        + requests["verification_failures_total"],
        "served_p50_ms": summary["latency_ms"]["p50"],
        "served_p99_ms": summary["latency_ms"]["p99"],
        "clients_cpu_cores": summary["pool"]["window_cpu_s"] / window_s,
        **cpu.join(),
    }


# --- the command ------------------------------------------------------------------------------


def _batches(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 for v in values):
        raise ValueError(text)
    return values


_batches.__name__ = "comma-separated batch sizes"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help=f"default {DEFAULT_REPO}")
    parser.add_argument("--model", default="resnet_v1_50")
    parser.add_argument("--batches", type=_batches, default=[1, 8])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--hint", default="THROUGHPUT", choices=("THROUGHPUT", "LATENCY"))
    parser.add_argument("--nireq", type=int, default=0, help="0: the device's optimal number")
    parser.add_argument("--clients", type=int, default=0, help="0: 2 x nireq client processes")
    parser.add_argument("--grpc-workers", type=int, default=None)
    parser.add_argument(
        "--driver",
        choices=("auto", "servelab-load", "builtin"),
        default="auto",
        help="the load generator: servelab-load (verifies every response; needs "
        "REPO/golden/<model>.npz) or a built-in raw-bytes client; auto picks servelab-load "
        "when the golden file exists",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="measure each batch this many times (alternating)"
    )
    parser.add_argument(
        "--min-ratio", type=float, default=0.95, help="the budget, for every batch size"
    )
    parser.add_argument("--server-cpus", default="", help="cpuset of (a) and the server")
    parser.add_argument("--lab-cpus", default="", help="cpuset of the clients")
    parser.add_argument(
        "--skip-build", action="store_true", help="use --repo as it is (no build_repository)"
    )
    parser.add_argument("--json", type=Path, help="also write the points here")
    return parser


def _ensure_model(repo: Path, model: str, skip_build: bool) -> Path:
    if not skip_build:
        from servelab.server.modelrepo import build_repository

        build_repository(repo, [model], log=lambda line: print(f"  build: {line}", flush=True))
    base = repo / "ov" / model
    xml = base / "1" / "model.xml"
    if not xml.is_file():
        raise FileNotFoundError(f"--repo {repo}: no {xml}")
    return base


def print_table(points: list[OverheadPoint]) -> None:
    header = (
        f"{'model':<14}{'batch':>6}{'rep':>4}{'nireq':>6}{'clients':>8}{'in-proc fps':>12}"
        f"{'served fps':>11}{'ratio':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
        f"  | cpu cores: {'in-proc':>7}{'other':>6}  |{'server':>7}{'clients':>8}{'other':>6}"
    )
    print(header)
    print("-" * len(header))
    for p in points:
        print(
            f"{p.model:<14}{p.batch:>6}{p.repeat:>4}{p.nireq:>6}{p.clients:>8}{p.in_process_fps:>12.1f}"
            f"{p.served_fps:>11.1f}{p.ratio:>8.1%}{p.served_p50_ms:>8.1f}{p.served_p99_ms:>8.1f}"
            f"{p.served_errors:>7}  |            {p.in_process_cpu_cores:>7.2f}"
            f"{p.in_process_other_cpu_cores:>6.2f}  |{p.server_cpu_cores:>7.2f}"
            f"{p.clients_cpu_cores:>8.2f}{p.served_other_cpu_cores:>6.2f}"
        )
    print(
        f"(cpu: cores busy on average in each window; 'other' = the rest of the host, which "
        f"should be near 0 for a clean comparison; host has {psutil.cpu_count()} logical CPUs)"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.nireq < 0 or args.clients < 0 or args.repeats < 1:
        print("refserver_overhead: error: --seconds and --repeats must be > 0, "
              "--nireq and --clients >= 0",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        server_cpus, lab_cpus = bench_split(args.server_cpus, args.lab_cpus)
    except CpusetError as exc:
        print(f"refserver_overhead: error: {exc}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, lab_cpus)  # the clients; (a) and the server start on their own set
    try:
        base = _ensure_model(args.repo.expanduser(), args.model, args.skip_build)
    except Exception as exc:
        print(f"refserver_overhead: error: {args.model}: {exc}", file=sys.stderr)
        return 2
    driver = args.driver
    if driver == "auto":
        golden = args.repo.expanduser() / "golden" / f"{args.model}.npz"
        driver = "servelab-load" if golden.is_file() else "builtin"
    print(
        f"# {args.model} from {base}; driver {driver}; hint {args.hint}; "
        f"window {args.seconds:g} s; "
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, "
        f"python {platform.python_version()}; server on CPUs {format_cpuset(server_cpus)}, "
        f"clients on {format_cpuset(lab_cpus)}",
        flush=True,
    )
    points: list[OverheadPoint] = []
    for repeat, batch in ((r, b) for r in range(args.repeats) for b in args.batches):
        # A hung measurement ends with every thread's stack instead of hanging the caller.
        faulthandler.dump_traceback_later(4 * (args.seconds + args.warmup) + 300, exit=True)
        with on_cpus(server_cpus):
            fps, cpu, host_cpu, nireq = measure_in_process(
                base / "1" / "model.xml", batch, args.hint, args.nireq, args.seconds, args.warmup
            )
        print(f"  batch {batch}: in-process {fps:.1f} fps (nireq {nireq})", flush=True)
        clients = args.clients or max(2, 2 * nireq)
        data = np.random.default_rng(0).random((batch, 224, 224, 3), dtype=np.float32)
        request = pb.PredictRequest(model_spec=api.model_spec(args.model))
        request.inputs[MODEL_INPUT].CopyFrom(to_tensor_proto(data))
        with contextlib.ExitStack() as stack:
            with on_cpus(server_cpus):
                server = stack.enter_context(
                    refserver(args.model, base, args.hint, nireq, args.grpc_workers)
                )
            process, target = server.process, server.target
            if driver == "servelab-load":
                served = drive_servelab_load(
                    target, process.pid, args.model, args.repo.expanduser(), batch, clients,
                    args.seconds, args.warmup,
                )  # fmt: skip
            else:
                served = drive_builtin(
                    target, process.pid, request.SerializeToString(), batch, clients,
                    args.seconds, args.warmup,
                )  # fmt: skip
        point = OverheadPoint(
            model=args.model,
            batch=batch,
            repeat=repeat,
            hint=args.hint,
            nireq=nireq,
            clients=clients,
            window_s=args.seconds,
            in_process_fps=fps,
            in_process_cpu_cores=cpu,
            in_process_host_cpu_cores=host_cpu,
            **served,
        )
        print(f"  batch {batch}: served {point.served_fps:.1f} fps ({point.ratio:.1%})", flush=True)
        points.append(point)
    faulthandler.cancel_dump_traceback_later()
    print()
    print_table(points)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "host": {"cpus": psutil.cpu_count(), "machine": platform.machine()},
                    "pid": os.getpid(),
                    "points": [asdict(p) | {"ratio": p.ratio} for p in points],
                },
                indent=2,
            )
        )
    problems = [
        f"batch {p.batch} (repeat {p.repeat}): {p.served_errors} failed requests"
        for p in points
        if p.served_errors
    ]
    for batch in args.batches:
        ratios = [p.ratio for p in points if p.batch == batch]
        median = float(np.median(ratios))
        verdict = "within" if median >= args.min_ratio else "BELOW"
        print(
            f"batch {batch}: served/in-process {median:.1%} (median of {len(ratios)}); "
            f"{verdict} the target (>= {args.min_ratio:.0%})"
        )
        if median < args.min_ratio:
            problems.append(f"batch {batch} ratio {median:.1%} below {args.min_ratio:.0%}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
