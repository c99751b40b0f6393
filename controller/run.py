"""Run a plan: each point served, loaded, checked against Prometheus and written at once.

Per point: `playbooks/phases/serve.yml` (the kind up, its models AVAILABLE, every
other kind stopped; a server that died in the previous point comes back here),
unless the same kind served the previous point without an error and is still up,
then `playbooks/phases/load.yml` (the pools on every client host, one agreed
start instant), then Prometheus over exactly the window, then the validity rules.
results/<run-id>/results.json is rewritten after every point, so nothing measured
is lost; `--resume` continues an interrupted run and measures nothing twice.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servelab.controller import clocks
from servelab.controller.argtypes import json_object
from servelab.controller.metrics import (
    NetworkUse,
    cpu_use,
    network_use,
    proxy_metrics,
    server_metrics,
)
from servelab.controller.phases import PROJECT_DIR, PhaseFailed, run_phase
from servelab.controller.plan import Plan, PlanError, Point, load_plan
from servelab.controller.prometheus import PrometheusAPI, PrometheusError, Window
from servelab.controller.provenance import git_commit, read_facts
from servelab.controller.results import (
    PointResult,
    client_pool_cpu,
    from_clients,
    summary_table,
)
from servelab.controller.results import load as load_results
from servelab.controller.results import save as save_results
from servelab.controller.validity import judge, merged_timeline, stability
from servelab.server.modelrepo.ceiling import CEILING_FILE, load_ceiling
from servelab.server.modelrepo.errors import ModelRepoError

PLAN_COPY = "plan.yml"  # the plan as the run used it: --resume reads this one
FACTS_FILE = "facts.json"
# How long Prometheus may take to see a freshly started server's metrics.
TARGET_TIMEOUT_S = 20.0


class Run:
    """One run directory; every point is written to it the moment it is known."""

    def __init__(
        self,
        plan: Plan,
        run_dir: Path,
        meta: dict[str, Any],
        *,
        inventory: Path,
        extravars: dict[str, Any],
        prometheus: PrometheusAPI | None,
        progress: Path | None,
        keep_up: bool = False,
        points: list[PointResult] | None = None,
        failures: list[str] | None = None,
    ) -> None:
        self.plan = plan
        self.dir = run_dir
        self.meta = meta
        self.inventory = inventory
        self.extravars = extravars
        self.prometheus = prometheus
        self.progress = progress
        self.keep_up = keep_up
        self.points = points or []
        self.failures = failures or []
        self._point_seconds: list[float] = []
        # (kind, end of its window) after a point that kind served without an error
        self._served_cleanly: tuple[str, float] | None = None

    @classmethod
    def start(cls, plan: Plan, results_root: Path, **options: Any) -> Run:
        started = datetime.now(UTC)
        run_id = started.strftime("%Y%m%dT%H%M%SZ") + f"-{plan.name}"
        run_dir = results_root / run_id
        (run_dir / "points").mkdir(parents=True, exist_ok=False)
        shutil.copyfile(plan.source, run_dir / PLAN_COPY)
        latest = results_root / "latest"
        if latest.is_symlink() or not latest.exists():
            latest.unlink(missing_ok=True)
            latest.symlink_to(run_id)
        meta = {
            "id": run_id,
            "plan": plan.raw,
            "started": started.isoformat(),
            "finished": None,
            "git_commit": git_commit(PROJECT_DIR),
            "inventory": str(options["inventory"]),
            "hosts": {},
            "versions": {},
        }
        run = cls(load_plan(run_dir / PLAN_COPY), run_dir, meta, **options)
        run.save()
        return run

    @classmethod
    def resume(cls, run_dir: Path, **options: Any) -> Run:
        try:
            meta, points, failures = load_results(run_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise PlanError(f"cannot resume {run_dir}: no readable results.json ({exc})") from None
        plan = load_plan(run_dir / PLAN_COPY)
        meta["finished"] = None
        meta.setdefault("resumed", []).append(datetime.now(UTC).isoformat())
        return cls(plan, run_dir, meta, points=points, failures=failures, **options)

    def save(self) -> None:
        save_results(self.dir, self.meta, self.points, self.failures)

    def _phase(self, playbook: str, extravars: dict[str, Any]) -> None:
        run_phase(
            playbook,
            {**self.extravars, "servelab_plan_file": str(self.dir / PLAN_COPY), **extravars},
            inventory=self.inventory,
        )

    def _say(self, line: str) -> None:
        print(line, flush=True)
        if self.progress:
            with self.progress.open("a") as out:
                out.write(line + "\n")

    # -- provenance ----------------------------------------------------------------------

    def _provenance(self) -> None:
        if self.meta.get("hosts"):
            return
        try:
            self._phase("playbooks/phases/facts.yml", {"servelab_facts_dest": str(self.dir)})
            facts = read_facts(self.dir / FACTS_FILE)
        except (PhaseFailed, OSError, ValueError) as exc:
            self.failures.append(f"provenance: {exc}")
            return
        self.meta["hosts"] = facts["hosts"]
        self.meta["versions"] = facts["versions"]
        self.save()

    def _clocks_agree(self) -> bool:
        """Every clock against the monitoring host's; False: too far apart to measure."""
        if self.prometheus is None:
            return True
        try:
            offsets = clocks.measure(self.prometheus)
        except PrometheusError as exc:
            self.meta["clocks"] = None
            print(f"clocks not measured: {exc}", flush=True)
            return True
        self.meta["clocks"] = [asdict(o) for o in offsets]
        self.save()
        worst = max(offsets, key=lambda o: abs(o.offset_ms))
        self._say(f"clocks: the furthest is {worst.host}, {worst.offset_ms:+.1f} ms")
        try:
            clocks.check(offsets, self.plan.validity.max_clock_skew_ms)
        except clocks.ClockSkewError as exc:
            self.failures.append(f"clocks: {exc}")
            self._say(f"run stopped before its first point: {exc}")
            return False
        return True

    # -- one point -----------------------------------------------------------------------

    def _await_server_metrics(self, kind: str) -> None:
        """Wait until Prometheus scrapes the freshly served kind, so its counters cover the
        window; a target that stays down costs the server-side numbers, not the point."""
        if self.prometheus is None:
            return
        deadline = time.monotonic() + TARGET_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.prometheus.target_health("model_server", {"kind": kind}) == "up":
                    return
            except PrometheusError:
                pass
            time.sleep(0.5)

    def _still_serving(self, kind: str) -> bool:
        """Whether `kind` served the previous point without an error and Prometheus has
        scraped it since that window: then it still runs with the plan's models, and the
        serve phase (Ansible's start and a dozen tasks, about 9 s) is not needed again.
        Anything less certain (another kind, an error, a missed scrape) serves afresh."""
        if self.prometheus is None or self._served_cleanly is None:
            return False
        served, window_end = self._served_cleanly
        if served != kind:
            return False
        try:
            return self.prometheus.up_since("model_server", {"kind": kind}, window_end)
        except PrometheusError:
            return False

    def _measure(self, point: Point) -> PointResult:
        point_dir = self.dir / "points" / point.slug
        shutil.rmtree(point_dir, ignore_errors=True)  # what a failed attempt left
        point_dir.mkdir(parents=True)
        result = self._serve_and_load(point, point_dir)
        clean = result.window is not None and not any(result.errors.values())
        self._served_cleanly = (point.server, result.window.end_epoch) if clean else None
        return result

    def _serve_and_load(self, point: Point, point_dir: Path) -> PointResult:
        try:
            if self._still_serving(point.server):
                print(f"{point.slug}: {point.server} still serves, not served again", flush=True)
            else:
                self._phase(
                    "playbooks/phases/serve.yml",
                    {
                        "servelab_serve_kind": point.server,
                        "servelab_ceiling_dest": str(self.dir / CEILING_FILE),
                    },
                )
                self._await_server_metrics(point.server)
            self._phase(
                "playbooks/phases/load.yml",
                {
                    "servelab_point": {**asdict(point), "slug": point.slug},
                    "servelab_point_dir": str(point_dir),
                },
            )
        except PhaseFailed as exc:
            self.failures.append(f"{point.slug}: {exc}")
            failed = PointResult(
                point.server, point.model, point.batch, point.concurrency, point.repeat
            )
            failed.status = "failed"
            failed.reasons = [str(exc)]
            return failed
        summaries = {p.stem: json.loads(p.read_text()) for p in sorted(point_dir.glob("*.json"))}
        return self._evaluate(point, summaries)

    def _evaluate(self, point: Point, summaries: dict[str, dict[str, Any]]) -> PointResult:
        try:
            ceiling = load_ceiling(self.dir)
        except ModelRepoError as exc:  # a damaged copy costs the ceiling, not the point
            print(f"ceiling not read: {exc}", flush=True)
            ceiling = {}
        result = from_clients(point, summaries, ceiling)
        if result.window is None:
            result.reasons = ["no client summary came back"]
            return result
        window = Window(result.window.start_epoch, result.window.end_epoch)
        notes: list[str] = []
        proxy = server = cpu = network = None
        if self.prometheus is None:
            notes.append("no Prometheus given (--prometheus): HAProxy and CPU not measured")
        else:
            try:
                for job in ("haproxy", "node"):
                    # interpolation needs a scrape after the window's end
                    self.prometheus.wait_for_scrapes(job, window.end_epoch + 1.2, timeout_s=15)
                proxy = proxy_metrics(self.prometheus, point.server, window)
                server = server_metrics(self.prometheus, point.server, point.model, window)
                cpu = cpu_use(self.prometheus, window, client_pool_cpu(summaries))
                network = self._network_use(window)
            except PrometheusError as exc:
                notes.append(f"Prometheus: {exc}")
        result.proxy = proxy
        result.server_metrics = server
        result.cpu = cpu
        result.network = network
        clients = point.concurrency * len(summaries)
        stable = stability(
            merged_timeline(summaries),
            window.duration_s,
            clients,
            self.plan.validity.stability_intervals,
            self.plan.validity.max_spread,
        )
        result.stability = stable
        if cpu is None:
            client_cpu, source = None, ""
        elif cpu.shared_host:
            client_cpu, source = cpu.client_pool, "the pools' own share: both platforms share CPUs"
        else:
            client_cpu, source = cpu.client, "node exporter"
        result.reasons = notes + judge(
            bounds=self.plan.validity,
            window=self.plan.window,
            measured_window_s=result.window.duration_s,
            requests=result.requests,
            errors=result.errors,
            verify_failures=result.verify_failures,
            concurrency=clients,
            proxy_rate=(proxy.requests_per_s, proxy.rate_span_s)
            if proxy and proxy.requests_per_s is not None and proxy.rate_span_s
            else None,
            client_cpu=client_cpu,
            client_cpu_source=source,
            stable=stable,
        )
        result.valid = not result.reasons
        return result

    def _network_use(self, window: Window) -> NetworkUse | None:
        """The server host's lab link, found by provenance (phases/facts.yml)."""
        servers = (self.meta.get("hosts") or {}).get("server") or [{}]
        link = servers[0].get("network") or {}
        if not link.get("device"):
            return None
        speed = link.get("speed_mbps")
        speed = float(speed) if str(speed).isdigit() else None  # facts may carry digits as text
        return network_use(self.prometheus, servers[0]["name"], link["device"], speed, window)

    def _record(self, result: PointResult, done: int, total: int, seconds: float) -> None:
        self.points = [p for p in self.points if p.point != result.point] + [result]
        self.save()
        self._point_seconds.append(seconds)
        left = statistics.mean(self._point_seconds) * (total - done)
        self._say(_point_line(result, done, total) + f" (about {_duration(left)} left)")

    # -- the plan ------------------------------------------------------------------------

    def execute(self) -> int:
        """Measure every point not yet measured; a failed phase is recorded, the run goes on."""
        if self.progress:
            self.progress.parent.mkdir(parents=True, exist_ok=True)
        measured = {p.point: p for p in self.points if p.status == "measured"}
        failures_before = len(self.failures)  # a resumed run answers for itself
        total = len(list(self.plan.points()))
        done = 0
        try:
            self._provenance()
            configurations = self.plan.configurations() if self._clocks_agree() else []
            for server, model, batch in configurations:
                best: float | None = None
                for concurrency in self.plan.concurrency:
                    rates = []
                    for repeat in range(self.plan.repeats):
                        point = Point(server, model, batch, concurrency, repeat)
                        done += 1
                        result = measured.get(point)
                        if result is None:
                            began = time.monotonic()
                            result = self._measure(point)
                            self._record(result, done, total, time.monotonic() - began)
                        else:
                            self._say(_point_line(result, done, total) + " (measured before)")
                        if result.valid and result.throughput_fps is not None:
                            rates.append(result.throughput_fps)
                    if self.plan.sweep is None:
                        continue
                    # A sweep ends where one more step of concurrency stops paying.
                    level = statistics.median(rates) if rates else None
                    if level is None or (
                        best is not None and level < best * (1 + self.plan.sweep.min_gain)
                    ):
                        for skipped in self._levels_above(server, model, batch, concurrency):
                            done += 1
                            self._say(
                                f"point {done}/{total} {skipped.slug}: skipped, the sweep"
                                f" stopped at concurrency {concurrency}"
                            )
                        break
                    best = max(best or 0.0, level)
        finally:
            self._finish()
        ok = len(self.failures) == failures_before and all(p.valid for p in self.points)
        return 0 if ok else 1

    def _levels_above(self, server: str, model: str, batch: int, concurrency: int):
        for level in (c for c in self.plan.concurrency if c > concurrency):
            for repeat in range(self.plan.repeats):
                yield Point(server, model, batch, level, repeat)

    def _finish(self) -> None:
        try:  # servers stop whether or not the points went well, unless asked to stay up
            if not self.keep_up:
                self._phase("playbooks/teardown.yml", {})
        except PhaseFailed as exc:
            self.failures.append(f"teardown: {exc}")
        self.meta["finished"] = datetime.now(UTC).isoformat()
        self.save()
        verdict_lines: list[str] = []
        try:  # every finished run joins results/history.jsonl and is judged (verdict.json)
            from servelab.controller.verdict import register_and_judge

            verdict_lines = register_and_judge(self.dir).lines()
        except Exception as exc:  # results stand; `servelab history --register` retries
            self.failures.append(f"history: {exc}")
            self.save()
        try:
            from servelab.controller.report import build_report

            build_report(self.dir)
        except Exception as exc:  # the report is rebuilt by `servelab report`; results stay
            self.failures.append(f"report: {exc}")
            self.save()
        print(summary_table(self.points), flush=True)
        for line in verdict_lines:
            print(line, flush=True)
        print(f"results: {self.dir}", flush=True)
        valid = sum(p.valid for p in self.points)
        self._say(f"run finished: {valid} of {len(self.points)} points valid, report in {self.dir}")


