"""Request outcomes and their accumulation in one worker process (no gRPC here).

A worker hands every finished request to a `WindowRecorder` as a `RequestOutcome`.
Outcomes that complete inside the measurement window [start, end) feed the latency
histogram, the per-second timeline and the window's counters; every outcome, warm-up
and cool-down included, feeds the all-phase totals (which a server's own counters can
be held to). `WorkerReport` is what a worker sends its parent at the end.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from servelab.clients.histogram import LogHistogram

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One request: transport status, end-to-end latency, and the verification verdict."""

    ok: bool
    latency_s: float
    error_code: str | None = None  # gRPC status name when the transport failed
    verification_failure: str | None = None  # why an OK response is wrong, else None

    @property
    def verified(self) -> bool:
        return self.ok and self.verification_failure is None


@dataclass
class PhaseCounts:
    """Counters over a span of time: responses, verdicts and errors by gRPC code."""

    completed: int = 0  # gRPC OK responses
    verified: int = 0
    verification_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: RequestOutcome) -> None:
        if outcome.ok:
            self.completed += 1
            if outcome.verification_failure is None:
                self.verified += 1
            else:
                self.verification_failures += 1
        else:
            self.errors[outcome.error_code or "UNKNOWN"] += 1

    def merge(self, other: PhaseCounts) -> None:
        self.completed += other.completed
        self.verified += other.verified
        self.verification_failures += other.verification_failures
        self.errors.update(other.errors)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass
class WorkerReport:
    """What one worker measured; picklable, sent to the parent at the end."""

    worker: int
    pid: int
    clients: int
    load_start_epoch: float | None  # wall clock of the worker's first request
    window_start_epoch: float
    window_end_epoch: float  # earlier than planned when the run was interrupted
    window: PhaseCounts
    all_phases: PhaseCounts
    sent_total: int
    latency: dict[str, Any]  # LogHistogram.to_dict() of window latencies, seconds
    timeline: list[int]  # completions per second of the window
    first_error: str | None
    first_verification_failure: str | None
    window_cpu_s: float
    cpu_s: float
    peak_rss_mb: float
    interrupted: bool


class WindowRecorder:
    """Thread-safe accumulation of outcomes against a window of perf_counter_ns times."""

    def __init__(self, window_start_ns: int, window_end_ns: int) -> None:
        if window_end_ns < window_start_ns:
            raise ValueError("window ends before it starts")
        self.window_start_ns = window_start_ns
        self.window_end_ns = window_end_ns
        self.histogram = LogHistogram()
        self.window = PhaseCounts()
        self.all_phases = PhaseCounts()
        self.sent_total = 0
        self.first_error: str | None = None
        self.first_verification_failure: str | None = None
        seconds = -(-(window_end_ns - window_start_ns) // NS_PER_S)
        self.timeline = [0] * seconds
        self._lock = threading.Lock()
        self._frozen = False

    def sent(self) -> None:
        with self._lock:
            if not self._frozen:
                self.sent_total += 1

    def freeze(self) -> None:
        """Ignore whatever arrives from now on (the report is being built)."""
        with self._lock:
            self._frozen = True

    def record(self, completed_ns: int, outcome: RequestOutcome, detail: str | None = None) -> None:
        """Count an outcome that completed at `completed_ns` (perf_counter_ns)."""
        with self._lock:
            if self._frozen:
                return
            self.all_phases.add(outcome)
            if not outcome.ok and self.first_error is None:
                self.first_error = (
                    f"{outcome.error_code}: {detail}" if detail else outcome.error_code
                )
            if outcome.verification_failure is not None and self.first_verification_failure is None:
                self.first_verification_failure = outcome.verification_failure
            if not self.window_start_ns <= completed_ns < self.window_end_ns:
                return
            self.window.add(outcome)
            if outcome.ok:
                self.histogram.record(outcome.latency_s)
                self.timeline[(completed_ns - self.window_start_ns) // NS_PER_S] += 1

    def close_window(self, end_ns: int) -> None:
        """End the window early (an interrupted run); later completions fall outside it."""
        with self._lock:
            end_ns = max(self.window_start_ns, min(end_ns, self.window_end_ns))
            self.window_end_ns = end_ns
            seconds = -(-(end_ns - self.window_start_ns) // NS_PER_S)
            del self.timeline[seconds:]
