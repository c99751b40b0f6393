"""results.json: the records of a run and of its points, their writer and their one reader.

Every field of results/<run-id>/results.json is a field of a record below, under
the same name and in the same order; controller/typedjson.py writes the records and
reads them back, checked against these declarations. The run loop writes through
`save` after every point and reads back through `load` (`--resume`); the report,
`servelab compare` and the history read through `read_results`. A bad file is a
ReportError naming the file, the field and what it should be (exit code 2).

A new measured field is one new field of its record here (with a default, or a
type that admits None, so that older files still read), plus the templates that
show it. FORMAT_VERSION counts the file's layouts: a file without `format_version`
is format 1 (everything written before the version was); each entry of _UPGRADES
turns one layout into the next, so every results.json ever written still reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from servelab.clients.histogram import LogHistogram
from servelab.clients.summary import latency_ms
from servelab.controller.clocks import ClockOffset
from servelab.controller.formats import DASH
from servelab.controller.kinds import KINDS
from servelab.controller.percentiles import PERCENTILES, enough_samples
from servelab.controller.plan import Point
from servelab.controller.typedjson import (
    WRITTEN_WHEN_SET,
    FieldError,
    from_json,
    json_type,
    read_value,
    to_json,
)
from servelab.controller.validity import Stability
from servelab.controller.window_length import WindowChoice
from servelab.server.modelrepo.ceiling import CeilingRecord

RESULTS_FILE = "results.json"
FORMAT_VERSION = 2
# The server kinds whose runtime is OpenVINO, which the in-process ceiling measures.
OPENVINO_KINDS = frozenset(kind.name for kind in KINDS.values() if kind.in_process_ceiling)
NO_VERDICT = "results.json records no validity verdict for this point"
# A failed point's reason that blames the lab's own daemons (cycle.py): measured again.
LAB_FAULT = "lab fault"


class ReportError(ValueError):
    """A run directory or results.json that cannot be read (bad input)."""

    exit_code = 2


# ---------------------------------------------------------------------------
# A point


@dataclass
class Latency:
    """The clients' latency percentiles over the window, merged over every pool (ms)."""

    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = None
    max: float | None = None
    min: float | None = None
    # the latencies behind the percentiles; a percentile with fewer samples than it
    # needs (controller/percentiles.py) is null. Absent from points measured before
    samples: int | None = field(default=None, metadata=WRITTEN_WHEN_SET)


@dataclass
class MeasuredWindow:
    """The span every client pool measured."""

    start_epoch: float | None  # None only in format 1's first cut, which kept the duration
    end_epoch: float | None
    duration_s: float


@dataclass
class ProxyMetrics:
    """HAProxy over the window (controller/metrics.py)."""

    requests: int  # requests HAProxy forwarded inside the window (interpolated, rounded)
    requests_per_s: float | None  # between the first and last scrape inside the window
    rate_span_s: float | None  # how long that stretch was
    avg_response_ms: float | None  # HAProxy's own average over its last 1024 responses
    bytes_per_s: float | None  # both directions through the backend


@dataclass
class ServerSideMetrics:
    """The model server's own counters over the window."""

    requests: int  # Predict calls the server answered with OK inside the window
    requests_per_s: float | None  # between the first and last scrape inside the window
    errors: int
    request_ms_mean: float | None
    inference_ms_mean: float | None
    # the server program's CPU, in cores (the process exporter's group of the kind's program)
    process_cpu: float | None
    # how many calls each mean stands on: the histograms' counts over the window
    request_samples: int | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    inference_samples: int | None = field(default=None, metadata=WRITTEN_WHEN_SET)

    @property
    def serving_overhead_ms(self) -> float | None:
        """The server's own time around the inference: mean request time minus mean
        inference time (its front end: decoding, queueing, encoding)."""
        if self.request_ms_mean is None or self.inference_ms_mean is None:
            return None
        return self.request_ms_mean - self.inference_ms_mean


