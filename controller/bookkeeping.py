"""A run's bookkeeping: its directory, provenance, clocks, time left, history and report.

results/<run-id>/ holds the plan as the run used it (plan.yml, which `--resume`
reads), results.json (rewritten after every point, so nothing measured is lost)
and each point's client summaries. A finished run joins results/history.jsonl, is
judged against it (verdict.json) and gets its report.
"""

from __future__ import annotations

import shutil
import statistics
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servelab.controller import clocks
from servelab.controller.formats import DASH, format_percentile
from servelab.controller.lab import Lab
from servelab.controller.phases import PROJECT_DIR, PhaseFailed
from servelab.controller.plan import Plan, PlanError, Point, load_plan
from servelab.controller.prometheus import PrometheusError
from servelab.controller.provenance import git_commit
from servelab.controller.report import build_report
from servelab.controller.results import PointResult, summary_table
from servelab.controller.results import load as load_results
from servelab.controller.results import save as save_results
from servelab.controller.verdict import register_and_judge

PLAN_COPY = "plan.yml"  # the plan as the run used it: --resume reads this one


class RunBook:
    """One run directory; every point is written to it the moment it is known."""

    def __init__(
        self,
        plan: Plan,
        run_dir: Path,
        meta: dict[str, Any],
        *,
        progress: Path | None,
        points: list[PointResult] | None = None,
        failures: list[str] | None = None,
    ) -> None:
        self.plan = plan
        self.dir = run_dir
        self.meta = meta
        self.progress = progress
        self.points = points or []
        self.failures = failures or []
        self._point_seconds: list[float] = []

    @property
    def plan_file(self) -> Path:
        return self.dir / PLAN_COPY

    @classmethod
    def start(
        cls, plan: Plan, results_root: Path, *, inventory: Path, progress: Path | None
    ) -> RunBook:
        """A new run directory under results_root, with results/latest pointing at it."""
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
            "inventory": str(inventory),
            "hosts": {},
            "versions": {},
        }
        book = cls(load_plan(run_dir / PLAN_COPY), run_dir, meta, progress=progress)
        book.save()
        return book

    @classmethod
    def resume(cls, run_dir: Path, *, progress: Path | None) -> RunBook:
        """An interrupted run, its measured points kept; PlanError if it cannot be read."""
        try:
            meta, points, failures = load_results(run_dir)
        except (OSError, ValueError, KeyError) as exc:
            raise PlanError(f"cannot resume {run_dir}: no readable results.json ({exc})") from None
        plan = load_plan(run_dir / PLAN_COPY)
        meta["finished"] = None
        meta.setdefault("resumed", []).append(datetime.now(UTC).isoformat())
        return cls(plan, run_dir, meta, progress=progress, points=points, failures=failures)

    def save(self) -> None:
        save_results(self.dir, self.meta, self.points, self.failures)

    def say(self, line: str) -> None:
        """A progress line: on the terminal, and in --progress's file (benchmark.yml reads it)."""
        print(line, flush=True)
        if self.progress:
            with self.progress.open("a") as out:
                out.write(line + "\n")

    def open_progress(self) -> None:
        if self.progress:
            self.progress.parent.mkdir(parents=True, exist_ok=True)

    # -- before the first point ----------------------------------------------------------

    def record_provenance(self, lab: Lab) -> None:
        """The hosts and versions, read once per run (a resumed run keeps its own)."""
        if self.meta.get("hosts"):
            return
        try:
            facts = lab.read_facts(self.dir)
        except (PhaseFailed, OSError, ValueError) as exc:
            self.failures.append(f"provenance: {exc}")
            return
        self.meta["hosts"] = facts["hosts"]
        self.meta["versions"] = facts["versions"]
        self.save()

    def clocks_agree(self, lab: Lab) -> bool:
        """Every clock against the monitoring host's; False: too far apart to measure."""
        try:
            offsets = lab.clock_offsets()
        except PrometheusError as exc:
            self.meta["clocks"] = None
            print(f"clocks not measured: {exc}", flush=True)
            return True
        if offsets is None:  # no Prometheus to read the clocks through
            return True
        self.meta["clocks"] = [asdict(o) for o in offsets]
        self.save()
        worst = max(offsets, key=lambda o: abs(o.offset_ms))
        self.say(f"clocks: the furthest is {worst.host}, {worst.offset_ms:+.1f} ms")
        try:
            clocks.check(offsets, self.plan.validity.max_clock_skew_ms)
        except clocks.ClockSkewError as exc:
            self.failures.append(f"clocks: {exc}")
            self.say(f"run stopped before its first point: {exc}")
            return False
        return True

    # -- each point ----------------------------------------------------------------------

    def measured_before(self) -> dict[Point, PointResult]:
        """The points an earlier attempt of this run measured: --resume keeps them."""
        return {p.point: p for p in self.points if p.status == "measured"}

    def record(self, result: PointResult, done: int, total: int, seconds: float) -> None:
        """Write the point at once, and say it with the time the rest may take."""
        self.points = [p for p in self.points if p.point != result.point] + [result]
        # a lab fault is the point's own record until it is measured again; the run's
        # failures are what no new measurement can undo
        if result.status == "failed" and not result.lab_fault:
            self.failures += [f"{result.point.slug}: {reason}" for reason in result.reasons]
        self.save()
        self._point_seconds.append(seconds)
        left = statistics.mean(self._point_seconds) * (total - done)
        self.say(point_line(result, done, total) + f" (about {_duration(left)} left)")

    def kept(self, result: PointResult, done: int, total: int) -> None:
        self.say(point_line(result, done, total) + " (measured before)")

    def skipped(self, point: Point, reason: str, done: int, total: int) -> None:
        self.say(f"point {done}/{total} {point.slug}: skipped, {reason}")

    # -- after the last point ------------------------------------------------------------

    def finish(self, lab: Lab, *, keep_up: bool) -> None:
        """Teardown (unless kept up), then history, verdict, report and the summary."""
        try:  # servers stop whether or not the points went well, unless asked to stay up
            if not keep_up:
                lab.teardown()
        except PhaseFailed as exc:
            self.failures.append(f"teardown: {exc}")
        self.meta["finished"] = datetime.now(UTC).isoformat()
        self.save()
        verdict_lines: list[str] = []
        try:  # every finished run joins results/history.jsonl and is judged (verdict.json)
            verdict_lines = register_and_judge(self.dir).lines()
        except Exception as exc:  # results stand; `servelab history --register` retries
            self.failures.append(f"history: {exc}")
            self.save()
        try:
            build_report(self.dir)
        except Exception as exc:  # the report is rebuilt by `servelab report`; results stay
            self.failures.append(f"report: {exc}")
            self.save()
        print(summary_table(self.points), flush=True)
        for line in verdict_lines:
            print(line, flush=True)
        print(f"results: {self.dir}", flush=True)
        valid = sum(p.valid for p in self.points)
        self.say(f"run finished: {valid} of {len(self.points)} points valid, report in {self.dir}")


def point_line(result: PointResult, done: int, total: int) -> str:
    """A point's progress line: its throughput, the requests and window behind it, p99, verdict."""
    fps = "-" if result.throughput_fps is None else f"{result.throughput_fps:.1f}"
    p99 = format_percentile(result.latency, "p99")
    p99 = "p99 -" if p99 == DASH else f"p99 {p99}" if p99.startswith("n/a") else f"p99 {p99} ms"
    behind = ""
    if result.window is not None and result.requests is not None:
        behind = f", {result.requests} requests in {result.window.duration_s:.0f} s"
    verdict = "valid" if result.valid else "INVALID: " + "; ".join(result.reasons)
    if result.status == "failed":
        verdict = "FAILED: " + "; ".join(result.reasons)
    return f"point {done}/{total} {result.point.slug}: {fps} frames/s{behind}, {p99}, {verdict}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
