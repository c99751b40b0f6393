"""Where a process may run, read back from the kernel: every thread's Cpus_allowed_list."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from servelab.controller.cpusets import default_split, parse_cpuset


def thread_cpus(pid: int) -> dict[int, frozenset[int]]:
    """{thread id: the CPUs it may run on}, from /proc/<pid>/task/*/status."""
    allowed: dict[int, frozenset[int]] = {}
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended while we looked
        for line in text.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                allowed[int(status.parent.name)] = parse_cpuset(line.split(":", 1)[1].strip())
    return allowed


def some_cpu() -> int:
    """One CPU this process may use (the last): pinning to it differs from "all of them"
    on any machine with two CPUs or more."""
    return max(os.sched_getaffinity(0))


@contextlib.contextmanager
def on_cpus(cpus: frozenset[int] | set[int]) -> Iterator[None]:
    """Run the calling thread on `cpus` for the block: the processes it starts there (and
    their threads) keep them; the thread gets its CPUs back afterwards."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def bench_split(server: str, lab: str) -> tuple[frozenset[int], frozenset[int]]:
    """The benches' two sets: the ones given, else this machine's default split."""
    split = default_split(os.sched_getaffinity(0))
    return parse_cpuset(server or split.server), parse_cpuset(lab or split.lab)
