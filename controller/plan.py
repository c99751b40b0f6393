"""Benchmark plans: which server kinds, models, batch sizes and concurrencies to measure."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVER_KINDS = ("ovms", "tfserving", "ref-openvino", "ref-tensorflow")


class PlanError(ValueError):
    """A plan file that cannot be run; the message names the field and what would be right."""

    exit_code = 2


@dataclass(frozen=True)
class Window:
    warmup_s: float
    duration_s: float
    cooldown_s: float


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
    concurrency: tuple[int, ...]
    repeats: int
    window: Window
    source: Path
    raw: dict[str, Any]

    def points(self) -> Iterator[Point]:
        """Every point, grouped by server kind so that each kind starts once."""
        for server, model, batch, conc, repeat in itertools.product(
            self.servers, self.models, self.batches, self.concurrency, range(self.repeats)
        ):
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
    servers = _names(data, "servers", path)
    unknown = [s for s in servers if s not in SERVER_KINDS]
    if unknown:
        raise PlanError(f"{path}: unknown server kind(s) {unknown}; known: {list(SERVER_KINDS)}")
    baseline = data.get("baseline", servers[-1])
    if baseline not in servers:
        raise PlanError(f"{path}: baseline {baseline!r} is not one of the plan's servers {servers}")
    repeats = data.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise PlanError(f"{path}: 'repeats' is {repeats!r}; use a positive integer")
    window = data.get("window")
    if not isinstance(window, dict):
        raise PlanError(f"{path}: 'window' must map warmup_s, duration_s and cooldown_s to seconds")
    return Plan(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        servers=servers,
        baseline=baseline,
        models=_names(data, "models", path),
        batches=_positive_ints(data, "batches", path),
        concurrency=_positive_ints(data, "concurrency", path),
        repeats=repeats,
        window=Window(
            warmup_s=_seconds(window, "warmup_s", path, 0),
            duration_s=_seconds(window, "duration_s", path, 0.1),
            cooldown_s=_seconds(window, "cooldown_s", path, 0),
        ),
        source=path,
        raw=data,
    )
