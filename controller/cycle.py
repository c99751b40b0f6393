"""One point's cycle: serve, load, measure, judge; the result for the run to write.

The serve phase runs unless the same kind served the previous point without an
error and Prometheus has scraped it since that window ended: then it still runs
with the plan's models, and serving again (Ansible's start and a dozen tasks,
about 9 s) is not needed. Anything less certain (another kind, an error, a missed
scrape) serves afresh, which also brings back a server that died.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from servelab.controller.lab import Lab, Observation, ServerLink
from servelab.controller.phases import PhaseFailed
from servelab.controller.plan import Plan, Point
from servelab.controller.prometheus import Window
from servelab.controller.results import PointResult, from_clients
from servelab.controller.validity import judge, merged_timeline, stability, worst_coverage
from servelab.server.modelrepo.ceiling import CEILING_FILE, load_ceiling
from servelab.server.modelrepo.errors import ModelRepoError

POINTS_DIR = "points"  # each point's client summaries: points/<slug>/<client host>.json


class PointCycle:
    """Measures points one after another on one lab, for one run directory."""

    def __init__(self, lab: Lab, plan: Plan, run_dir: Path, link: ServerLink | None) -> None:
        self.lab = lab
        self.plan = plan
        self.run_dir = run_dir
        self.link = link
        # (kind, end of its window) after a point that kind served without an error
        self._served_cleanly: tuple[str, float] | None = None

    def measure(self, point: Point) -> PointResult:
        """The point's result; a failed phase gives a result with status "failed"."""
        point_dir = self.run_dir / POINTS_DIR / point.slug
        shutil.rmtree(point_dir, ignore_errors=True)  # what a failed attempt left
        point_dir.mkdir(parents=True)
        result = self._serve_and_load(point, point_dir)
        clean = result.window is not None and not any(result.errors.values())
        self._served_cleanly = (point.server, result.window.end_epoch) if clean else None
        return result

    def _still_serving(self, kind: str) -> bool:
        if self._served_cleanly is None:
            return False
        served, window_end = self._served_cleanly
        return served == kind and self.lab.still_serving(kind, window_end)

    def _serve_and_load(self, point: Point, point_dir: Path) -> PointResult:
        try:
            if self._still_serving(point.server):
                print(f"{point.slug}: {point.server} still serves, not served again", flush=True)
            else:
                self.lab.serve(point.server, self.run_dir / CEILING_FILE)
            self.lab.load(point, point_dir)
        except PhaseFailed as exc:
            failed = PointResult(
                point.server, point.model, point.batch, point.concurrency, point.repeat
            )
            failed.status = "failed"
            failed.reasons = [str(exc)]
            return failed
        summaries = {p.stem: json.loads(p.read_text()) for p in sorted(point_dir.glob("*.json"))}
        return self.evaluate(point, summaries)

    def evaluate(self, point: Point, summaries: dict[str, dict[str, Any]]) -> PointResult:
        """The clients' summaries and what Prometheus saw, judged by the plan's rules."""
        try:
            ceiling = load_ceiling(self.run_dir)
        except ModelRepoError as exc:  # a damaged copy costs the ceiling, not the point
            print(f"ceiling not read: {exc}", flush=True)
            ceiling = {}
        result = from_clients(point, summaries, ceiling)
        if result.window is None:
            result.reasons = ["no client summary came back"]
            return result
        window = Window(result.window.start_epoch, result.window.end_epoch)
        seen = self.lab.observe(point, window, summaries, self.link)
        notes: list[str] = []
        if seen is None:
            notes.append("no Prometheus given (--prometheus): HAProxy and CPU not measured")
            seen = Observation()
        elif seen.error is not None:
            notes.append(f"Prometheus: {seen.error}")
        result.proxy = seen.proxy
        result.server_metrics = seen.server
        result.cpu = seen.cpu
        result.network = seen.network
        result.scrape_coverage = worst_coverage(seen.coverage) if seen.coverage else None
        result.reasons = notes + self._judge(result, window, summaries, seen)
        result.valid = not result.reasons
        return result

    def _judge(
        self,
        result: PointResult,
        window: Window,
        summaries: dict[str, dict[str, Any]],
        seen: Observation,
    ) -> list[str]:
        bounds = self.plan.validity
        clients = result.concurrency * len(summaries)
        stable = stability(
            merged_timeline(summaries),
            window.duration_s,
            clients,
            bounds.stability_intervals,
            bounds.max_spread,
        )
        result.stability = stable
        cpu, proxy = seen.cpu, seen.proxy
        if cpu is None:
            client_cpu, source = None, ""
        elif cpu.shared_host:
            client_cpu, source = cpu.client_pool, "the pools' own share: both platforms share CPUs"
        else:
            client_cpu, source = cpu.client, "node exporter"
        return judge(
            bounds=bounds,
            window=self.plan.window,
            measured_window_s=result.window.duration_s if result.window else None,
            requests=result.requests,
            errors=result.errors,
            verify_failures=result.verify_failures,
            concurrency=clients,
            proxy_rate=(proxy.requests_per_s, proxy.rate_span_s)
            if proxy and proxy.requests_per_s is not None and proxy.rate_span_s
            else None,
            client_cpu=client_cpu,
            client_cpu_source=source,
            lab_set=cpu.lab_set if cpu else None,
            stable=stable,
            coverage=seen.coverage,
        )
