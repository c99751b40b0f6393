"""The history of finished runs: results/history.jsonl, one record per finished run.

The index is append-only: a finished run adds one line, and nothing else in
results/ is written, so older run directories stay exactly as their runs left
them. A run finished again (a `--resume`) appends a newer record under the same
run id; readers take the last one. Each record carries what the verdict needs
(every point's median of valid repeats, or why it has none), so the history
still judges after old run directories are pruned.

Records are grouped into comparable series by the plan's name, a hash of the
plan's measuring settings (window, repeats, validity: what changes how a point
is measured, not which points there are) and a hash of the hosts (hostname,
CPU model, cores, memory of each platform). The `servelab history` command, which
prints and draws the index, is in controller/trend.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servelab.controller.compare import aggregate_side
from servelab.controller.filelock import exclusive
from servelab.controller.intervals import interval
from servelab.controller.plan import DEFAULT_VALIDITY
from servelab.controller.results import PointResult, RunResults, read_results

HISTORY_FILE = "history.jsonl"
HISTORY_LOCK = ".history.lock"
# Plan keys that only say which points exist; the rest says how each is measured.
PLAN_POINT_KEYS = frozenset(
    {"name", "description", "servers", "baseline", "models", "batches", "concurrency"}
)


class HistoryError(ValueError):
    """A history index or run the history cannot use (bad input)."""

    exit_code = 2


PointKey = tuple[str, str, int, int]  # server, model, batch, concurrency


class PointKeyed:
    """A point as runs share it (repeats merged): its key and its name."""

    server: str
    model: str
    batch: int
    concurrency: int

    @property
    def key(self) -> PointKey:
        return (self.server, self.model, self.batch, self.concurrency)

    @property
    def slug(self) -> str:
        return f"{self.server}-{self.model}-b{self.batch}-c{self.concurrency}"


@dataclass(frozen=True)
class PointValue(PointKeyed):
    """One point of one run: the median of its valid repeats, or why it has none."""

    server: str
    model: str
    batch: int
    concurrency: int
    throughput_fps: float | None  # median of the valid repeats (of the measured ones if none)
    valid: bool  # at least one valid repeat
    valid_repeats: int
    repeats: int
    reasons: tuple[str, ...]  # why repeats are invalid or failed
    # the run's own 95% interval of the point's mean (controller/intervals.py); None where
    # it has none (one repeat of a short window, or a run registered before intervals)
    low_fps: float | None = None
    high_fps: float | None = None
    interval_samples: int = 0
    interval_note: str | None = None  # why there are no bounds

    def to_json(self) -> dict[str, Any]:
        data = {**asdict(self), "reasons": list(self.reasons)}
        for name in ("low_fps", "high_fps", "interval_note"):
            if data[name] is None:  # lines written before intervals stay as they were
                del data[name]
        if not data["interval_samples"]:
            del data["interval_samples"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PointValue:
        fps = data.get("throughput_fps")
        return cls(
            server=str(data["server"]),
            model=str(data["model"]),
            batch=int(data["batch"]),
            concurrency=int(data["concurrency"]),
            throughput_fps=None if fps is None else float(fps),
            valid=bool(data["valid"]),
            valid_repeats=int(data.get("valid_repeats", 0)),
            repeats=int(data.get("repeats", 0)),
            reasons=tuple(str(r) for r in data.get("reasons", [])),
            low_fps=None if data.get("low_fps") is None else float(data["low_fps"]),
            high_fps=None if data.get("high_fps") is None else float(data["high_fps"]),
            interval_samples=int(data.get("interval_samples", 0)),
            interval_note=None if data.get("interval_note") is None else str(data["interval_note"]),
        )


@dataclass(frozen=True)
class HistoryRecord:
    """One finished run as the index holds it."""

    run_id: str
    path: str  # the run directory, relative to the results directory when inside it
    plan_name: str
    plan_hash: str  # the whole plan
    method_hash: str  # the plan's measuring settings (window, repeats, validity, ...)
    hosts_id: str  # hostname, CPU model, cores and memory of every host
    hosts: tuple[str, ...]  # "server: lab-a (Xeon ..., 8 cores)" for reading
    versions: dict[str, str]  # flattened "server_python: openvino" -> "2026.4.1"
    git_commit: str | None
    started: str | None
    finished: str | None
    registered: str
    points: tuple[PointValue, ...]

    @property
    def series(self) -> tuple[str, str, str]:
        """Runs of one series are comparable: same plan, measured the same way, same hosts."""
        return (self.plan_name, self.method_hash, self.hosts_id)

    def point(self, key: PointKey) -> PointValue | None:
        return next((p for p in self.points if p.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": self.path,
            "plan": self.plan_name,
            "plan_hash": self.plan_hash,
            "method_hash": self.method_hash,
            "hosts_id": self.hosts_id,
            "hosts": list(self.hosts),
            "versions": self.versions,
            "git_commit": self.git_commit,
            "started": self.started,
            "finished": self.finished,
            "registered": self.registered,
            "points": [p.to_json() for p in self.points],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryRecord:
        return cls(
            run_id=str(data["run_id"]),
            path=str(data["path"]),
            plan_name=str(data["plan"]),
            plan_hash=str(data["plan_hash"]),
            method_hash=str(data["method_hash"]),
            hosts_id=str(data["hosts_id"]),
            hosts=tuple(str(h) for h in data.get("hosts", [])),
            versions={str(k): str(v) for k, v in (data.get("versions") or {}).items()},
            git_commit=data.get("git_commit"),
            started=data.get("started"),
            finished=data.get("finished"),
            registered=str(data["registered"]),
            points=tuple(PointValue.from_json(p) for p in data["points"]),
        )


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _numbers_as_floats(value: Any) -> Any:
    """10 and 10.0 seconds are the same setting."""
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# Validity bounds added after runs entered histories: at their default they leave a plan's
# hash as it was, so the runs before them stay comparable with the runs after.
LATER_VALIDITY_FIELDS = (
    "min_scrape_coverage",
    "max_ci_halfwidth",
    "min_requests",
    "max_frequency_change",
    "max_lab_cpu",
)


def method_hash(plan: dict[str, Any]) -> str:
    """How the plan measures a point, with its defaults written out (as plan.py fills them)."""
    settings = {k: v for k, v in plan.items() if k not in PLAN_POINT_KEYS}
    settings.setdefault("repeats", 1)
    validity = {**asdict(DEFAULT_VALIDITY), **(plan.get("validity") or {})}
    for name in LATER_VALIDITY_FIELDS:
        if validity[name] == getattr(DEFAULT_VALIDITY, name):
            del validity[name]
    settings["validity"] = validity
    return _digest(_numbers_as_floats(settings))


def hosts_identity(results: RunResults) -> tuple[str, tuple[str, ...]]:
    """A hash of what makes two runs' hosts the same machines, and a readable line per host."""
    identity = sorted(
        (h.platform, h.hostname or h.name or "", h.cpu_model or "", h.cores, h.memory_bytes)
        for h in results.hosts
    )
    lines = tuple(
        f"{h.platform}: {h.hostname or h.name or '?'} ({h.cpu_model or 'unknown CPU'}, "
        f"{h.cores if h.cores is not None else '?'} cores)"
        for h in results.hosts
    )
    return _digest(identity), lines


