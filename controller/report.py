"""The report of a run: results.csv, report.md, report.html and charts/*.png from results.json.

Every number shown comes from the run's results.json; nothing is measured or assumed
here. The published result shape is kept: throughput per model and batch size, each
server kind's throughput relative to the plan's baseline kind at the same model and
batch size, and each configuration relative to the baseline at batch 1.

How a configuration's throughput is formed (the gains are computed from this alone):
per (kind, model, batch, concurrency) the median of the valid repeats' frames/s;
per (kind, model, batch) the concurrency with the highest such median (the lower
concurrency on a tie). Invalid and failed points never enter a gain.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from servelab.controller.phases import PROJECT_DIR

TEMPLATES_DIR = PROJECT_DIR / "templates"
RESULTS_FILE = "results.json"
CHARTS_DIR = "charts"
DASH = "\u2013"  # an en dash: what a number that does not exist looks like, in every format but CSV

# Distinctive colours per server kind (the HTML test finds them in a screenshot).
KIND_COLOURS = {
    "ref-openvino": "#1565c0",
    "ref-tensorflow": "#ef6c00",
    "ovms": "#6a1b9a",
    "tfserving": "#c62828",
}
OTHER_KIND_COLOURS = ("#2e7d32", "#00838f", "#8d6e63", "#ad1457", "#827717", "#37474f")
KIND_DESCRIPTIONS = {
    "ref-openvino": "refserver (this project's reference server) on the OpenVINO runtime",
    "ref-tensorflow": "refserver (this project's reference server) on the TensorFlow runtime",
    "ovms": "OpenVINO Model Server",
    "tfserving": "TensorFlow Serving",
}
LATENCY_FIELDS = ("mean", "p50", "p90", "p95", "p99", "p99_9", "max", "min")
STATUSES = ("measured", "failed")


class ReportError(ValueError):
    """A run directory or results.json the report cannot be built from (bad input)."""

    exit_code = 2


# ---------------------------------------------------------------------------
# Reading results.json


@dataclass(frozen=True)
class Latency:
    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p99_9_ms: float | None = None
    max_ms: float | None = None
    min_ms: float | None = None


@dataclass(frozen=True)
class WindowRecord:
    start_epoch: float | None
    end_epoch: float | None
    duration_s: float | None


@dataclass(frozen=True)
class ProxyRecord:
    requests: int | None
    requests_per_s: float | None
    avg_response_ms: float | None


@dataclass(frozen=True)
class ServerMetricsRecord:
    requests: int | None
    requests_per_s: float | None
    errors: int | None
    request_mean_ms: float | None
    inference_mean_ms: float | None


@dataclass(frozen=True)
class CpuRecord:
    """Fractions of each platform's cores (1.0 = every core busy)."""

    server: float | None
    client: float | None
    client_pool: float | None


@dataclass(frozen=True)
class PointRecord:
    """One point of results.json, every optional part None when it is null or missing."""

    server: str
    model: str
    batch: int
    concurrency: int
    repeat: int
    status: str
    valid: bool
    reasons: tuple[str, ...]
    throughput_fps: float | None
    requests_per_s: float | None
    latency: Latency
    requests: int | None
    errors: dict[str, int] | None
    verify_failures: int | None
    window: WindowRecord | None
    proxy: ProxyRecord | None
    server_metrics: ServerMetricsRecord | None
    cpu: CpuRecord | None
    in_process_fps: float | None
    stability_spread: float | None

    @property
    def counted(self) -> bool:
        """Whether this point may enter a gain: measured, valid and with a throughput."""
        return self.status == "measured" and self.valid and self.throughput_fps is not None

    @property
    def errors_total(self) -> int | None:
        return None if self.errors is None else sum(self.errors.values())

    @property
    def served_fraction(self) -> float | None:
        """Served throughput over the runtime's in-process throughput (same model and batch)."""
        if self.throughput_fps is None or not self.in_process_fps:
            return None
        return self.throughput_fps / self.in_process_fps

    @property
    def verdict(self) -> str:
        if self.status == "failed":
            return "FAILED: " + ("; ".join(self.reasons) or "no reason recorded")
        if not self.valid:
            return "INVALID: " + ("; ".join(self.reasons) or "no reason recorded")
        return "valid"

    @property
    def label(self) -> str:
        return (
            f"{self.server} {self.model} batch {self.batch} "
            f"concurrency {self.concurrency} repeat {self.repeat}"
        )


