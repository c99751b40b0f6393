"""The pool's JSON summary: typed records, merged from the workers' reports.

Field names carry their units (`_s`, `_ms`, `_mb`, `_epoch`, `per_s`). The whole
layout is documented in docs/client-pool.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from servelab.clients.histogram import LogHistogram
from servelab.clients.stats import PhaseCounts, WorkerReport

SUMMARY_FORMAT = 1
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999))


@dataclass
class WindowSummary:
    scheduled_start_epoch: float  # the agreed instant the load began (--start-at or now)
    load_start_epoch: float | None  # when this pool actually sent its first request
    start_epoch: float  # the measurement window: [start_epoch, end_epoch)
    end_epoch: float
    duration_s: float
    warmup_s: float
    cooldown_s: float


@dataclass
class RequestSummary:
    completed: int  # gRPC OK responses completed inside the window
    verified: int  # ... of which passed verification
    verification_failures: int
    errors: dict[str, int]  # transport errors inside the window, by gRPC status name
    sent_total: int  # requests sent in all phases (warm-up, window, cool-down)
    succeeded_total: int  # gRPC OK responses in all phases: what the server served
    errors_total: dict[str, int]
    verification_failures_total: int
    first_error: str | None
    first_verification_failure: str | None


@dataclass
class ThroughputSummary:
    requests_per_s: float  # completed / duration_s
    frames_per_s: float  # verified x batch / duration_s


@dataclass
class TimelinePoint:
    second: int  # seconds since the window's start
    completed: int


@dataclass
class PoolSummary:
    processes: int
    clients_per_process: list[int]
    host_cpus: int
    cpu_s: float  # CPU time of the parent and all workers over the whole run
    window_cpu_s: float  # CPU time of the workers inside the window
    cpu_share_of_host: float  # window_cpu_s / (duration_s x host_cpus)
    requests_per_cpu_s: float  # completed / window_cpu_s
    peak_rss_mb_per_worker: float  # the largest worker's peak resident memory
    peak_rss_mb_workers: list[float]
    peak_rss_mb_total: float  # workers' peaks plus the parent's


@dataclass
class Summary:
    target: str
    model: str
    version: int | None
    signature: str
    batch: int
    concurrency: int
    processes: int
    api: str
    input: str
    interrupted: bool
    window: WindowSummary
    requests: RequestSummary
    frames: int  # verified responses x batch, inside the window
    throughput: ThroughputSummary
    latency_ms: dict[str, float | None]  # mean, p50, p90, p95, p99, p99_9, max (and min)
    timeline: list[TimelinePoint]
    pool: PoolSummary
    problems: list[str]  # why the exit status is 1; empty for a clean run
    latency_histogram_s: dict[str, Any]  # the merged histogram, to merge pools exactly
    format: int = SUMMARY_FORMAT
    tool: str = "servelab-load"
    workers_lost: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """Indented JSON, with the histogram and the timeline kept to one line each."""
        data = _finite(dataclasses.asdict(self))
        compact = {}
        for key in ("latency_histogram_s", "timeline"):
            compact[key] = json.dumps(data[key], separators=(",", ":"))
            data[key] = f"@{key}@"
        text = json.dumps(data, indent=2)
        for key, value in compact.items():
            text = text.replace(json.dumps(f"@{key}@"), value)
        return text + "\n"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def latency_ms(histogram: LogHistogram) -> dict[str, float | None]:
    if histogram.count == 0:
        return {"mean": None, **{name: None for name, _ in QUANTILES}, "max": None, "min": None}
    out: dict[str, float | None] = {"mean": histogram.mean * 1e3}
    for name, q in QUANTILES:
        out[name] = histogram.quantile(q) * 1e3
    out["max"] = histogram.max * 1e3
    out["min"] = histogram.min * 1e3
    return {k: round(v, 4) for k, v in out.items()}


@dataclass(frozen=True)
class RunFacts:
    """What the parent knows about the run beyond the workers' reports."""

    target: str
    model: str
    version: int | None
    signature: str
    batch: int
    concurrency: int
    api: str
    input: str
    scheduled_start_epoch: float
    warmup_s: float
    duration_s: float
    cooldown_s: float
    clients_per_process: list[int]
    interrupted: bool
    parent_cpu_s: float
    parent_peak_rss_mb: float
    workers_lost: list[str]