@dataclass
class CpuUse:
    """Both platforms' CPU over the window, as fractions of their cores (1.0 = all busy)."""

    server: float | None  # busy fraction of the server platform's cores (node exporter)
    client: float | None  # busy fraction of the client platform's cores
    client_pool: float | None  # the client pools' own share of their hosts' cores
    server_cores: int | None
    client_cores: int | None
    shared_host: bool  # both platforms on one kernel: node CPU counts both
    # where client_pool comes from: "process exporter" (servelab-load's group) or "pools"
    # (their own summaries); absent from points measured before the exporter
    client_pool_source: str | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    # the busy share of the lab's CPU set on the busiest client host (1.0: saturated), and
    # how many CPUs that set has; absent before CPU sets, or when no set was published
    lab_set: float | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    lab_set_cpus: int | None = field(default=None, metadata=WRITTEN_WHEN_SET)


@dataclass
class NetworkUse:
    """The server host's lab interface over the window (node exporter)."""

    host: str
    device: str
    receive_bytes_per_s: float | None  # requests arriving at the server host
    transmit_bytes_per_s: float | None  # responses leaving it
    link_mbps: float | None  # the link's speed, when the host or the inventory knows it
    link_use: float | None  # the busier direction's share of the link
    near_capacity: bool  # link_use at or above NEAR_CAPACITY: the network set the pace


@dataclass
class HostFrequency:
    """One host's CPU frequency and throttling over a window (the node exporter's cpufreq)."""

    host: str
    exposed: bool  # False: the host exposes no frequency (many VMs); the figures are None
    low_hz: float | None  # the lowest of the host's mean core frequency over the window's scrapes
    high_hz: float | None  # the highest
    change: float | None  # (high - low) / high
    throttles: int | None  # core and package throttling events in the window; None: not exposed


@dataclass
class ProgramUse:
    """One lab program on one host over the window (the process exporter's group)."""

    program: str  # the process group (roles/process_exporter): haproxy, servelab-load, ...
    host: str  # the exporter's address (one per machine: both platforms share it)
    platforms: list[str]  # the platforms whose exporter target this is: server, client
    cpu_cores: float | None  # CPU seconds over the window / the window's seconds
    peak_rss_bytes: float | None  # the highest resident memory sampled inside the window
    samples: int  # the scrapes inside the window that the peak and the CPU stand on
    processes: int  # the most processes the group held at a scrape inside the window


@dataclass(frozen=True)
class ClientHost:
    """One client host's pool in a point, as the report lists it."""

    host: str
    requests: int | None
    throughput_fps: float | None


