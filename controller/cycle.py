"""One point's cycle: serve, load, measure, judge; the result for the run to write.

The serve phase runs unless the same kind served an earlier point without an
error, nothing stopped it since, and Prometheus has scraped it since that window
ended: then it still runs with the plan's models, and serving again (Ansible's
start and a dozen tasks, about 9 s) is not needed. Each kind is followed on its
own: when the lab leaves the other kinds idle (`serve_others: idle`), interleaved
repeats switch between kinds without serving again. Anything less certain (an
error, a missed scrape, a serve that stopped the kind) serves afresh, which also
brings back a server that died.

Each point's window comes from controller/window_length.py: the plan's duration,
or longer when the rate seen so far says the point would hold too few requests. A
window that still ends short is measured again, longer; only the last attempt is
kept (its result carries `window_choice`: how long, how many attempts, why).

Before each point the lab's own daemons are checked and any that died brought back;
a point that went wrong while one was down is a lab fault (failed, measured again),
while a point that went wrong with the lab whole stays invalid: the server spoiled it.
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
from servelab.controller.results import LAB_FAULT, PointResult, from_clients
from servelab.controller.validity import judge, merged_timeline, stability, worst_coverage
from servelab.controller.window_length import WindowChoice, WindowPlanner
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
        # kind -> end of the window of its last point, served without an error since
        # its last serve phase (and not stopped by another kind's)
        self._served_cleanly: dict[str, float] = {}
        self.windows = WindowPlanner(plan.window, plan.validity)

    def measure(self, point: Point) -> PointResult:
        """The point's result; a failed phase gives a result with status "failed", and so
        does a point the lab's own daemons spoiled (a lab fault: see `_lab_fault`)."""
        try:  # a daemon that died since the last point comes back before this one
            brought_back = self.lab.ensure_healthy()
        except PhaseFailed as exc:
            return _failed(point, f"{LAB_FAULT}: the lab's daemons did not come back: {exc}")
        if brought_back:
            print(f"{point.slug}: brought back {', '.join(brought_back)} first", flush=True)
        choice: WindowChoice | None = self.windows.first(point)
        while choice is not None:
            result = self._attempt(point, choice)
            choice = self._longer_window(point, result, choice)
        if result.status == "failed" or not result.valid:
            result = self._lab_fault(point, result)
        return result

    def _attempt(self, point: Point, choice: WindowChoice) -> PointResult:
        point_dir = self.run_dir / POINTS_DIR / point.slug
        shutil.rmtree(point_dir, ignore_errors=True)  # what a failed or short attempt left
        point_dir.mkdir(parents=True)
        result = self._serve_and_load(point, point_dir, choice.duration_s)
        clean = result.window is not None and not any((result.errors or {}).values())
        if clean and result.window is not None and result.window.end_epoch is not None:
            self._served_cleanly[point.server] = result.window.end_epoch
        else:
            self._served_cleanly.pop(point.server, None)
        if choice.reason is not None:
            result.window_choice = choice
        return result

    def _lab_fault(self, point: Point, result: PointResult) -> PointResult:
        """A point that went wrong while one of the lab's own daemons was down is the lab's
        fault, not the server's: recorded as failed, to be measured again. A point that
        went wrong with every daemon up stays as it is (the server spoiled it)."""
        try:
            died = self.lab.ensure_healthy()
        except PhaseFailed as exc:
            return _failed(point, f"{LAB_FAULT}: the lab's daemons did not come back: {exc}")
        if not died:
            return result
        self._served_cleanly.clear()
        spoiled = "; ".join(result.reasons) or "no reason recorded"
        return _failed(
            point,
            f"{LAB_FAULT}: {', '.join(died)} died during the point and was brought back "
            f"(the point: {spoiled})",
        )

    def _longer_window(
        self, point: Point, result: PointResult, choice: WindowChoice
    ) -> WindowChoice | None:
        """The next attempt's window when this one ended short of its requests; else None."""
        if result.status != "measured" or result.window is None or result.errors_total:
            return None  # a failed or erring point is not made valid by a longer window
        hosts = len(result.clients)
        requests = result.requests or 0
        self.windows.learn(point, requests, result.window.duration_s, hosts)
        longer = self.windows.again(point, choice, requests, result.window.duration_s, hosts)
        if longer is not None:
            print(f"{point.slug}: {longer.reason}; measured again", flush=True)
        return longer

    def _still_serving(self, kind: str) -> bool:
        window_end = self._served_cleanly.get(kind)
        return window_end is not None and self.lab.still_serving(kind, window_end)

    def _serve(self, kind: str) -> None:
        if self.lab.serve_others == "stopped":
            self._served_cleanly.clear()  # the serve phase stops every other kind
        else:
            self._served_cleanly.pop(kind, None)
        self.lab.serve(kind, self.run_dir / CEILING_FILE)

    def _serve_and_load(self, point: Point, point_dir: Path, window_s: float) -> PointResult:
        try:
            if self._still_serving(point.server):
                print(f"{point.slug}: {point.server} still serves, not served again", flush=True)
            else:
                self._serve(point.server)
            self.lab.load(point, point_dir, window_s)
        except PhaseFailed as exc:
            return _failed(point, str(exc))
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
        result.programs = seen.programs
        result.scrape_coverage = worst_coverage(seen.coverage) if seen.coverage else None
        result.frequency = seen.frequency or None
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
            client_cpu = cpu.client_pool
            source = "the pools' own share: both platforms share CPUs"
            if cpu.client_pool_source == "process exporter":
                source += " (servelab-load's processes, process exporter)"
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
            frequency=seen.frequency,
        )


def _failed(point: Point, reason: str) -> PointResult:
    failed = PointResult(point.server, point.model, point.batch, point.concurrency, point.repeat)
    failed.status = "failed"
    failed.reasons = [reason]
    return failed
