"""Run a plan: each point served, loaded and written to disk the moment it is measured.

This is the controller's first cut: the points' numbers come from the client
pools' summaries. Prometheus (HAProxy's counts, server metrics, CPU) and the
report join when the client platform's load balancer and monitoring exist.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servelab.clients.histogram import LogHistogram
from servelab.clients.summary import latency_ms
from servelab.controller.modelrepo.ceiling import CEILING_FILE, CeilingRecord, load_ceiling
from servelab.controller.modelrepo.errors import ModelRepoError
from servelab.controller.phases import PROJECT_DIR, PhaseFailed, run_phase
from servelab.controller.plan import Plan, Point

# The server kinds whose runtime is OpenVINO, which the in-process ceiling measures.
OPENVINO_KINDS = frozenset({"ref-openvino", "ovms"})


@dataclass
class PointResult:
    server: str
    model: str
    batch: int
    concurrency: int
    repeat: int
    throughput_fps: float | None = None
    requests_per_s: float | None = None
    latency_ms: dict[str, float] | None = None
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    verify_failures: int = 0
    window_s: float | None = None
    in_process_fps: float | None = None  # the runtime alone on the server host (ceiling.json)
    clients: dict[str, Any] = field(default_factory=dict)
    valid: bool = False
    reasons: list[str] = field(default_factory=list)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def combine(
    point: Point,
    summaries: dict[str, dict[str, Any]],
    plan: Plan,
    ceiling: dict[tuple[str, int], CeilingRecord] | None = None,
) -> PointResult:
    """One point's record from the summaries of its client hosts."""
    result = PointResult(point.server, point.model, point.batch, point.concurrency, point.repeat)
    # The ceiling is OpenVINO's own throughput: it belongs to the kinds that run OpenVINO.
    if point.server in OPENVINO_KINDS:
        record = (ceiling or {}).get((point.model, point.batch))
        result.in_process_fps = record.throughput_fps if record else None
    result.clients = summaries
    if not summaries:
        result.reasons.append("no client summary came back")
        return result
    result.throughput_fps = sum(s["throughput"]["frames_per_s"] for s in summaries.values())
    result.requests_per_s = sum(s["throughput"]["requests_per_s"] for s in summaries.values())
    result.requests = sum(s["requests"]["completed"] for s in summaries.values())
    result.verify_failures = sum(s["requests"]["verification_failures"] for s in summaries.values())
    for summary in summaries.values():
        for code, count in summary["requests"]["errors"].items():
            result.errors[code] = result.errors.get(code, 0) + count
    result.window_s = min(s["window"]["duration_s"] for s in summaries.values())
    # Pools on several hosts merge exactly through their histograms.
    histogram = LogHistogram()
    for summary in summaries.values():
        histogram.merge(LogHistogram.from_dict(summary["latency_histogram_s"]))
    result.latency_ms = latency_ms(histogram)
    if sum(result.errors.values()):
        result.reasons.append(f"errors: {result.errors}")
    if result.verify_failures:
        result.reasons.append(f"{result.verify_failures} responses failed verification")
    if result.window_s < plan.window.duration_s * 0.99:
        result.reasons.append(
            f"window {result.window_s:.2f} s is shorter than the plan's {plan.window.duration_s} s"
        )
    if result.requests == 0:
        result.reasons.append("no request completed in the window")
    result.valid = not result.reasons
    return result


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
        latency = p.latency_ms or {}
        lines.append(
            f"{p.server:<15} {p.model:<14} {p.batch:>5} {p.concurrency:>4} "
            f"{number(p.throughput_fps):>9} {number(latency.get('p50')):>8} "
            f"{number(latency.get('p99')):>8} {number(p.in_process_fps):>8}  "
            + ("yes" if p.valid else "NO: " + "; ".join(p.reasons))
        )
    return "\n".join(lines)


