"""A run's record on disk: results/<run-id>/results.json, rewritten after every point.

The layout is the contract of ../DESIGN (results.json): `run` (provenance) and
`points`, one record per measured or failed point, plus `failures`, the phases
that failed in words.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servelab.clients.histogram import LogHistogram
from servelab.clients.summary import latency_ms
from servelab.controller.kinds import KINDS
from servelab.controller.plan import Point
from servelab.server.modelrepo.ceiling import CeilingRecord

RESULTS_FILE = "results.json"
# The server kinds whose runtime is OpenVINO, which the in-process ceiling measures.
OPENVINO_KINDS = frozenset(kind.name for kind in KINDS.values() if kind.in_process_ceiling)


@dataclass
class PointResult:
    server: str
    model: str
    batch: int
    concurrency: int
    repeat: int
    status: str = "measured"  # or "failed": a phase failed, nothing was measured
    throughput_fps: float | None = None  # verified responses x batch / window
    requests_per_s: float | None = None
    latency_ms: dict[str, float | None] | None = None
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    verify_failures: int = 0
    window: dict[str, float] | None = None  # start_epoch, end_epoch, duration_s
    proxy: dict[str, Any] | None = None  # HAProxy over the window (controller/metrics.py)
    server_metrics: dict[str, Any] | None = None  # the server's own counters over the window
    cpu: dict[str, Any] | None = None  # both platforms' CPU over the window
    network: dict[str, Any] | None = None  # the server host's lab link over the window
    in_process_fps: float | None = None  # the runtime alone on the server host (ceiling.json)
    stability: dict[str, Any] | None = None  # the window's sub-interval rates
    # each scrape job's least-covered share of the window (haproxy, node, model_server)
    scrape_coverage: dict[str, float] | None = None
    valid: bool = False
    reasons: list[str] = field(default_factory=list)
    clients: dict[str, Any] = field(default_factory=dict)  # each client host's pool summary

    @property
    def point(self) -> Point:
        return Point(self.server, self.model, self.batch, self.concurrency, self.repeat)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PointResult:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def from_clients(
    point: Point,
    summaries: dict[str, dict[str, Any]],
    ceiling: dict[tuple[str, int], CeilingRecord] | None = None,
) -> PointResult:
    """A point's client-side numbers, added up over the client hosts' summaries."""
    result = PointResult(point.server, point.model, point.batch, point.concurrency, point.repeat)
    # The ceiling is OpenVINO's own throughput: it belongs to the kinds that run OpenVINO.
    if point.server in OPENVINO_KINDS:
        record = (ceiling or {}).get((point.model, point.batch))
        result.in_process_fps = record.throughput_fps if record else None
    result.clients = summaries
    if not summaries:
        return result
    result.throughput_fps = sum(s["throughput"]["frames_per_s"] for s in summaries.values())
    result.requests_per_s = sum(s["throughput"]["requests_per_s"] for s in summaries.values())
    result.requests = sum(s["requests"]["completed"] for s in summaries.values())
    result.verify_failures = sum(s["requests"]["verification_failures"] for s in summaries.values())
    for summary in summaries.values():
        for code, count in summary["requests"]["errors"].items():
            result.errors[code] = result.errors.get(code, 0) + count
    # The pools start at one agreed instant; the window is the span they all measured.
    start = max(s["window"]["start_epoch"] for s in summaries.values())
    end = min(s["window"]["end_epoch"] for s in summaries.values())
    duration = min(s["window"]["duration_s"] for s in summaries.values())
    result.window = {"start_epoch": start, "end_epoch": end, "duration_s": duration}
    # Pools on several hosts merge exactly through their histograms.
    histogram = LogHistogram()
    for summary in summaries.values():
        histogram.merge(LogHistogram.from_dict(summary["latency_histogram_s"]))
    result.latency_ms = latency_ms(histogram)
    return result


def client_pool_cpu(summaries: dict[str, dict[str, Any]]) -> float | None:
    """The pools' mean share of their own hosts' cores inside the window."""
    shares = [s["pool"]["cpu_share_of_host"] for s in summaries.values() if "pool" in s]
    return sum(shares) / len(shares) if shares else None


def save(run_dir: Path, run: dict[str, Any], points: list[PointResult], failures: list[str]):
    """Write results.json atomically: a reader never sees half a file."""
    document = {"run": run, "points": [asdict(p) for p in points], "failures": failures}
    tmp = run_dir / f"{RESULTS_FILE}.tmp"
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(run_dir / RESULTS_FILE)


def load(run_dir: Path) -> tuple[dict[str, Any], list[PointResult], list[str]]:
    document = json.loads((run_dir / RESULTS_FILE).read_text())
    points = [PointResult.from_json(p) for p in document["points"]]
    return document["run"], points, list(document.get("failures", []))


def summary_table(points: list[PointResult]) -> str:
    """The run's points as a fixed-width table for the terminal."""
    header = (
        f"{'server':<15} {'model':<14} {'batch':>5} {'conc':>4} {'frames/s':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'in-proc':>8}  valid"
    )
    lines = [header, "-" * len(header)]

    def number(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for p in points:
        latency = p.latency_ms or {}
        lines.append(
            f"{p.server:<15} {p.model:<14} {p.batch:>5} {p.concurrency:>4} "
            f"{number(p.throughput_fps):>9} {number(latency.get('p50')):>8} "
            f"{number(latency.get('p99')):>8} {number(p.in_process_fps):>8}  "
            + ("yes" if p.valid else "NO: " + "; ".join(p.reasons))
        )
    return "\n".join(lines)