@dataclass
class PointResult:
    """One measured or failed point."""

    server: str
    model: str
    batch: int
    concurrency: int
    repeat: int = 0
    status: Literal["measured", "failed"] = "measured"  # failed: a phase failed, nothing measured
    throughput_fps: float | None = None  # verified responses x batch / window
    requests_per_s: float | None = None
    latency_ms: Latency | None = None
    requests: int | None = 0
    errors: dict[str, int] | None = field(default_factory=dict)  # transport errors by gRPC code
    verify_failures: int | None = 0
    window: MeasuredWindow | None = None
    proxy: ProxyMetrics | None = None
    server_metrics: ServerSideMetrics | None = None
    cpu: CpuUse | None = None
    network: NetworkUse | None = None
    in_process_fps: float | None = None  # the runtime alone on the server host (ceiling.json)
    stability: Stability | None = None  # the window's sub-interval rates (controller/validity.py)
    # each scrape job's least-covered share of the window (haproxy, node, model_server);
    # absent from points measured before the rule existed
    scrape_coverage: dict[str, float] | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    valid: bool = False
    reasons: list[str] = field(default_factory=list)
    # each client host's pool summary, as servelab-load wrote it (clients/summary.py)
    clients: dict[str, Any] = field(default_factory=dict)
    # the window asked of the pools, when it was longer than the plan's duration_s
    # (controller/window_length.py); absent when it was not, and from older points
    window_choice: WindowChoice | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    # each host's CPU frequency over the window; absent from older points
    frequency: list[HostFrequency] | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    # each lab program's CPU and peak memory per host (process exporter); absent from
    # points measured before the lab ran one
    programs: list[ProgramUse] | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    # the CPU set the in-process ceiling ran on ("" every CPU); absent before CPU sets
    in_process_cpus: str | None = field(default=None, metadata=WRITTEN_WHEN_SET)

    @property
    def point(self) -> Point:
        return Point(self.server, self.model, self.batch, self.concurrency, self.repeat)

    @property
    def latency(self) -> Latency:
        """latency_ms, or a Latency of Nones when the point has none."""
        return self.latency_ms or Latency()

    @property
    def counted(self) -> bool:
        """Whether this point may enter a gain: measured, valid and with a throughput."""
        return self.status == "measured" and self.valid and self.throughput_fps is not None

    @property
    def lab_fault(self) -> bool:
        """Failed because the lab's own daemons (not the server) spoiled it."""
        return self.status == "failed" and any(r.startswith(LAB_FAULT) for r in self.reasons)

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
    def stability_spread(self) -> float | None:
        return self.stability.spread if self.stability else None

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

    @property
    def client_hosts(self) -> tuple[ClientHost, ...]:
        """Each client host's request count and frames/s, from its pool's summary."""
        hosts = []
        for host, summary in self.clients.items():
            where = f"clients.{host}"
            if summary is None:
                continue
            if not isinstance(summary, dict):
                raise FieldError(where, f"is {json_type(summary)}; expected an object")
            counts = summary.get("requests") or {}
            rates = summary.get("throughput") or {}
            hosts.append(
                ClientHost(
                    str(host),
                    read_value(
                        int | None, _get(counts, "completed"), f"{where}.requests.completed"
                    ),
                    read_value(
                        float | None,
                        _get(rates, "frames_per_s"),
                        f"{where}.throughput.frames_per_s",
                    ),
                )
            )
        return tuple(hosts)


def _get(part: Any, key: str) -> Any:
    return part.get(key) if isinstance(part, dict) else None


LATENCY_FIELDS = tuple(f.name for f in fields(Latency))


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
        result.in_process_cpus = record.cpus if record else None
    result.clients = summaries
    if not summaries:
        return result
    result.throughput_fps = sum(s["throughput"]["frames_per_s"] for s in summaries.values())
    result.requests_per_s = sum(s["throughput"]["requests_per_s"] for s in summaries.values())
    result.requests = sum(s["requests"]["completed"] for s in summaries.values())
    result.verify_failures = sum(s["requests"]["verification_failures"] for s in summaries.values())
    errors: dict[str, int] = {}
    for summary in summaries.values():
        for code, count in summary["requests"]["errors"].items():
            errors[code] = errors.get(code, 0) + count
    result.errors = errors
    # The pools start at one agreed instant; the window is the span they all measured.
    result.window = MeasuredWindow(
        start_epoch=max(s["window"]["start_epoch"] for s in summaries.values()),
        end_epoch=min(s["window"]["end_epoch"] for s in summaries.values()),
        duration_s=min(s["window"]["duration_s"] for s in summaries.values()),
    )
    # Pools on several hosts merge exactly through their histograms.
    histogram = LogHistogram()
    for summary in summaries.values():
        histogram.merge(LogHistogram.from_dict(summary["latency_histogram_s"]))
    figures = latency_ms(histogram)
    for name in PERCENTILES:  # too few samples: the percentile is not stated at all
        if not enough_samples(name, histogram.count):
            figures[name] = None
    result.latency_ms = Latency(**figures, samples=histogram.count)
    return result


