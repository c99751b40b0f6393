"""results.json read into typed, checked records, for the report, compare and history.

The run writes results.json (controller/results.py); everything that reads a run back
reads it here. A missing or null part becomes None, never a guess; a part of the
wrong type is a ReportError naming the file, the field and what it should be.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
DASH = "\u2013"  # an en dash: what a number that does not exist looks like, in every format but CSV
LATENCY_FIELDS = ("mean", "p50", "p90", "p95", "p99", "p99_9", "max", "min")
STATUSES = ("measured", "failed")


class ReportError(ValueError):
    """A run directory or results.json the report cannot be built from (bad input)."""

    exit_code = 2


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
class NetworkRecord:
    """The server host's lab link over a point's window."""

    host: str | None
    device: str | None
    receive_bytes_per_s: float | None
    transmit_bytes_per_s: float | None
    link_mbps: float | None
    link_use: float | None  # the busier direction's share of the link
    near_capacity: bool


@dataclass(frozen=True)
class ClientHostRecord:
    """One client host's pool in a point."""

    host: str
    requests: int | None
    throughput_fps: float | None


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
    network: NetworkRecord | None = None
    client_hosts: tuple[ClientHostRecord, ...] = ()

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
    address: str | None = None  # on the lab network
    device: str | None = None  # the interface that holds it
    link_mbps: float | None = None
    link_from: str | None = None  # who told the link's speed: the host or the inventory


@dataclass(frozen=True)
class ClockRecord:
    host: str
    platform: str
    offset_ms: float | None  # against the monitoring host's clock
    uncertainty_ms: float | None


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
    clocks: tuple[ClockRecord, ...] = ()

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
    network = None
    if (n := fields.child("network")) is not None:
        network = NetworkRecord(
            n.text("host"),
            n.text("device"),
            n.number("receive_bytes_per_s"),
            n.number("transmit_bytes_per_s"),
            n.number("link_mbps"),
            n.number("link_use"),
            bool(n.boolean("near_capacity")),
        )
    client_hosts = []
    if (clients := fields.child("clients")) is not None:
        for host in clients.data:
            summary = clients.child(host)
            if summary is None:
                continue
            counts, rates = summary.child("requests"), summary.child("throughput")
            client_hosts.append(
                ClientHostRecord(
                    str(host),
                    counts.integer("completed") if counts else None,
                    rates.number("frames_per_s") if rates else None,
                )
            )
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
        network=network,
        client_hosts=tuple(client_hosts),
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
                    **_read_link(h),
                )
            )
    return tuple(records)


def _read_link(host: _Fields) -> dict[str, Any]:
    link = host.child("network")
    if link is None:
        return {}
    return {
        "address": link.text("address"),
        "device": link.text("device"),
        "link_mbps": link.integer("speed_mbps", digits=True),
        "link_from": link.text("speed_from"),
    }


def _read_clocks(run: _Fields) -> tuple[ClockRecord, ...]:
    entries = run.data.get("clocks")
    if not isinstance(entries, list):
        return ()
    records = []
    for index, entry in enumerate(entries):
        c = _Fields(run.path, f"run.clocks[{index}]", entry)
        records.append(
            ClockRecord(
                c.text("host") or "?",
                c.text("platform") or "?",
                c.number("offset_ms"),
                c.number("uncertainty_ms"),
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
        clocks=_read_clocks(run),
    )