@dataclass(frozen=True)
class HostRecord:
    platform: str
    name: str | None
    hostname: str | None
    cpu_model: str | None
    cores: int | None
    memory_bytes: int | None
    kernel: str | None
    os: str | None


@dataclass(frozen=True)
class RunResults:
    """A whole results.json, read and checked."""

    path: Path
    run_id: str
    plan: dict[str, Any]
    started: str | None
    finished: str | None
    git_commit: str | None
    inventory: str | None
    hosts: tuple[HostRecord, ...]
    versions: tuple[tuple[str, str], ...]  # (component, version), flattened in file order
    controller: tuple[tuple[str, str], ...]
    points: tuple[PointRecord, ...]
    failures: tuple[str, ...]

    @property
    def plan_name(self) -> str:
        return str(self.plan.get("name") or self.run_id)

    @property
    def description(self) -> str:
        return str(self.plan.get("description") or "")

    @cached_property
    def kinds(self) -> tuple[str, ...]:
        """The plan's server kinds in its order, then any other kind the points name."""
        return _ordered(_str_list(self.plan.get("servers")), (p.server for p in self.points))

    @cached_property
    def models(self) -> tuple[str, ...]:
        return _ordered(_str_list(self.plan.get("models")), (p.model for p in self.points))

    @cached_property
    def batches(self) -> tuple[int, ...]:
        planned = self.plan.get("batches")
        values = {b for b in planned if _is_int(b)} if isinstance(planned, list) else set()
        return tuple(sorted(values | {p.batch for p in self.points}))

    @property
    def baseline(self) -> str | None:
        """The plan's baseline kind (as the plan loader defaults it: the last server)."""
        baseline = self.plan.get("baseline")
        if isinstance(baseline, str) and baseline:
            return baseline
        servers = _str_list(self.plan.get("servers"))
        return servers[-1] if servers else None

    def sort_key(self, point: PointRecord) -> tuple[int, int, int, int, int]:
        return (
            self.kinds.index(point.server),
            self.models.index(point.model),
            point.batch,
            point.concurrency,
            point.repeat,
        )


def _ordered(first: Iterable[str], then: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *then]))