def client_pool_cpu(summaries: dict[str, dict[str, Any]]) -> float | None:
    """The pools' mean share of their own hosts' cores inside the window."""
    shares = [s["pool"]["cpu_share_of_host"] for s in summaries.values() if "pool" in s]
    return sum(shares) / len(shares) if shares else None


# ---------------------------------------------------------------------------
# A run


@dataclass
class RunInfo:
    """Where and how the run was measured: results.json's `run`."""

    id: str
    plan: dict[str, Any]  # the plan as the run used it (plan.yml in the run directory)
    started: str | None = None
    finished: str | None = None  # None while the run goes on, or when it was interrupted
    git_commit: str | None = None
    inventory: str | None = None
    # the controller host: format 1's first cut only
    controller: dict[str, Any] | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    # per platform, a list of the hosts' facts as playbooks/phases/facts.yml wrote them
    hosts: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)  # facts.yml's, nested as written
    # each host's clock against the monitoring host's (controller/clocks.py)
    clocks: list[ClockOffset] | None = field(default=None, metadata=WRITTEN_WHEN_SET)
    # when each --resume began
    resumed: list[str] = field(default_factory=list, metadata=WRITTEN_WHEN_SET)


@dataclass(frozen=True)
class HostRecord:
    """One host of `run.hosts`, read for the report and the history."""

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
    server_cpus: str | None = None  # the model server's CPU set ("" unpinned; None: not told)
    lab_cpus: str | None = None  # the lab's CPU set on this host
    cpus_may_overlap: bool | None = None  # the inventory let the two sets share CPUs


# ---------------------------------------------------------------------------
# Intervals (written by the report, controller/report.py; absent from older files)


@dataclass
class ConfigurationInterval:
    """A configuration's throughput with its 95% interval (controller/intervals.py)."""

    server: str
    model: str
    batch: int
    concurrency: int
    throughput_fps: float | None  # the mean the interval is centred on
    low_fps: float | None  # None: no interval, `note` says why
    high_fps: float | None
    samples: int  # repeats, or batch means of one repeat, behind it
    method: str
    note: str | None = None


@dataclass
class GainInterval:
    """A relative figure of the report's tables with its 95% interval (Fieller's)."""

    server: str
    model: str
    batch: int
    concurrency: int  # the configuration's best concurrency, the one the gain takes
    reference_server: str
    reference_batch: int
    percent: float | None  # as the report prints it: the ratio of the two medians
    low_percent: float | None  # None: no interval, `note` says why
    high_percent: float | None
    samples: int  # the fewer of the two sides' samples
    method: str
    note: str | None = None


@dataclass
class RunIntervals:
    """results.json's `intervals`: what the report computed from the points."""

    configurations: list[ConfigurationInterval] = field(default_factory=list)
    gains: list[GainInterval] = field(default_factory=list)
    wide: list[str] = field(default_factory=list)  # configurations over max_ci_halfwidth


@dataclass(frozen=True)
class RunResults:
    """A whole results.json, read and checked."""

    path: Path
    run: RunInfo
    points: tuple[PointResult, ...]
    failures: tuple[str, ...]
    hosts: tuple[HostRecord, ...]  # run.hosts as records
    intervals: RunIntervals | None = None  # the report's, when it was built

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def plan(self) -> dict[str, Any]:
        return self.run.plan

    @property
    def started(self) -> str | None:
        return self.run.started

    @property
    def finished(self) -> str | None:
        return self.run.finished

    @property
    def git_commit(self) -> str | None:
        return self.run.git_commit

    @property
    def inventory(self) -> str | None:
        return self.run.inventory

    @property
    def clocks(self) -> tuple[ClockOffset, ...]:
        return tuple(self.run.clocks or ())

    @cached_property
    def versions(self) -> tuple[tuple[str, str], ...]:
        """(component, version), flattened in file order."""
        return tuple(_flatten(self.run.versions))

    @cached_property
    def controller(self) -> tuple[tuple[str, str], ...]:
        return tuple(_flatten(self.run.controller or {}))

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

    def sort_key(self, point: PointResult) -> tuple[int, int, int, int, int]:
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


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}: "))
        else:
            rows.append((name, DASH if value is None else str(value)))
    return rows