class Run:
    """A run directory that is rewritten after every point, so nothing measured is lost."""

    def __init__(
        self,
        plan: Plan,
        inventory: Path,
        results_root: Path,
        extravars: dict[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.inventory = inventory
        self.extravars = extravars or {}
        started = datetime.now(UTC)
        self.id = started.strftime("%Y%m%dT%H%M%SZ") + f"-{plan.name}"
        self.dir = results_root / self.id
        (self.dir / "points").mkdir(parents=True, exist_ok=False)
        latest = results_root / "latest"
        if latest.is_symlink() or not latest.exists():
            latest.unlink(missing_ok=True)
            latest.symlink_to(self.id)
        self.meta: dict[str, Any] = {
            "id": self.id,
            "plan": plan.raw,
            "started": started.isoformat(),
            "finished": None,
            "git_commit": _git_commit(),
            "inventory": str(inventory),
            "controller": {"host": platform.node(), "python": sys.version.split()[0]},
        }
        self.points: list[PointResult] = []
        self.failures: list[str] = []
        self.save()

    def save(self) -> None:
        document = {
            "run": self.meta,
            "points": [asdict(p) for p in self.points],
            "failures": self.failures,
        }
        tmp = self.dir / "results.json.tmp"
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.replace(self.dir / "results.json")

    def _phase(self, playbook: str, extravars: dict[str, Any]) -> None:
        run_phase(
            playbook,
            {**self.extravars, "servelab_plan_file": str(self.plan.source.resolve()), **extravars},
            inventory=self.inventory,
        )

    def measure(self, point: Point) -> PointResult:
        point_dir = self.dir / "points" / point.slug
        point_dir.mkdir()
        self._phase(
            "playbooks/phases/load.yml",
            {
                "servelab_point": {**asdict(point), "slug": point.slug},
                "servelab_point_dir": str(point_dir),
            },
        )
        summaries = {p.stem: json.loads(p.read_text()) for p in sorted(point_dir.glob("*.json"))}
        try:
            ceiling = load_ceiling(self.dir)
        except ModelRepoError as exc:  # a damaged copy costs the ceiling, not the point
            print(f"ceiling not read: {exc}", flush=True)
            ceiling = {}
        return combine(point, summaries, self.plan, ceiling)

    def execute(self) -> int:
        """Measure every point; a failed phase is recorded and the run goes on."""
        served: str | None = None
        for point in self.plan.points():
            try:
                if point.server != served:
                    print(f"serving {point.server}", flush=True)
                    self._phase(
                        "playbooks/phases/serve.yml",
                        {
                            "servelab_serve_kind": point.server,
                            "servelab_ceiling_dest": str(self.dir / CEILING_FILE),
                        },
                    )
                    served = point.server
                result = self.measure(point)
            except PhaseFailed as exc:
                self.failures.append(f"{point.slug}: {exc}")
                served = None
                print(f"FAILED {point.slug}: {exc}", flush=True)
                self.save()
                continue
            self.points.append(result)
            self.save()
            fps = f"{result.throughput_fps:.1f}" if result.throughput_fps is not None else "-"
            mark = "valid" if result.valid else "INVALID: " + "; ".join(result.reasons)
            print(f"{point.slug}: {fps} frames/s ({mark})", flush=True)
        try:  # servers stop whether or not the points went well
            self._phase("playbooks/teardown.yml", {})
        except PhaseFailed as exc:
            self.failures.append(f"teardown: {exc}")
        self.meta["finished"] = datetime.now(UTC).isoformat()
        self.save()
        print(summary_table(self.points), flush=True)
        print(f"results: {self.dir / 'results.json'}", flush=True)
        return 0 if not self.failures and all(p.valid for p in self.points) else 1


def register(groups: Any) -> None:
    """The `servelab run` subcommand."""
    parser = groups.add_parser("run", help="run a benchmark plan through the lab's phases")
    parser.add_argument("--plan", type=Path, required=True, help="plan file (plans/*.yml)")
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
        type=_json_object,
        default={},
        metavar="JSON",
        help="variables (a JSON object) handed to every phase playbook, like ansible's -e",
    )
    parser.set_defaults(handler=_run_command)


def _json_object(text: str) -> dict[str, Any]:
    import argparse

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of variable names to values")
    return value


def _run_command(args: Any) -> int:
    from servelab.controller.plan import PlanError, load_plan

    plan = load_plan(args.plan)
    if not args.inventory.is_file():
        raise PlanError(f"inventory {args.inventory} does not exist; name an inventory file")
    return Run(plan, args.inventory, args.results, args.extra_vars).execute()