def _str_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class _Fields:
    """Typed access to one JSON object; a wrong type is a ReportError naming file and field."""

    def __init__(self, path: Path, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ReportError(f"{path}: {where} is {_json_type(data)}; expected an object")
        self.path = path
        self.where = where
        self.data = data

    def _wrong(self, key: str, expected: str) -> ReportError:
        value = self.data[key]
        return ReportError(
            f"{self.path}: {self.where}.{key} is {_json_type(value)} ({str(value)[:60]!r}); "
            f"expected {expected}"
        )

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise ReportError(f"{self.path}: {self.where} has no '{key}'")
        return value

    def number(self, key: str) -> float | None:
        value = self._get(key, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number or null")
        return float(value) if math.isfinite(value) else None

    def integer(self, key: str, required: bool = False, digits: bool = False) -> int | None:
        """An integer; with digits=True also a string of digits (Ansible's templated facts)."""
        value = self._get(key, required)
        if value is None:
            return None
        if digits and isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not _is_int(value):
            raise self._wrong(key, "an integer")
        return int(value)

    def text(self, key: str, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def child(self, key: str) -> _Fields | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._wrong(key, "an object or null")
        return _Fields(self.path, f"{self.where}.{key}", value)

    def strings(self, key: str) -> list[str]:
        value = self._get(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "a list of strings")
        return [str(v) for v in value]


def _read_point(fields: _Fields) -> PointRecord:
    status = fields.text("status") or "measured"
    if status not in STATUSES:
        raise ReportError(
            f"{fields.path}: {fields.where}.status is {status!r}; expected one of {list(STATUSES)}"
        )
    reasons = fields.strings("reasons")
    valid = fields.boolean("valid")
    if valid is None:
        valid = False
        reasons.append("results.json records no validity verdict for this point")
    if status == "failed":
        valid = False
    latency_fields = fields.child("latency_ms")
    latency = Latency(
        **{f"{name}_ms": latency_fields.number(name) for name in LATENCY_FIELDS}
        if latency_fields
        else {}
    )
    errors_fields = fields.child("errors")
    errors = None
    if errors_fields is not None:
        errors = {code: errors_fields.integer(code) or 0 for code in errors_fields.data}
    window = None
    if (w := fields.child("window")) is not None:
        window = WindowRecord(
            w.number("start_epoch"), w.number("end_epoch"), w.number("duration_s")
        )
    elif (duration_s := fields.number("window_s")) is not None:  # run.py's first cut
        window = WindowRecord(None, None, duration_s)
    proxy = None
    if (p := fields.child("proxy")) is not None:
        proxy = ProxyRecord(
            p.integer("requests"), p.number("requests_per_s"), p.number("avg_response_ms")
        )
    metrics = None
    if (m := fields.child("server_metrics")) is not None:
        metrics = ServerMetricsRecord(
            m.integer("requests"),
            m.number("requests_per_s"),
            m.integer("errors"),
            m.number("request_ms_mean"),
            m.number("inference_ms_mean"),
        )
    cpu = None
    if (c := fields.child("cpu")) is not None:
        cpu = CpuRecord(c.number("server"), c.number("client"), c.number("client_pool"))
    stability = fields.child("stability")
    return PointRecord(
        server=fields.text("server", required=True) or "",
        model=fields.text("model", required=True) or "",
        batch=fields.integer("batch", required=True) or 0,
        concurrency=fields.integer("concurrency", required=True) or 0,
        repeat=fields.integer("repeat") or 0,
        status=status,
        valid=valid,
        reasons=tuple(reasons),
        throughput_fps=fields.number("throughput_fps"),
        requests_per_s=fields.number("requests_per_s"),
        latency=latency,
        requests=fields.integer("requests"),
        errors=errors,
        verify_failures=fields.integer("verify_failures"),
        window=window,
        proxy=proxy,
        server_metrics=metrics,
        cpu=cpu,
        in_process_fps=fields.number("in_process_fps"),
        stability_spread=stability.number("spread") if stability else None,
    )


def _read_hosts(run: _Fields) -> tuple[HostRecord, ...]:
    hosts = run.child("hosts")
    if hosts is None:
        return ()
    records = []
    for platform, value in hosts.data.items():
        entries = value if isinstance(value, list) else [value]
        for index, entry in enumerate(entries):
            if entry is None:
                continue
            h = _Fields(run.path, f"run.hosts.{platform}[{index}]", entry)
            records.append(
                HostRecord(
                    platform=str(platform),
                    name=h.text("name"),
                    hostname=h.text("hostname"),
                    cpu_model=h.text("cpu_model"),
                    cores=h.integer("cores", digits=True),
                    memory_bytes=h.integer("memory_bytes", digits=True),
                    kernel=h.text("kernel"),
                    os=h.text("os"),
                )
            )
    return tuple(records)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}: "))
        else:
            rows.append((name, DASH if value is None else str(value)))
    return rows


def load_results(path: Path) -> RunResults:
    """Read a results.json (or the results.json of a run directory); ReportError if unusable."""
    if path.is_dir():
        path = path / RESULTS_FILE
    elif not path.exists():
        raise ReportError(f"{path}: no such run directory or file")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (a run directory holds results.json)") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not JSON (not UTF-8 text)") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON: {exc}") from None
    top = _Fields(path, "the document", document)
    for key in ("run", "points"):
        if key not in document:
            raise ReportError(f"{path}: has no '{key}'; not a servelab results.json")
    run = top.child("run")
    if run is None:
        raise ReportError(f"{path}: 'run' is null; expected the run's object")
    points = document["points"]
    if not isinstance(points, list):
        raise ReportError(f"{path}: 'points' is {_json_type(points)}; expected a list")
    plan = run.child("plan")
    if plan is None:
        raise ReportError(f"{path}: run.plan is missing; the report needs the run's plan")
    versions = run.child("versions")
    controller = run.child("controller")
    return RunResults(
        path=path,
        run_id=run.text("id", required=True) or "",
        plan=plan.data,
        started=run.text("started"),
        finished=run.text("finished"),
        git_commit=run.text("git_commit"),
        inventory=run.text("inventory"),
        hosts=_read_hosts(run),
        versions=tuple(_flatten(versions.data)) if versions else (),
        controller=tuple(_flatten(controller.data)) if controller else (),
        points=tuple(_read_point(_Fields(path, f"points[{i}]", p)) for i, p in enumerate(points)),
        failures=tuple(top.strings("failures")),
    )


# ---------------------------------------------------------------------------
# Aggregation and gains


@dataclass(frozen=True)
class ConfigThroughput:
    """One (kind, model, batch, concurrency): the median of its valid repeats."""

    kind: str
    model: str
    batch: int
    concurrency: int
    throughput_fps: float  # median of the valid repeats' frames/s
    repeats: int  # valid repeats the median is taken over
    repeats_total: int  # every point of this configuration, valid, invalid or failed
    p50_ms: float | None  # medians of the same valid repeats' client latency percentiles
    p90_ms: float | None
    p99_ms: float | None


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate_configs(
    points: Iterable[PointRecord],
) -> dict[tuple[str, str, int, int], ConfigThroughput]:
    """Per (kind, model, batch, concurrency) with a valid repeat: the median over valid repeats."""
    groups: dict[tuple[str, str, int, int], list[PointRecord]] = {}
    for point in points:
        key = (point.server, point.model, point.batch, point.concurrency)
        groups.setdefault(key, []).append(point)
    configs = {}
    for key, group in groups.items():
        counted = [p for p in group if p.counted]
        if not counted:
            continue
        configs[key] = ConfigThroughput(
            kind=key[0],
            model=key[1],
            batch=key[2],
            concurrency=key[3],
            throughput_fps=statistics.median(p.throughput_fps or 0.0 for p in counted),
            repeats=len(counted),
            repeats_total=len(group),
            p50_ms=_median(p.latency.p50_ms for p in counted),
            p90_ms=_median(p.latency.p90_ms for p in counted),
            p99_ms=_median(p.latency.p99_ms for p in counted),
        )
    return configs


def best_configs(points: Iterable[PointRecord]) -> dict[tuple[str, str, int], ConfigThroughput]:
    """Per (kind, model, batch): the concurrency with the highest median (lower on a tie)."""
    best: dict[tuple[str, str, int], ConfigThroughput] = {}
    for config in sorted(aggregate_configs(points).values(), key=lambda c: c.concurrency):
        key = (config.kind, config.model, config.batch)
        if key not in best or config.throughput_fps > best[key].throughput_fps:
            best[key] = config
    return best


@dataclass(frozen=True)
class Relative:
    """A configuration's throughput as a percentage of a reference configuration's."""

    kind: str
    model: str
    batch: int
    config: ConfigThroughput | None
    reference: ConfigThroughput | None
    note: str | None  # why there is no percentage

    @property
    def percent(self) -> float | None:
        if self.config is None or self.reference is None or not self.reference.throughput_fps:
            return None
        return 100.0 * self.config.throughput_fps / self.reference.throughput_fps


def _missing(results: RunResults, kind: str, model: str, batch: int) -> str:
    """Why (kind, model, batch) has no valid throughput, with what the run does hold."""
    points = [p for p in results.points if (p.server, p.model, p.batch) == (kind, model, batch)]
    failed = sum(p.status == "failed" for p in points)
    invalid = len(points) - failed
    held = [f"{n} {word}" for n, word in ((invalid, "invalid"), (failed, "failed")) if n]
    return f"{kind} {model} batch {batch}: no valid point" + (
        f" ({', '.join(held)})" if held else " (not measured)"
    )


def _relative(
    results: RunResults,
    best: Mapping[tuple[str, str, int], ConfigThroughput],
    kind: str,
    model: str,
    batch: int,
    reference_batch: int,
) -> Relative:
    baseline = results.baseline or ""
    config = best.get((kind, model, batch))
    reference = best.get((baseline, model, reference_batch))
    note = None
    if config is None:
        note = _missing(results, kind, model, batch)
    elif reference is None:
        note = "baseline " + _missing(results, baseline, model, reference_batch)
    elif not reference.throughput_fps:
        note = f"baseline {baseline} {model} batch {reference_batch}: 0 frames/s"
    return Relative(kind, model, batch, config, reference, note)


def relative_to_baseline(
    results: RunResults, best: Mapping[tuple[str, str, int], ConfigThroughput]
) -> list[Relative]:
    """Per model, batch and kind: throughput / the baseline's at the same model and batch."""
    return [
        _relative(results, best, kind, model, batch, batch)
        for model in results.models
        for batch in results.batches
        for kind in results.kinds
    ]


def relative_to_baseline_batch1(
    results: RunResults, best: Mapping[tuple[str, str, int], ConfigThroughput]
) -> list[Relative]:
    """Per model, kind and batch: throughput / the baseline's at the same model, batch 1."""
    return [
        _relative(results, best, kind, model, batch, 1)
        for model in results.models
        for kind in results.kinds
        for batch in results.batches
    ]


@dataclass(frozen=True)
class PointCounts:
    total: int
    valid: int
    invalid: int
    failed: int


def count_points(points: Sequence[PointRecord]) -> PointCounts:
    failed = sum(p.status == "failed" for p in points)
    valid = sum(p.status == "measured" and p.valid for p in points)
    return PointCounts(len(points), valid, len(points) - valid - failed, failed)


# ---------------------------------------------------------------------------
# Formatting (one place, so that every format shows the same rounding)


def format_fps(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def format_ms(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def format_percent(value: float | None, digits: int = 1) -> str:
    """A value already in percent."""
    return DASH if value is None else f"{value:.{digits}f}%"


def format_fraction(value: float | None, digits: int = 0) -> str:
    """A fraction (1.0 = 100%) as a percentage."""
    return DASH if value is None else f"{100.0 * value:.{digits}f}%"


def format_count(value: int | None) -> str:
    return DASH if value is None else str(value)


def format_bytes(value: int | None) -> str:
    return DASH if value is None else f"{value / 2**30:.1f} GiB"


def _markdown_cell(value: Any) -> str:
    """Text for a Markdown table cell or list item: one line, no table break, no raw HTML."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.replace("|", "\\|").replace("<", "\\<")


# ---------------------------------------------------------------------------
# CSV

CSV_COLUMNS = (
    "server",
    "model",
    "batch",
    "concurrency",
    "repeat",
    "status",
    "valid",
    "reasons",
    "throughput_fps",
    "requests_per_s",
    *(f"latency_{name}_ms" for name in LATENCY_FIELDS),
    "requests",
    "errors_total",
    "errors",
    "verify_failures",
    "proxy_requests",
    "proxy_requests_per_s",
    "proxy_avg_response_ms",
    "server_requests",
    "server_requests_per_s",
    "server_errors",
    "server_request_mean_ms",
    "server_inference_mean_ms",
    "cpu_server_fraction",
    "cpu_client_fraction",
    "cpu_client_pool_fraction",
    "in_process_fps",
    "served_fraction_of_in_process",
    "stability_spread",
    "window_start_epoch",
    "window_end_epoch",
    "window_duration_s",
)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_row(point: PointRecord) -> dict[str, str]:
    """One point flattened to the CSV's columns (full precision, empty for null)."""
    proxy, metrics, cpu, window = point.proxy, point.server_metrics, point.cpu, point.window
    values: dict[str, Any] = {
        "server": point.server,
        "model": point.model,
        "batch": point.batch,
        "concurrency": point.concurrency,
        "repeat": point.repeat,
        "status": point.status,
        "valid": point.valid,
        "reasons": "; ".join(point.reasons),
        "throughput_fps": point.throughput_fps,
        "requests_per_s": point.requests_per_s,
        **{f"latency_{n}_ms": getattr(point.latency, f"{n}_ms") for n in LATENCY_FIELDS},
        "requests": point.requests,
        "errors_total": point.errors_total,
        "errors": " ".join(f"{code}={n}" for code, n in (point.errors or {}).items()),
        "verify_failures": point.verify_failures,
        "proxy_requests": proxy.requests if proxy else None,
        "proxy_requests_per_s": proxy.requests_per_s if proxy else None,
        "proxy_avg_response_ms": proxy.avg_response_ms if proxy else None,
        "server_requests": metrics.requests if metrics else None,
        "server_requests_per_s": metrics.requests_per_s if metrics else None,
        "server_errors": metrics.errors if metrics else None,
        "server_request_mean_ms": metrics.request_mean_ms if metrics else None,
        "server_inference_mean_ms": metrics.inference_mean_ms if metrics else None,
        "cpu_server_fraction": cpu.server if cpu else None,
        "cpu_client_fraction": cpu.client if cpu else None,
        "cpu_client_pool_fraction": cpu.client_pool if cpu else None,
        "in_process_fps": point.in_process_fps,
        "served_fraction_of_in_process": point.served_fraction,
        "stability_spread": point.stability_spread,
        "window_start_epoch": window.start_epoch if window else None,
        "window_end_epoch": window.end_epoch if window else None,
        "window_duration_s": window.duration_s if window else None,
    }
    return {column: _csv_value(values[column]) for column in CSV_COLUMNS}


def _csv_text(points: Sequence[PointRecord]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for point in points:
        writer.writerow(csv_row(point))
    return out.getvalue()


# ---------------------------------------------------------------------------
# Charts


@dataclass(frozen=True)
class Chart:
    path: Path  # charts/<name>.png inside the run directory
    title: str

    @property
    def relative_path(self) -> str:
        return f"{CHARTS_DIR}/{self.path.name}"

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode("ascii")


def kind_colours(kinds: Sequence[str]) -> dict[str, str]:
    """A fixed colour per kind: the known kinds' own, others from a palette in order."""
    others = iter(OTHER_KIND_COLOURS * (len(kinds) // len(OTHER_KIND_COLOURS) + 1))
    return {kind: KIND_COLOURS.get(kind) or next(others) for kind in kinds}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    buffer = io.BytesIO()
    # No Software/date metadata: the same results give the same bytes.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    _write_bytes(path, buffer.getvalue())


Best = Mapping[tuple[str, str, int], ConfigThroughput]
BASIS = "median of valid repeats, each kind at its best concurrency"


def _offsets(n: int) -> tuple[float, list[float]]:
    """Bar width and each of n grouped bars' offset from its group's centre."""
    width = 0.8 / n
    return width, [(i - (n - 1) / 2) * width for i in range(n)]


def _throughput_at_batch(
    best: Best, kinds: Sequence[str], models: Sequence[str], batch: int, colours: dict[str, str]
) -> Any:
    """(a) Grouped bars: throughput per model at one batch size, one bar per kind."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.5))
    ax = figure.add_subplot()
    width, offsets = _offsets(len(kinds))
    for kind, offset in zip(kinds, offsets, strict=True):
        configs = [best.get((kind, model, batch)) for model in models]
        bars = ax.bar(
            [j + offset for j in range(len(models))],
            [c.throughput_fps if c else 0.0 for c in configs],
            width * 0.95,
            label=kind,
            color=colours[kind],
        )
        labels = [format_fps(c.throughput_fps if c else None) for c in configs]
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.set_xticks(range(len(models)), models)
    ax.set_xlabel("model")
    ax.set_ylabel("throughput (frames/s)")
    ax.set_title(f"Throughput at batch {batch} ({BASIS})", fontsize=10)
    ax.margins(y=0.12)
    ax.legend(title="server kind", fontsize=8)
    return figure


def _throughput_against_batch(
    best: Best, kinds: Sequence[str], model: str, batches: Sequence[int], colours: dict[str, str]
) -> Any:
    """(b) Lines: one model's throughput against batch size, one line per kind."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    figure = Figure(figsize=(9, 4.5))
    ax = figure.add_subplot()
    for kind in kinds:
        measured = [b for b in batches if (kind, model, b) in best]
        ax.plot(
            measured,
            [best[(kind, model, b)].throughput_fps for b in measured],
            marker="o",
            linewidth=2.5,
            markersize=7,
            label=kind,
            color=colours[kind],
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(batches)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size (frames per request)")
    ax.set_ylabel("throughput (frames/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{model}: throughput against batch size ({BASIS})", fontsize=10)
    ax.legend(title="server kind", fontsize=8)
    return figure


LATENCY_SHADES = (("p99", 0.3), ("p90", 0.55), ("p50", 1.0))  # drawn in this order


def _latency(
    best: Best, kinds: Sequence[str], model: str, batches: Sequence[int], colours: dict[str, str]
) -> Any:
    """(c) One model's client latency p50/p90/p99 per batch size: shades of each kind's colour."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(9, 4.5))
    ax = figure.add_subplot()
    width, offsets = _offsets(len(kinds))
    for kind, offset in zip(kinds, offsets, strict=True):
        for j, batch in enumerate(batches):
            config = best.get((kind, model, batch))
            for name, alpha in LATENCY_SHADES if config else ():
                value = getattr(config, f"{name}_ms")
                if value is not None:
                    ax.bar(j + offset, value, width * 0.95, color=colours[kind], alpha=alpha)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("client latency (ms)")
    ax.set_title(f"{model}: latency p50 (solid) / p90 / p99 (lightest), {BASIS}", fontsize=10)
    handles = [Patch(color=colours[k], label=k) for k in kinds]
    handles += [Patch(color="#555555", alpha=a, label=n) for n, a in LATENCY_SHADES]
    ax.legend(handles=handles, fontsize=8)
    return figure


def write_charts(results: RunResults, best: Best, charts_dir: Path) -> list[Chart]:
    """Throughput per batch size, throughput against batch size, latency; PNGs in charts_dir."""
    if not best:
        return []
    import matplotlib.style

    charts_dir.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in results.kinds if any(key[0] == k for key in best)]
    colours = kind_colours(results.kinds)
    charts: list[Chart] = []

    def measured(model: str, batch: int) -> bool:
        return any((kind, model, batch) in best for kind in kinds)

    def save(figure: Any, name: str, title: str) -> None:
        path = charts_dir / name
        _save(figure, path)
        charts.append(Chart(path, title))

    with matplotlib.style.context("default"):  # not the user's matplotlibrc
        for batch in results.batches:
            models = [m for m in results.models if measured(m, batch)]
            if models:
                figure = _throughput_at_batch(best, kinds, models, batch, colours)
                save(figure, f"throughput_batch_{batch}.png", f"Throughput at batch {batch}")
        for model in results.models:
            batches = [b for b in results.batches if measured(model, b)]
            if batches:
                figure = _throughput_against_batch(best, kinds, model, batches, colours)
                title = f"{model}: throughput against batch size"
                save(figure, f"throughput_vs_batch_{_slug(model)}.png", title)
        for model in results.models:
            batches = [b for b in results.batches if measured(model, b)]
            if batches:
                figure = _latency(best, kinds, model, batches, colours)
                save(figure, f"latency_{_slug(model)}.png", f"{model}: latency percentiles")
    return charts


# ---------------------------------------------------------------------------
# The report


def _write_bytes(path: Path, data: bytes) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fps=format_fps,
        ms=format_ms,
        percent=format_percent,
        fraction=format_fraction,
        count=format_count,
        gib=format_bytes,
        md=_markdown_cell,
    )
    return env


def _matrix(
    rows: Sequence[Relative], key: Any, columns: Sequence[int]
) -> list[tuple[Any, list[Relative]]]:
    """Relatives grouped into table rows by key, one cell per batch size in columns."""
    grouped: dict[Any, dict[int, Relative]] = {}
    for relative in rows:
        grouped.setdefault(key(relative), {})[relative.batch] = relative
    return [(k, [cells[b] for b in columns]) for k, cells in grouped.items()]


def _context(results: RunResults, charts: Sequence[Chart]) -> dict[str, Any]:
    best = best_configs(results.points)
    gains = relative_to_baseline(results, best)
    batch1 = relative_to_baseline_batch1(results, best)
    baseline = results.baseline
    others = [k for k in results.kinds if k != baseline]
    has_baseline = baseline is not None and baseline in results.kinds
    points = sorted(results.points, key=results.sort_key)
    return {
        "run": results,
        "dash": DASH,
        "counts": count_points(results.points),
        "baseline": baseline,
        "has_baseline": has_baseline,
        "has_batch1": 1 in results.batches,
        "kinds": results.kinds,
        "kind_colours": kind_colours(results.kinds),
        "kind_descriptions": [(k, KIND_DESCRIPTIONS.get(k, "")) for k in results.kinds],
        "batches": results.batches,
        "several_concurrencies": len({p.concurrency for p in results.points}) > 1,
        "gain_matrices": [
            (
                kind,
                _matrix([g for g in gains if g.kind == kind], lambda g: g.model, results.batches),
            )
            for kind in others
        ],
        "gains": gains,
        "gain_notes": sorted({g.note for g in gains if g.note}, key=_note_order(gains)),
        "batch1": _matrix(batch1, lambda g: (g.model, g.kind), results.batches),
        "batch1_notes": sorted({g.note for g in batch1 if g.note}, key=_note_order(batch1)),
        "points": points,
        "problems": [p for p in points if p.status == "failed" or not p.valid],
        "charts": charts,
        "plan_yaml": yaml.safe_dump(results.plan, sort_keys=False, allow_unicode=True).rstrip(),
    }


def _note_order(rows: Sequence[Relative]) -> Any:
    order = {note: i for i, note in reversed(list(enumerate(r.note for r in rows)))}
    return lambda note: order[note]


def render(results: RunResults, charts: Sequence[Chart]) -> tuple[str, str]:
    """The Markdown and the self-contained HTML report."""
    env = _environment()
    context = _context(results, charts)
    markdown = env.get_template("report.md.j2").render(**context)
    html = env.get_template("report.html.j2").render(**context)
    return markdown, html


def build_report(run_dir: Path) -> list[Path]:
    """Write results.csv, report.md, report.html and charts/*.png into run_dir; their paths."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory")
    results = load_results(run_dir)
    charts_dir = run_dir / CHARTS_DIR
    charts = write_charts(results, best_configs(results.points), charts_dir)
    # Charts of an earlier build that this one did not draw would be stale.
    drawn = {chart.path.name for chart in charts}
    for old in sorted(charts_dir.glob("*.png")) if charts_dir.is_dir() else []:
        if old.name not in drawn:
            old.unlink()
    points = sorted(results.points, key=results.sort_key)
    csv_path = run_dir / "results.csv"
    _write_bytes(csv_path, _csv_text(points).encode())
    markdown, html = render(results, charts)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    _write_bytes(md_path, markdown.encode())
    _write_bytes(html_path, html.encode())
    return [csv_path, md_path, html_path, *(chart.path for chart in charts)]


def register(groups: Any) -> None:
    """The `servelab report` subcommand."""
    parser = groups.add_parser(
        "report", help="(re)build a run's report: results.csv, report.md, report.html, charts"
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        type=Path,
        nargs="?",
        default=PROJECT_DIR / "results" / "latest",
        help="the run's directory, holding results.json (default: results/latest)",
    )
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    for path in build_report(args.run_dir):
        print(path)
    return 0