def _digits(value: Any, where: str) -> int | None:
    """An integer, or a string of digits (Ansible's templated facts may be either)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return read_value(int | None, value, where)


def _host_records(run: RunInfo) -> tuple[HostRecord, ...]:
    records = []
    for platform, value in run.hosts.items():
        entries = value if isinstance(value, list) else [value]
        for index, entry in enumerate(entries):
            if entry is None:
                continue
            where = f"run.hosts.{platform}[{index}]"
            if not isinstance(entry, dict):
                raise FieldError(where, f"is {json_type(entry)}; expected an object")

            def text(data: dict[str, Any], key: str, at: str) -> str | None:
                return read_value(str | None, data.get(key), f"{at}.{key}")

            link = read_value(dict[str, Any] | None, entry.get("network"), f"{where}.network")
            at = f"{where}.network"
            cpus = read_value(dict[str, Any] | None, entry.get("cpus"), f"{where}.cpus")
            records.append(
                HostRecord(
                    platform=str(platform),
                    name=text(entry, "name", where),
                    hostname=text(entry, "hostname", where),
                    cpu_model=text(entry, "cpu_model", where),
                    cores=_digits(entry.get("cores"), f"{where}.cores"),
                    memory_bytes=_digits(entry.get("memory_bytes"), f"{where}.memory_bytes"),
                    kernel=text(entry, "kernel", where),
                    os=text(entry, "os", where),
                    address=text(link, "address", at) if link else None,
                    device=text(link, "device", at) if link else None,
                    link_mbps=_digits(link.get("speed_mbps"), f"{at}.speed_mbps") if link else None,
                    link_from=text(link, "speed_from", at) if link else None,
                    server_cpus=text(cpus, "server", f"{where}.cpus") if cpus else None,
                    lab_cpus=text(cpus, "lab", f"{where}.cpus") if cpus else None,
                    cpus_may_overlap=bool(cpus.get("may_overlap")) if cpus else None,
                )
            )
    return tuple(records)


# ---------------------------------------------------------------------------
# Older layouts


def _upgrade_from_1(document: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (no version): what every earlier controller wrote, made format 2."""
    for point in document["points"]:
        if not isinstance(point, dict):
            continue  # the strict reader names it
        # the first cut kept the window's duration alone
        if "window_s" in point:
            duration_s = point.pop("window_s")
            if "window" not in point:
                point["window"] = None if duration_s is None else {"duration_s": duration_s}
        if "valid" not in point:
            point["valid"] = False
            reasons = point.get("reasons")
            point["reasons"] = [*(reasons if isinstance(reasons, list) else []), NO_VERDICT]
        # the first Prometheus readings kept HAProxy's and the server's counts unrounded
        for part, counts in (("proxy", ("requests",)), ("server_metrics", ("requests", "errors"))):
            record = point.get(part)
            for name in counts if isinstance(record, dict) else ():
                if isinstance(record.get(name), float):
                    record[name] = round(record[name])
    return document


# format N -> format N + 1
_UPGRADES = {1: _upgrade_from_1}


# ---------------------------------------------------------------------------
# Reading and writing


def _read_text(path: Path) -> tuple[Path, str]:
    if path.is_dir():
        path = path / RESULTS_FILE
    elif not path.exists():
        raise ReportError(f"{path}: no such run directory or file")
    try:
        return path, path.read_text()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (a run directory holds results.json)") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not JSON (not UTF-8 text)") from None