def _point_line(result: PointResult, done: int, total: int) -> str:
    latency = result.latency.p99
    fps = "-" if result.throughput_fps is None else f"{result.throughput_fps:.1f}"
    p99 = "-" if latency is None else f"{latency:.1f}"
    verdict = "valid" if result.valid else "INVALID: " + "; ".join(result.reasons)
    if result.status == "failed":
        verdict = "FAILED: " + "; ".join(result.reasons)
    return f"point {done}/{total} {result.point.slug}: {fps} frames/s, p99 {p99} ms, {verdict}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def register(groups: Any) -> None:
    """The `servelab run` subcommand."""
    parser = groups.add_parser("run", help="run a benchmark plan through the lab's phases")
    parser.add_argument("--plan", type=Path, help="plan file (plans/*.yml)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run (results/<run-id>): measured points are kept",
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        default=PROJECT_DIR / "inventory" / "local.yml",
        help="Ansible inventory of the lab (default: the embedded inventory/local.yml)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=PROJECT_DIR / "results",
        help="where results/<run-id>/ is written (default: results/ in the project)",
    )
    parser.add_argument(
        "--extra-vars",
        type=json_object,
        default={},
        metavar="JSON",
        help="variables (a JSON object) handed to every phase playbook, like ansible's -e",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="the lab's Prometheus (http://host:port) for HAProxy's counts, server metrics, CPU",
    )
    parser.add_argument(
        "--progress", type=Path, help="also append each finished point's line to this file"
    )
    parser.add_argument(
        "--keep-up",
        action="store_true",
        help="leave the lab running after the run (playbooks/teardown.yml stops it later)",
    )
    parser.add_argument(
        "--list-points",
        action="store_true",
        help="print the plan's points (a JSON list of slugs) and exit",
    )
    parser.set_defaults(handler=_run_command)