def point_values(points: Sequence[PointResult]) -> tuple[PointValue, ...]:
    """Each (server, model, batch, concurrency) of a run, its repeats aggregated as compare does."""
    groups: dict[PointKey, list[PointResult]] = {}
    for p in points:
        groups.setdefault((p.server, p.model, p.batch, p.concurrency), []).append(p)
    values = []
    for key, group in groups.items():
        side = aggregate_side(group)
        bounds = interval(side.estimate) if side.estimate else None
        values.append(
            PointValue(
                *key,
                throughput_fps=side.throughput_fps,
                valid=side.valid,
                valid_repeats=side.valid_repeats,
                repeats=side.repeats,
                reasons=side.reasons,
                low_fps=bounds.low if bounds else None,
                high_fps=bounds.high if bounds else None,
                interval_samples=bounds.samples if bounds else 0,
                interval_note=None if bounds else side.interval_note,
            )
        )
    return tuple(values)


def record_of(run_dir: Path, results_root: Path) -> HistoryRecord:
    """The index record of a run directory (its results.json)."""
    results = read_results(run_dir)
    hosts_id, hosts = hosts_identity(results)
    try:
        path = str(run_dir.resolve().relative_to(results_root.resolve()))
    except ValueError:
        path = str(run_dir.resolve())
    return HistoryRecord(
        run_id=results.run_id,
        path=path,
        plan_name=results.plan_name,
        plan_hash=_digest(results.plan),
        method_hash=method_hash(results.plan),
        hosts_id=hosts_id,
        hosts=hosts,
        versions=dict(results.versions),
        git_commit=results.git_commit,
        started=results.started,
        finished=results.finished,
        registered=datetime.now(UTC).isoformat(),
        points=point_values(results.points),
    )


@contextmanager
def _locked(results_root: Path) -> Iterator[None]:
    """Writers of the index take turns (two runs may finish at once)."""
    results_root.mkdir(parents=True, exist_ok=True)
    with exclusive(results_root / HISTORY_LOCK):
        yield


def _read_lines(index: Path) -> list[HistoryRecord]:
    if not index.exists():
        return []
    records = []
    for number, line in enumerate(index.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(HistoryRecord.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise HistoryError(f"{index}:{number}: not a history record ({exc})") from None
    return records


def read_history(results_root: Path) -> list[HistoryRecord]:
    """Every registered run once (its newest record), oldest start first."""
    latest: dict[str, HistoryRecord] = {}
    for record in _read_lines(results_root / HISTORY_FILE):
        latest[record.run_id] = record
    return sorted(latest.values(), key=lambda r: (r.started or "", r.run_id))


def register(run_dir: Path, results_root: Path | None = None) -> HistoryRecord:
    """Append the finished run to the index, unless its newest record already says the same."""
    results_root = results_root or run_dir.resolve().parent
    record = record_of(run_dir, results_root)
    if record.finished is None:
        raise HistoryError(f"{run_dir}: the run has not finished; only finished runs are kept")
    index = results_root / HISTORY_FILE
    with _locked(results_root):
        known = [r for r in _read_lines(index) if r.run_id == record.run_id]
        if known and _same(known[-1], record):
            return known[-1]
        # One write of one whole line: a reader sees the record or nothing of it.
        line = (json.dumps(record.to_json(), sort_keys=True) + "\n").encode()
        fd = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    return record


def _same(a: HistoryRecord, b: HistoryRecord) -> bool:
    def content(r: HistoryRecord) -> dict[str, Any]:
        return {k: v for k, v in r.to_json().items() if k != "registered"}

    return content(a) == content(b)
