"""Benchmark plans: which server kinds, models, batch sizes and concurrencies to measure."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servelab.controller.kinds import KINDS
from servelab.server.modelrepo.catalog import KNOWN_MODELS

# The registry's kinds, in its order (controller/kinds.yml).
SERVER_KINDS = tuple(KINDS)
PLAN_KEYS = (
    "name",
    "description",
    "servers",
    "baseline",
    "models",
    "batches",
    "concurrency",
    "repeats",
    "window",
    "validity",
    "schedule",
    "max_repeats",
)
SCHEDULES = ("interleaved", "sequential")
DEFAULT_MAX_REPEATS = 6  # repeats: auto stops here when an interval stays wide
AUTO_FIRST_REPEATS = 2  # repeats: auto starts with two: the fewest a t-interval needs


class PlanError(ValueError):
    """A plan file that cannot be run; the message names the field and what would be right."""

    exit_code = 2


# A window goes on past duration_s, up to this, until the point has min_requests
# (controller/window_length.py); a plan that gives no max_duration_s gets this or its
# duration_s, whichever is longer.
DEFAULT_MAX_DURATION_S = 120.0


@dataclass(frozen=True)
class Window:
    warmup_s: float
    duration_s: float  # the least a window lasts
    cooldown_s: float
    max_duration_s: float = DEFAULT_MAX_DURATION_S  # the most, when min_requests needs longer


@dataclass(frozen=True)
class Sweep:
    """Concurrency doubling (by `factor`) from `start` until throughput stops rising."""

    start: int
    max: int
    factor: int
    min_gain: float  # a step that adds less than this fraction of throughput ends the sweep

    def levels(self) -> tuple[int, ...]:
        levels, level = [], self.start
        while level <= self.max:
            levels.append(level)
            level *= self.factor
        return tuple(levels)


@dataclass(frozen=True)
class Validity:
    """When a measured point counts; each bound is checked per point with a reason."""

    max_client_cpu: float  # fraction of the client platform's cores the client side may use
    proxy_tolerance: float  # |HAProxy's count - clients' count| / clients' count, beyond in-flight
    max_spread: float  # (max - min) / mean of the window's sub-interval rates, beyond counting
    stability_intervals: int  # how many sub-intervals the window is cut into
    # how far a host's clock may be from the monitoring host's (checked once, at the start)
    max_clock_skew_ms: float
    # the share of the window each scrape job's successful scrapes must cover
    min_scrape_coverage: float
    # repeats: auto adds repeats until each configuration's 95% interval is within
    # this share of its throughput either side
    max_ci_halfwidth: float = 0.05
    # completed requests a window must hold (MLPerf LoadGen's min_query_count): the
    # window is lengthened, up to window.max_duration_s, until the point has them
    min_requests: int = 100
    # how far a host's CPU frequency may move inside a window, (max - min) / max
    max_frequency_change: float = 0.05
    # the busy share of the lab's CPU set above which the lab itself was the limit
    max_lab_cpu: float = 0.95


DEFAULT_VALIDITY = Validity(
    max_client_cpu=0.5,
    proxy_tolerance=0.05,
    max_spread=0.2,
    stability_intervals=4,
    max_clock_skew_ms=50.0,
    min_scrape_coverage=0.9,
    max_ci_halfwidth=0.05,
    min_requests=100,
    max_frequency_change=0.05,
)


@dataclass(frozen=True)
class Point:
    """One measurement: a server kind serving a model at a batch size and concurrency."""

    server: str
    model: str
    batch: int
    concurrency: int
    repeat: int

    @property
    def slug(self) -> str:
        return f"{self.server}-{self.model}-b{self.batch}-c{self.concurrency}-r{self.repeat}"


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    servers: tuple[str, ...]
    baseline: str
    models: tuple[str, ...]
    batches: tuple[int, ...]
    concurrency: tuple[int, ...]  # the levels to measure; a sweep's levels are its upper bound
    sweep: Sweep | None
    repeats: int
    window: Window
    validity: Validity
    source: Path
    raw: dict[str, Any]
    # interleaved: the kinds alternate repeat by repeat (A B A B) per model, batch, level
    schedule: str = "sequential"
    max_repeats: int | None = None  # repeats: auto: at most this many; None: `repeats` exactly

    def configurations(self) -> Iterator[tuple[str, str, int]]:
        """(server, model, batch), grouped by server kind so that each kind starts once."""
        yield from itertools.product(self.servers, self.models, self.batches)

    @property
    def most_repeats(self) -> int:
        """The repeats a configuration may get: max_repeats with repeats: auto."""
        return self.max_repeats or self.repeats

    def points(self) -> Iterator[Point]:
        """Every point the plan may measure (a sweep may stop before its last levels)."""
        for server, model, batch in self.configurations():
            for conc, repeat in itertools.product(self.concurrency, range(self.repeats)):
                yield Point(server, model, batch, conc, repeat)


def _positive_ints(data: dict[str, Any], field: str, where: Path) -> tuple[int, ...]:
    values = data.get(field)
    if not isinstance(values, list) or not values:
        raise PlanError(f"{where}: '{field}' must be a non-empty list of positive integers")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlanError(f"{where}: '{field}' holds {value!r}; use positive integers")
    return tuple(values)


def _names(data: dict[str, Any], field: str, where: Path) -> tuple[str, ...]:
    values = data.get(field)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise PlanError(f"{where}: '{field}' must be a non-empty list of names")
    return tuple(values)


def _seconds(window: dict[str, Any], field: str, where: Path, minimum: float) -> float:
    value = window.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise PlanError(f"{where}: 'window.{field}' is {value!r}; use a number >= {minimum}")
    return float(value)


def _number(data: dict[str, Any], field: str, where: str, low: float, high: float) -> float:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PlanError(f"{where}.{field} is {value!r}; use a number from {low} to {high}")
    return float(value)


def _integer(data: dict[str, Any], field: str, where: str, low: int) -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PlanError(f"{where}.{field} is {value!r}; use an integer >= {low}")
    return value


def _unknown_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")


def _concurrency(data: dict[str, Any], path: Path) -> tuple[tuple[int, ...], Sweep | None]:
    value = data.get("concurrency")
    if not isinstance(value, dict):
        return _positive_ints(data, "concurrency", path), None
    where = f"{path}: concurrency"
    _unknown_keys(value, ("sweep",), where)
    sweep = value.get("sweep")
    keys = ("start", "max", "factor", "min_gain")
    if not isinstance(sweep, dict):
        raise PlanError(f"{where}: a sweep is {{sweep: {{start, max, factor, min_gain}}}}")
    _unknown_keys(sweep, keys, f"{where}.sweep")
    sweep = {"start": 1, "factor": 2, "min_gain": 0.05, **sweep}
    start = _integer(sweep, "start", f"{where}.sweep", 1)
    top = _integer(sweep, "max", f"{where}.sweep", start)
    factor = _integer(sweep, "factor", f"{where}.sweep", 2)
    min_gain = _number(sweep, "min_gain", f"{where}.sweep", 0, 1)
    result = Sweep(start=start, max=top, factor=factor, min_gain=min_gain)
    return result.levels(), result


def _validity(data: dict[str, Any], path: Path) -> Validity:
    value = data.get("validity", {})
    where = f"{path}: validity"
    if not isinstance(value, dict):
        raise PlanError(f"{where} must map bounds to numbers")
    allowed = tuple(DEFAULT_VALIDITY.__dataclass_fields__)
    _unknown_keys(value, allowed, where)
    merged = {**dataclasses.asdict(DEFAULT_VALIDITY), **value}
    return Validity(
        max_client_cpu=_number(merged, "max_client_cpu", where, 0.01, 1),
        proxy_tolerance=_number(merged, "proxy_tolerance", where, 0, 1),
        max_spread=_number(merged, "max_spread", where, 0, 10),
        stability_intervals=_integer(merged, "stability_intervals", where, 2),
        max_clock_skew_ms=_number(merged, "max_clock_skew_ms", where, 0, 60_000),
        min_scrape_coverage=_number(merged, "min_scrape_coverage", where, 0, 1),
        max_ci_halfwidth=_number(merged, "max_ci_halfwidth", where, 0.001, 1),
        min_requests=_integer(merged, "min_requests", where, 1),
        max_frequency_change=_number(merged, "max_frequency_change", where, 0, 1),
        max_lab_cpu=_number(merged, "max_lab_cpu", where, 0.01, 1),
    )


def _repeats(data: dict[str, Any], path: Path) -> tuple[int, int | None]:
    """(repeats to start with, at most how many with repeats: auto, else None)."""
    repeats = data.get("repeats", 1)
    if repeats == "auto":
        top = data.get("max_repeats", DEFAULT_MAX_REPEATS)
        if isinstance(top, bool) or not isinstance(top, int) or top < AUTO_FIRST_REPEATS:
            raise PlanError(
                f"{path}: 'max_repeats' is {top!r}; use an integer >= {AUTO_FIRST_REPEATS}"
            )
        return AUTO_FIRST_REPEATS, top
    if "max_repeats" in data:
        raise PlanError(f"{path}: 'max_repeats' applies only with 'repeats: auto'")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise PlanError(f"{path}: 'repeats' is {repeats!r}; use a positive integer or 'auto'")
    return repeats, None


def load_plan(path: Path) -> Plan:
    """Read and check a plan file; PlanError names the first thing that is wrong."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlanError(f"cannot read plan {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PlanError(f"plan {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PlanError(f"plan {path} must be a mapping with servers, models, batches, ...")
    _unknown_keys(data, PLAN_KEYS, str(path))
    servers = _names(data, "servers", path)
    unknown = [s for s in servers if s not in SERVER_KINDS]
    if unknown:
        raise PlanError(f"{path}: unknown server kind(s) {unknown}; known: {list(SERVER_KINDS)}")
    baseline = data.get("baseline", servers[-1])
    if baseline not in servers:
        raise PlanError(f"{path}: baseline {baseline!r} is not one of the plan's servers {servers}")
    repeats, max_repeats = _repeats(data, path)
    window = data.get("window")
    if not isinstance(window, dict):
        raise PlanError(f"{path}: 'window' must map warmup_s, duration_s and cooldown_s to seconds")
    _unknown_keys(window, tuple(Window.__dataclass_fields__), f"{path}: window")
    models = _names(data, "models", path)
    unknown_models = [m for m in models if m not in KNOWN_MODELS]
    if unknown_models:
        raise PlanError(f"{path}: unknown model(s) {unknown_models}; known: {list(KNOWN_MODELS)}")
    concurrency, sweep = _concurrency(data, path)
    if max_repeats is not None and sweep is not None:
        raise PlanError(f"{path}: 'repeats: auto' does not combine with a concurrency sweep")
    schedule = data.get("schedule", "interleaved" if repeats >= 2 else "sequential")
    if schedule not in SCHEDULES:
        raise PlanError(f"{path}: 'schedule' is {schedule!r}; use one of {list(SCHEDULES)}")
    duration_s = _seconds(window, "duration_s", path, 0.1)
    if "max_duration_s" in window:
        max_duration_s = _seconds(window, "max_duration_s", path, duration_s)
    else:
        max_duration_s = max(DEFAULT_MAX_DURATION_S, duration_s)
    return Plan(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        servers=servers,
        baseline=baseline,
        models=models,
        batches=_positive_ints(data, "batches", path),
        concurrency=concurrency,
        sweep=sweep,
        repeats=repeats,
        window=Window(
            warmup_s=_seconds(window, "warmup_s", path, 0),
            duration_s=duration_s,
            cooldown_s=_seconds(window, "cooldown_s", path, 0),
            max_duration_s=max_duration_s,
        ),
        validity=_validity(data, path),
        source=path,
        raw=data,
        schedule=schedule,
        max_repeats=max_repeats,
    )
