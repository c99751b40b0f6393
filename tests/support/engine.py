"""The client pool's HTTP/2 engine driven directly, for the tests of the engine and of
the engine through HAProxy."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from servelab.clients.h2engine import H2Engine
from servelab.clients.stats import NS_PER_S, WindowRecorder
from servelab.clients.worker import LoadSettings, WorkerConfig
from servelab.clients.workload import Golden, build_workload, fetch_signature

TINY_SAMPLE_BYTES = 32 * 32 * 3 * 4


def worker_config(
    server: str,
    repo: Path,
    *,
    clients: int = 2,
    timeout_s: float = 5.0,
    model: str | None = None,
    target: str | None = None,
) -> WorkerConfig:
    """A worker's config for the tiny model served at `server` (load sent to `target`)."""
    signature = fetch_signature(server, "tiny", None, "serving_default", 10.0)
    golden = Golden.load(repo / "golden" / "tiny.npz")
    workload = build_workload(signature, "serving_default", 1, "golden", golden)
    if model is not None:
        workload = dataclasses.replace(workload, model=model)
    load = LoadSettings(
        target=target or server,
        workload=workload,
        api="servelab",
        timeout_s=timeout_s,
        error_pause_s=0.05,
        warmup_s=0.0,
        duration_s=60.0,
        cooldown_s=0.0,
        connect_timeout_s=5.0,
    )
    return WorkerConfig(index=0, clients=clients, load=load)


@contextlib.contextmanager
def running_engine(
    config: WorkerConfig, **options: int
) -> Iterator[tuple[H2Engine, WindowRecorder]]:
    """The engine issuing requests for the `with` block; drained and closed after it."""
    engine = H2Engine(config, **options)
    now = time.perf_counter_ns()
    recorder = WindowRecorder(now, now + 3600 * NS_PER_S)
    engine.start(recorder)
    try:
        yield engine, recorder
    finally:
        engine.stop_issuing()
        engine.wait_idle(10.0)
        engine.close()


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