def _run_command(args: Any) -> int:
    if (args.plan is None) == (args.resume is None):
        raise PlanError("give either --plan PLAN (a new run) or --resume RUN_DIR")
    if args.list_points:
        plan = load_plan(args.plan or args.resume / PLAN_COPY)
        print(json.dumps([p.slug for p in plan.points()]))
        return 0
    if not args.inventory.is_file():
        raise PlanError(f"inventory {args.inventory} does not exist; name an inventory file")
    options = {
        "inventory": args.inventory,
        "extravars": args.extra_vars,
        "prometheus": PrometheusAPI(args.prometheus) if args.prometheus else None,
        "progress": args.progress,
        "keep_up": args.keep_up,
    }
    try:
        if args.resume:
            run = Run.resume(args.resume, **options)
        else:
            run = Run.start(load_plan(args.plan), args.results, **options)
    except (PlanError, OSError) as exc:
        if args.progress:  # benchmark.yml follows this file: tell it the run is over
            args.progress.parent.mkdir(parents=True, exist_ok=True)
            with args.progress.open("a") as out:
                out.write(f"run finished: did not start: {exc}\n")
        raise PlanError(str(exc)) from None
    try:
        return run.execute()
    except KeyboardInterrupt:
        print(f"interrupted: continue with servelab run --resume {run.dir}", file=sys.stderr)
        return 130