def summarize(facts: RunFacts, reports: list[WorkerReport]) -> Summary:
    """Merge the workers' reports into one summary."""
    histogram = LogHistogram()
    window = PhaseCounts()
    all_phases = PhaseCounts()
    timeline: Counter[int] = Counter()
    for report in reports:
        histogram.merge(LogHistogram.from_dict(report.latency))
        window.merge(report.window)
        all_phases.merge(report.all_phases)
        for second, n in enumerate(report.timeline):
            timeline[second] += n

    start = facts.scheduled_start_epoch + facts.warmup_s
    end = max((r.window_end_epoch for r in reports), default=start)
    if not facts.interrupted:
        end = max(end, start + facts.duration_s)
    duration_s = max(0.0, end - start)
    seconds = math.ceil(duration_s - 1e-9)
    window_cpu_s = sum(r.window_cpu_s for r in reports)
    host_cpus = os.cpu_count() or 1
    frames = window.verified * facts.batch

    problems: list[str] = []
    if window.completed == 0:
        problems.append("no request completed inside the window")
    if all_phases.errors:
        listed = ", ".join(f"{n} {code}" for code, n in sorted(all_phases.errors.items()))
        problems.append(f"transport errors: {listed}")
    if all_phases.verification_failures:
        problems.append(f"verification failures: {all_phases.verification_failures}")
    problems.extend(facts.workers_lost)

    def first(attr: str) -> str | None:
        return next((getattr(r, attr) for r in reports if getattr(r, attr)), None)

    rss = [round(r.peak_rss_mb, 1) for r in sorted(reports, key=lambda r: r.worker)]
    return Summary(
        target=facts.target,
        model=facts.model,
        version=facts.version,
        signature=facts.signature,
        batch=facts.batch,
        concurrency=facts.concurrency,
        processes=len(facts.clients_per_process),
        api=facts.api,
        input=facts.input,
        interrupted=facts.interrupted,
        window=WindowSummary(
            scheduled_start_epoch=facts.scheduled_start_epoch,
            load_start_epoch=min(
                (r.load_start_epoch for r in reports if r.load_start_epoch is not None),
                default=None,
            ),
            start_epoch=start,
            end_epoch=end,
            duration_s=round(duration_s, 6),
            warmup_s=facts.warmup_s,
            cooldown_s=facts.cooldown_s,
        ),
        requests=RequestSummary(
            completed=window.completed,
            verified=window.verified,
            verification_failures=window.verification_failures,
            errors=dict(sorted(window.errors.items())),
            sent_total=sum(r.sent_total for r in reports),
            succeeded_total=all_phases.completed,
            errors_total=dict(sorted(all_phases.errors.items())),
            verification_failures_total=all_phases.verification_failures,
            first_error=first("first_error"),
            first_verification_failure=first("first_verification_failure"),
        ),
        frames=frames,
        # Rates at full precision: they are what results are computed and checked from
        # (completed / duration_s), and rounding them would make that check inexact.
        throughput=ThroughputSummary(
            requests_per_s=window.completed / duration_s if duration_s else 0.0,
            frames_per_s=frames / duration_s if duration_s else 0.0,
        ),
        latency_ms=latency_ms(histogram),
        timeline=[TimelinePoint(s, timeline.get(s, 0)) for s in range(seconds)],
        pool=PoolSummary(
            processes=len(facts.clients_per_process),
            clients_per_process=list(facts.clients_per_process),
            host_cpus=host_cpus,
            cpu_s=round(facts.parent_cpu_s + sum(r.cpu_s for r in reports), 3),
            window_cpu_s=round(window_cpu_s, 3),
            cpu_share_of_host=round(window_cpu_s / (duration_s * host_cpus), 4)
            if duration_s
            else 0.0,
            requests_per_cpu_s=round(window.completed / window_cpu_s, 1) if window_cpu_s else 0.0,
            peak_rss_mb_per_worker=max(rss, default=0.0),
            peak_rss_mb_workers=rss,
            peak_rss_mb_total=round(sum(rss) + facts.parent_peak_rss_mb, 1),
        ),
        problems=problems,
        latency_histogram_s=histogram.to_dict(),
        workers_lost=list(facts.workers_lost),
    )
