"""Prometheus' HTTP API, and the lab's questions to it about one measurement window.

Counts over a window come from the raw samples, not from `increase()`: the counter
is read at the window's start and end by linear interpolation between the scrapes
(one a second) around each instant, so a 5-second window is counted to within a
fraction of a second's traffic. A counter that drops (HAProxy reloaded, a server
restarted) restarts from zero, as Prometheus' own functions assume.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Labels = dict[str, str]
Samples = list[tuple[float, float]]


class PrometheusError(RuntimeError):
    """Prometheus did not answer, or answered with an error; the message says which."""


@dataclass(frozen=True)
class Window:
    start_epoch: float
    end_epoch: float

    @property
    def duration_s(self) -> float:
        return self.end_epoch - self.start_epoch


class PrometheusAPI:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=self.timeout_s) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise PrometheusError(f"{self.url}{path}: HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise PrometheusError(f"Prometheus at {self.url} did not answer: {exc}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def instant(self, expr: str, at: float) -> list[tuple[Labels, float]]:
        """An instant query's vector: (labels, value) per series."""
        data = self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr}: expected a vector, got {data['resultType']}")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, expr: str) -> float:
        """A scalar expression evaluated at Prometheus' own present (its clock, not ours)."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] != "scalar":
            raise PrometheusError(f"{expr}: expected a scalar, got {data['resultType']}")
        return float(data["result"][1])

    def raw(self, selector: str, start: float, end: float) -> list[tuple[Labels, Samples]]:
        """Every scraped sample of `selector` from `start` to `end`, per series."""
        range_ms = max(1, math.ceil((end - start) * 1000))
        data = self._get(
            "/api/v1/query", {"query": f"{selector}[{range_ms}ms]", "time": f"{end:.3f}"}
        )
        return [
            (r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]
        ]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", {"state": "active"})["activeTargets"]

    def wait_for_scrapes(self, job: str, after: float, timeout_s: float) -> bool:
        """Wait until every target of `job` has been scraped after `after` (epoch)."""
        deadline = time.monotonic() + timeout_s
        while True:
            targets = [t for t in self.targets() if t["labels"].get("job") == job]
            scraped = [_epoch(t.get("lastScrape", "")) for t in targets]
            if targets and all(s is not None and s > after for s in scraped):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def target(self, job: str, labels: Labels) -> dict[str, Any] | None:
        """The job's active target with these labels, as Prometheus describes it."""
        for target in self.targets():
            if target["labels"].get("job") == job and all(
                target["labels"].get(k) == v for k, v in labels.items()
            ):
                return target
        return None

    def target_health(self, job: str, labels: Labels) -> str | None:
        """The health ('up', 'down', 'unknown') of the job's target with these labels."""
        target = self.target(job, labels)
        return None if target is None else str(target["health"])

    def up_since(self, job: str, labels: Labels, after: float) -> bool:
        """Whether the target answered its last scrape, and that scrape came after `after`."""
        target = self.target(job, labels)
        if target is None or target["health"] != "up":
            return False
        scraped = _epoch(target.get("lastScrape", ""))
        return scraped is not None and scraped > after


def _epoch(rfc3339: str) -> float | None:
    """Prometheus' lastScrape ('2026-11-23T10:15:00.123456789Z') as epoch seconds."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return None
    text = rfc3339.replace("Z", "+00:00")
    if "." in text:  # Python reads at most microseconds
        head, tail = text.split(".", 1)
        digits = tail[: len(tail) - 6]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits) :]}"
    return datetime.fromisoformat(text).timestamp()


def counter_increase(samples: Samples, window: Window) -> float | None:
    """How much a counter grew inside the window, interpolated between scrapes.

    A series first seen after the window's start was born in it (a client library
    creates a labelled counter at its first increment): it counts from zero. A
    series whose scrapes stop before the window's end (its server died) keeps its
    last value. None when there are no samples at all.
    """
    if not samples:
        return None
    # Undo resets first: a drop means the counter restarted from zero.
    cumulative: Samples = [samples[0]]
    offset = 0.0
    for (_, previous), (t, value) in itertools.pairwise(samples):
        if value < previous:
            offset += previous
        cumulative.append((t, value + offset))
    if cumulative[0][0] > window.start_epoch:
        cumulative.insert(0, (window.start_epoch, 0.0))
    return _at(cumulative, window.end_epoch) - _at(cumulative, window.start_epoch)


def _at(samples: Samples, t: float) -> float:
    """The counter at instant t: interpolated inside the samples, held flat outside them."""
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return samples[-1][1]


def inner_rate(samples: Samples, window: Window) -> tuple[float, float] | None:
    """(rate per second, span in seconds) between the first and last scrape inside the window.

    Exact counts, no interpolation: what the rate was while the window ran, unbiased
    by a rate that changes at the window's edges (warm-up and cool-down differ).
    """
    inside = [(t, v) for t, v in samples if window.start_epoch <= t <= window.end_epoch]
    if len(inside) < 2:
        return None
    # a drop is a restart from zero
    grown = sum(b - a if b >= a else b for (_, a), (_, b) in itertools.pairwise(inside))
    span = inside[-1][0] - inside[0][0]
    return grown / span, span


def window_rate(api: PrometheusAPI, selector: str, window: Window) -> tuple[float, float] | None:
    """The summed inner rate of every series of `selector` and the shortest span it covers."""
    series = api.raw(selector, window.start_epoch, window.end_epoch)
    rates = [r for _, samples in series if (r := inner_rate(samples, window)) is not None]
    if not rates:
        return None
    return sum(rate for rate, _ in rates), min(span for _, span in rates)


def window_increase(
    api: PrometheusAPI, selector: str, window: Window, margin_s: float
) -> float | None:
    """The summed increase of every series of `selector` over the window (None: no series)."""
    series = api.raw(selector, window.start_epoch - margin_s, window.end_epoch + margin_s)
    increases = [counter_increase(samples, window) for _, samples in series]
    found = [i for i in increases if i is not None]
    return float(sum(found)) if found else None