def _current_layout(path: Path, document: Any) -> dict[str, Any]:
    """The document's top level checked, and its layout upgraded to FORMAT_VERSION."""
    if not isinstance(document, dict):
        raise ReportError(f"{path}: the document is {json_type(document)}; expected an object")
    version = document.get("format_version", 1)
    if not _is_int(version) or version < 1:
        raise ReportError(f"{path}: format_version is {version!r}; expected a whole number >= 1")
    if version > FORMAT_VERSION:
        raise ReportError(
            f"{path}: format_version {version} is newer than this servelab reads "
            f"({FORMAT_VERSION}); read it with the servelab that wrote it"
        )
    for key in ("run", "points"):
        if key not in document:
            raise ReportError(f"{path}: has no '{key}'; not a servelab results.json")
    if document["run"] is None:
        raise ReportError(f"{path}: 'run' is null; expected the run's object")
    if not isinstance(document["points"], list):
        raise ReportError(f"{path}: 'points' is {json_type(document['points'])}; expected a list")
    if isinstance(document["run"], dict) and document["run"].get("plan") is None:
        raise ReportError(f"{path}: run.plan is missing; the report needs the run's plan")
    while version < FORMAT_VERSION:
        document = _UPGRADES[version](document)
        version += 1
    unknown = sorted(set(document) - {"format_version", "run", "points", "failures", "intervals"})
    if unknown:
        raise ReportError(f"{path}: '{unknown[0]}' is not a part of results.json")
    return document


def read_results(path: Path) -> RunResults:
    """Read a results.json (or the results.json of a run directory); ReportError if unusable."""
    path, text = _read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON: {exc}") from None
    document = _current_layout(path, document)
    try:
        run = from_json(RunInfo, document["run"], "run")
        points = tuple(
            from_json(PointResult, p, f"points[{i}]") for i, p in enumerate(document["points"])
        )
        failures = read_value(tuple[str, ...], document.get("failures", []), "failures")
        intervals = document.get("intervals")
        if intervals is not None:
            intervals = from_json(RunIntervals, intervals, "intervals")
        hosts = _host_records(run)
        for index, point in enumerate(points):
            try:  # checked now, so that the report cannot fail on it later
                point.client_hosts  # noqa: B018
            except FieldError as exc:
                raise ReportError(f"{path}: points[{index}].{exc}") from None
    except FieldError as exc:
        raise ReportError(f"{path}: {exc}") from None
    return RunResults(
        path=path, run=run, points=points, failures=failures, hosts=hosts, intervals=intervals
    )


def write_results(
    run_dir: Path,
    run: RunInfo,
    points: Iterable[PointResult],
    failures: Iterable[str],
    intervals: RunIntervals | None = None,
) -> None:
    """Write results.json atomically: a reader never sees half a file."""
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "run": to_json(run),
        "points": [to_json(p) for p in points],
        "failures": list(failures),
    }
    if intervals is not None:  # written when the report computed them
        document["intervals"] = to_json(intervals)
    tmp = run_dir / f"{RESULTS_FILE}.tmp"
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(run_dir / RESULTS_FILE)


def save(
    run_dir: Path,
    run: RunInfo | Mapping[str, Any],
    points: Iterable[PointResult],
    failures: Iterable[str],
) -> None:
    """The run loop's write after every point; `run` may be RunInfo's fields as a dict."""
    info = run if isinstance(run, RunInfo) else from_json(RunInfo, dict(run), "run")
    write_results(run_dir, info, points, failures)


def load(run_dir: Path) -> tuple[dict[str, Any], list[PointResult], list[str]]:
    """What `--resume` continues from, read by the strict reader (ReportError if unusable)."""
    results = read_results(run_dir)
    return to_json(results.run), list(results.points), list(results.failures)


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
        lines.append(
            f"{p.server:<15} {p.model:<14} {p.batch:>5} {p.concurrency:>4} "
            f"{number(p.throughput_fps):>9} {number(p.latency.p50):>8} "
            f"{number(p.latency.p99):>8} {number(p.in_process_fps):>8}  "
            + ("yes" if p.valid else "NO: " + "; ".join(p.reasons))
        )
    return "\n".join(lines)
