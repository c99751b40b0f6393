"""Prometheus' HTTP API, and the lab's questions to it about one measurement window.

Counts over a window come from the raw samples, not from `increase()`: the counter
is read at the window's start and end by linear interpolation between the scrapes
(one a second) around each instant, so a 5-second window is counted to within a
fraction of a second's traffic. A counter that drops (HAProxy reloaded, a server
restarted) restarts from zero, as Prometheus' own functions assume.

That interpolation holds only where the scrapes are close together: on a starved
machine Prometheus may miss scrapes, and a count read across a long gap mixes the
window with its warm-up or cool-down. So each point also asks how much of its window
each job's successful scrapes cover (`scrape_coverage`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Labels = dict[str, str]
Samples = list[tuple[float, float]]

# Two successive scrapes this many scrape intervals apart or closer pin a counter down
# between them: one late or missed scrape still does, two missed in a row do not.
MAX_GAP_INTERVALS = 2.5
# Prometheus' duration format ("1s", "500ms", "1m30s"), in seconds per unit.
DURATION_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


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

    def ready(self) -> bool:
        """Whether Prometheus answers its readiness route (/-/ready) with 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout_s) as reply:
                return reply.status == 200
        except (OSError, ValueError):
            return False

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", {"state": "active"})["activeTargets"]

    def wait_for_scrapes(
        self, job: str, after: float, timeout_s: float, labels: Labels | None = None
    ) -> bool:
        """Wait until every target of `job` (with these labels) was scraped after `after`."""
        deadline = time.monotonic() + timeout_s
        while True:
            targets = [t for t in self.targets() if _matches(t, job, labels or {})]
            scraped = [_epoch(t.get("lastScrape", "")) for t in targets]
            if targets and all(s is not None and s > after for s in scraped):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def target(self, job: str, labels: Labels) -> dict[str, Any] | None:
        """The job's active target with these labels, as Prometheus describes it."""
        for target in self.targets():
            if _matches(target, job, labels):
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


def _matches(target: dict[str, Any], job: str, labels: Labels) -> bool:
    found = target["labels"]
    return found.get("job") == job and all(found.get(k) == v for k, v in labels.items())


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


@dataclass(frozen=True)
class ScrapeCoverage:
    """How much of a window one scrape target's successful scrapes cover."""

    job: str
    target: str  # which of the job's targets: its platform, kind or instance
    covered_s: float
    window_s: float

    @property
    def fraction(self) -> float:
        return min(1.0, self.covered_s / self.window_s) if self.window_s > 0 else 1.0


def duration_s(text: str) -> float | None:
    """A Prometheus duration ("1s", "500ms", "1m30s") in seconds; None if it is not one."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def covered_seconds(stamps: list[float], window: Window, max_gap_s: float) -> float:
    """How much of the window lies between two successive scrapes at most max_gap_s apart.

    A counter is known between such scrapes (interpolation cannot stray far); across a
    longer gap, or before the first scrape and after the last, it is not.
    """
    covered = 0.0
    for t0, t1 in itertools.pairwise(sorted(stamps)):
        if t1 - t0 <= max_gap_s:
            covered += max(0.0, min(t1, window.end_epoch) - max(t0, window.start_epoch))
    return covered


def _target_name(labels: Labels) -> str:
    if labels.get("platform"):
        return f"{labels['platform']} platform"
    return labels.get("kind") or labels.get("instance", "?")


def scrape_coverage(
    api: PrometheusAPI, job: str, labels: Labels, window: Window
) -> list[ScrapeCoverage]:
    """Per target of `job` (with these labels), how much of the window it was scraped.

    A scrape counts when it succeeded (`up` is 1): a scrape that timed out stores no
    sample of the target's series. The targets' scrape interval comes from Prometheus
    (the median gap between the scrapes where it does not say). No target: no entry.
    """
    intervals = [
        seconds
        for target in api.targets()
        if _matches(target, job, labels)
        and (seconds := duration_s(str(target.get("scrapeInterval", "")))) is not None
    ]
    interval = max(intervals) if intervals else None
    # the scrapes just outside the window bound its edges: fetch them too
    reach = MAX_GAP_INTERVALS * (interval or 5.0)
    matchers = ",".join(f'{k}="{v}"' for k, v in {"job": job, **labels}.items())
    series = api.raw(f"up{{{matchers}}}", window.start_epoch - reach, window.end_epoch + reach)
    found = []
    for series_labels, samples in series:
        stamps = [t for t, up in samples if up == 1.0]
        gaps = [b - a for a, b in itertools.pairwise(t for t, _ in samples)]
        step = interval or (statistics.median(gaps) if gaps else 1.0)
        found.append(
            ScrapeCoverage(
                job=job,
                target=_target_name(series_labels),
                covered_s=covered_seconds(stamps, window, MAX_GAP_INTERVALS * step),
                window_s=window.duration_s,
            )
        )
    return sorted(found, key=lambda c: c.target)
