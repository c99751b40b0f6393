"""A fake lab for the run loop: the Lab protocol (controller/lab.py) without Ansible.

It notes each phase it is asked for, writes the client summary a real pool would
for each load (throughput from a curve, errors by batch size, windows 10 s apart
on its own clock) and reports what a healthy Prometheus would see over the window.
tests/lab/ runs the real phases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from servelab.clients.histogram import LogHistogram
from servelab.controller.clocks import ClockOffset
from servelab.controller.lab import Observation, ServerLink
from servelab.controller.metrics import CpuUse, ProxyMetrics
from servelab.controller.phases import PhaseFailed
from servelab.controller.plan import Plan, Point, load_plan
from servelab.controller.prometheus import ScrapeCoverage, Window

PROJECT = Path(__file__).resolve().parents[2]
WINDOW_S = 4.0  # the smoke plan's window
SCRAPE_JOBS = ("haproxy", "node", "model_server")


def smoke_plan(tmp_path: Path, **changes: Any) -> Plan:
    """plans/smoke.yml with these top-level keys changed, written under tmp_path."""
    data = yaml.safe_load((PROJECT / "plans" / "smoke.yml").read_text())
    data.update(changes)
    path = tmp_path / "plan.yml"
    path.write_text(yaml.safe_dump(data))
    return load_plan(path)


class FakeLab:
    """Phases noted as (phase, kind); each point's numbers from the callables given."""

    serve_others = "stopped"  # what serve() does to the other kinds (controller/lab.py)

    def __init__(
        self,
        *,
        fps: Callable[[Point], float] = lambda point: 100.0,
        errors: Callable[[Point], dict[str, int]] = lambda point: {},
        still_up: bool = True,
        failing_loads: tuple[str, ...] = (),
        coverage_s: dict[str, float] | None = None,
        clocks: list[ClockOffset] | None = None,
        lab_deaths: dict[str, list[str]] | None = None,
    ) -> None:
        self.fps = fps
        self.errors = errors
        self.still_up = still_up
        self.failing_loads = failing_loads  # point slugs whose load phase fails
        self.coverage_s = coverage_s or {}  # seconds of the window per scrape job
        self.clocks = clocks
        self.lab_deaths = dict(lab_deaths or {})  # point slug -> daemons that died in it
        self.phases: list[tuple[str, str]] = []
        self.asked: list[tuple[str, float]] = []  # still_serving's (kind, since)
        self.loaded: list[Point] = []
        self.windows: list[float | None] = []  # the window each load was asked for
        self.clock = 1000.0

    def read_facts(self, dest: Path) -> dict[str, Any]:
        self.phases.append(("facts", ""))
        hosts = {"server": [{"name": "server"}], "client": [{"name": "client"}]}
        return {"hosts": hosts, "versions": {"haproxy": "fake"}}

    def clock_offsets(self) -> list[ClockOffset] | None:
        return self.clocks

    def serve(self, kind: str, ceiling_dest: Path) -> None:
        self.phases.append(("serve", kind))

    def still_serving(self, kind: str, since_epoch: float) -> bool:
        self.asked.append((kind, since_epoch))
        return self.still_up

    def load(self, point: Point, point_dir: Path, window_s: float | None = None) -> None:
        self.phases.append(("load", point.server))
        self.loaded.append(point)
        self.windows.append(window_s)
        if point.slug in self.failing_loads:
            raise PhaseFailed(f"playbooks/phases/load.yml failed: client: pool: {point.slug}")
        duration = window_s or WINDOW_S
        self.clock += max(10.0, duration + 6)
        summary = client_summary(
            self.fps(point), point.batch, self.errors(point), self.clock - duration, self.clock
        )
        (point_dir / "client.json").write_text(json.dumps(summary))

    def observe(
        self,
        point: Point,
        window: Window,
        summaries: dict[str, dict[str, Any]],
        link: ServerLink | None,
    ) -> Observation | None:
        finished = sum(
            s["requests"]["completed"] + sum(s["requests"]["errors"].values())
            for s in summaries.values()
        )
        coverage = [
            ScrapeCoverage(job, job, self.coverage_s.get(job, window.duration_s), window.duration_s)
            for job in SCRAPE_JOBS
        ]
        return Observation(
            # HAProxy's rate spans its first to last scrape inside the window: a second less
            proxy=ProxyMetrics(
                finished, finished / window.duration_s, max(window.duration_s - 1, 1), 1.0, None
            ),
            cpu=CpuUse(0.6, 0.1, 0.1, 2, 2, shared_host=False),
            coverage=coverage,
        )

    def teardown(self) -> None:
        self.phases.append(("teardown", ""))

    def ensure_healthy(self) -> list[str]:
        """The daemons that died (lab_deaths: point slug -> names, taken at the first
        check after that point's load), brought back."""
        self.phases.append(("health", ""))
        if self.loaded and self.loaded[-1].slug in self.lab_deaths:
            return self.lab_deaths.pop(self.loaded[-1].slug)
        return []

    def served(self) -> list[str]:
        return [kind for phase, kind in self.phases if phase == "serve"]

    def checked(self) -> int:
        return sum(phase == "health" for phase, _ in self.phases)


def client_summary(
    fps: float, batch: int, errors: dict[str, int], start: float, end: float
) -> dict[str, Any]:
    """One client host's pool summary, as servelab-load writes it, at a steady rate."""
    duration = end - start
    completed = round(fps / batch * duration)
    histogram = LogHistogram()
    for _ in range(completed):
        histogram.record(0.01)
    per_second = completed // int(duration)
    return {
        "throughput": {"frames_per_s": fps, "requests_per_s": fps / batch},
        "requests": {
            "completed": completed,
            "verified": completed,
            "verification_failures": 0,
            "errors": errors,
        },
        "window": {"start_epoch": start, "end_epoch": end, "duration_s": duration},
        "latency_histogram_s": histogram.to_dict(),
        "timeline": [{"second": s, "completed": per_second} for s in range(int(duration))],
        "pool": {"cpu_share_of_host": 0.1},
    }
