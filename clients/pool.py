"""The parent process: start the workers, agree on the start, collect their reports.

Workers are started with the `spawn` method (gRPC's threads do not survive a fork).
The parent waits until every worker has connected, tells them all the same start
instant (`--start-at`, or a moment from now), and then only waits: for the reports,
or for SIGINT, on which it tells the workers to stop and report what they measured.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from servelab.clients.stats import WorkerReport
from servelab.clients.worker import LoadSettings, WorkerConfig, worker_main
from servelab.clients.workload import BadInput

_START_MARGIN_S = 0.1  # from "all workers ready" to the start, without --start-at
_READY_TIMEOUT_S = 120.0  # importing TensorFlow in the opt-in mode takes seconds


@dataclass(frozen=True)
class PoolConfig:
    load: LoadSettings
    concurrency: int
    processes: int
    start_at: float | None


@dataclass
class PoolRun:
    scheduled_start_epoch: float
    clients_per_process: list[int]
    reports: list[WorkerReport] = field(default_factory=list)
    workers_lost: list[str] = field(default_factory=list)
    interrupted: bool = False
    parent_cpu_s: float = 0.0
    parent_peak_rss_mb: float = 0.0


def split_clients(concurrency: int, processes: int) -> list[int]:
    """Clients per process, as even as can be; never a process without clients."""
    processes = max(1, min(processes, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (1 if i < extra else 0) for i in range(processes)]


class _Interrupts:
    """Counts SIGINTs instead of raising KeyboardInterrupt in the middle of things."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1


def run_pool(config: PoolConfig) -> PoolRun:
    clients = split_clients(config.concurrency, config.processes)
    context = multiprocessing.get_context("spawn")
    interrupts = _Interrupts()
    # Workers start with SIGINT ignored, so a Ctrl-C during their start-up cannot
    # kill them; from then on they only stop when the parent says so.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for index, count in enumerate(clients):
            parent_end, child_end = context.Pipe()
            worker = WorkerConfig(index=index, clients=count, load=config.load)
            process = context.Process(
                target=worker_main, args=(child_end, worker), name=f"servelab-load-{index}"
            )
            process.start()
            child_end.close()
            workers.append((process, parent_end))
        signal.signal(signal.SIGINT, interrupts)
        return _drive(config, clients, workers, interrupts)
    finally:
        signal.signal(signal.SIGINT, previous)
        for process, conn in workers:
            conn.close()
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join()


def _stop_all(conns: list[Connection]) -> None:
    for conn in conns:
        with contextlib.suppress(OSError):  # a worker that has gone needs no telling
            conn.send(("stop",))


def _drive(
    config: PoolConfig,
    clients: list[int],
    workers: list[tuple[multiprocessing.process.BaseProcess, Connection]],
    interrupts: _Interrupts,
) -> PoolRun:
    conns = [conn for _, conn in workers]
    pending = set(range(len(workers)))
    # 1. Every worker has connected to the target (or said why it cannot).
    deadline = time.monotonic() + _READY_TIMEOUT_S + config.load.connect_timeout_s
    while pending and not interrupts.count:
        ready = wait([conns[i] for i in pending], timeout=0.1)
        for conn in ready:
            index = conns.index(conn)
            try:
                kind, detail = conn.recv()
            except EOFError:
                kind, detail = "error", f"worker {index} exited while starting"
            if kind == "error":
                _stop_all([conns[i] for i in pending if i != index])
                raise BadInput(str(detail))
            pending.discard(index)
        if time.monotonic() > deadline:
            _stop_all(conns)
            raise BadInput(f"workers did not start within {_READY_TIMEOUT_S:g} s")

    run = PoolRun(scheduled_start_epoch=time.time(), clients_per_process=clients)
    if interrupts.count:
        run.interrupted = True
        _stop_all(conns)
        return _finish(run)

    # 2. One start instant for all.
    start = config.start_at if config.start_at is not None else time.time() + _START_MARGIN_S
    if start < time.time():
        _stop_all(conns)
        raise BadInput(f"--start-at {start:.3f} passed before the workers were ready")
    run.scheduled_start_epoch = start
    for conn in conns:
        conn.send(("start", start))

    # 3. Reports; SIGINT turns into "stop" for everyone.
    pending = set(range(len(workers)))
    stop_sent = False
    end = start + config.load.warmup_s + config.load.duration_s + config.load.cooldown_s
    hard_deadline = end + config.load.timeout_s + 30.0
    while pending:
        if interrupts.count and not stop_sent:
            run.interrupted = True
            stop_sent = True
            _stop_all([conns[i] for i in pending])
            hard_deadline = min(hard_deadline, time.time() + 15.0)
        if interrupts.count > 1 or time.time() > hard_deadline:
            for i in sorted(pending):
                run.workers_lost.append(f"worker {i} gave no report in time; terminated")
                workers[i][0].terminate()
            break
        for conn in wait([conns[i] for i in pending], timeout=0.1):
            index = conns.index(conn)
            pending.discard(index)
            try:
                kind, payload = conn.recv()
            except EOFError:
                process = workers[index][0]
                process.join(1.0)
                run.workers_lost.append(
                    f"worker {index} died without a report (exit code {process.exitcode})"
                )
                continue
            if kind == "report":
                run.reports.append(payload)
    return _finish(run)


def _finish(run: PoolRun) -> PoolRun:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    run.parent_cpu_s = usage.ru_utime + usage.ru_stime
    run.parent_peak_rss_mb = usage.ru_maxrss / 1024.0
    return run
