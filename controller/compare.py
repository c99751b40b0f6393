"""Compare two runs point by point: `servelab compare RUN_A RUN_B`.

A point is a (server kind, model, batch, concurrency); its repeats are aggregated
by the median of the valid ones. The change is B relative to A, in percent, and
is computed only where both runs hold a valid repeat of the point.

Each change carries the 95% interval of B's mean over A's (Fieller's, from each
run's repeats, or from batch means of a single repeat's window:
controller/intervals.py). A change is beyond the noise when that interval leaves
out 0; where either run cannot give an interval, the table says why.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from servelab.controller.fingerprint import run_differences, untuned_note
from servelab.controller.formats import DASH, format_fps, format_ms
from servelab.controller.intervals import Estimate, Interval, configuration_estimate, ratio_interval
from servelab.controller.results import PointResult, RunResults, read_results
from servelab.controller.validity import merged_timeline

Key = tuple[str, str, int, int]  # server, model, batch, concurrency
RANGE_DASH = "\u2013"  # between an interval's bounds


@dataclass(frozen=True)
class RunSide:
    """One run's repeats of one point."""

    throughput_fps: float | None  # median of the valid repeats (of the measured ones if none is)
    p99_ms: float | None  # the same repeats' median client p99
    valid: bool  # at least one valid repeat
    valid_repeats: int
    repeats: int
    reasons: tuple[str, ...]  # why repeats are invalid or failed, each reason once
    # the valid repeats' mean and its standard error (controller/intervals.py); None
    # with `interval_note` saying why when they give none
    estimate: Estimate | None = None
    interval_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {**asdict(self), "reasons": list(self.reasons)}
        data["estimate"] = asdict(self.estimate) if self.estimate else None
        return data


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate_side(points: Sequence[PointResult]) -> RunSide:
    """The repeats of one point in one run: median of the valid ones."""
    counted = [p for p in points if p.counted]
    shown = counted or [p for p in points if p.status == "measured"]
    reasons: dict[str, None] = {}
    for point in points:
        if point.counted:
            continue
        prefix = "failed: " if point.status == "failed" else ""
        for reason in point.reasons or ("no reason recorded",):
            reasons[prefix + reason] = None
    rates = [p.throughput_fps or 0.0 for p in counted]
    timeline = merged_timeline(counted[0].clients) if len(counted) == 1 else None
    estimate, why = configuration_estimate(rates, timeline)
    return RunSide(
        throughput_fps=_median([p.throughput_fps for p in shown]),
        p99_ms=_median([p.latency.p99 for p in shown]),
        valid=bool(counted),
        valid_repeats=len(counted),
        repeats=len(points),
        reasons=tuple(reasons),
        estimate=estimate,
        interval_note=None if estimate else why,
    )


@dataclass(frozen=True)
class ComparedPoint:
    server: str
    model: str
    batch: int
    concurrency: int
    a: RunSide | None  # None: the point is not in run A
    b: RunSide | None

    @property
    def where(self) -> str:
        if self.a and self.b:
            return "both"
        return "a" if self.a else "b"

    @property
    def change_pct(self) -> float | None:
        """(B - A) / A in percent, when both runs hold a valid repeat of the point."""
        a, b = self.a, self.b
        if not (a and b and a.valid and b.valid) or not a.throughput_fps:
            return None
        if b.throughput_fps is None:
            return None
        return 100.0 * (b.throughput_fps - a.throughput_fps) / a.throughput_fps

    @property
    def change_interval(self) -> Interval | None:
        """The 95% interval of the change in percent; None where no change is computed."""
        a, b, change = self.a, self.b, self.change_pct
        if a is None or b is None or change is None:
            return None
        if a.estimate is None or b.estimate is None:
            which = "A" if a.estimate is None else "B"
            why = (a if which == "A" else b).interval_note
            return Interval(change, None, None, 0, "", f"no interval in {which}: {why}")
        ratio = ratio_interval(b.estimate, a.estimate)
        low = None if ratio.low is None else 100.0 * (ratio.low - 1.0)
        high = None if ratio.high is None else 100.0 * (ratio.high - 1.0)
        return Interval(change, low, high, ratio.samples, ratio.method, ratio.note)

    @property
    def noise(self) -> str:
        """Whether the change is beyond the noise: its interval leaves out 0."""
        bounds = self.change_interval
        if bounds is None:
            return ""
        if bounds.low is None or bounds.high is None:
            return bounds.note or "no interval"
        return "beyond the noise" if bounds.low > 0 or bounds.high < 0 else "within the noise"

    @property
    def note(self) -> str:
        if self.a is None:
            return "only in B"
        if self.b is None:
            return "only in A"
        notes = []
        for name, side in (("A", self.a), ("B", self.b)):
            if not side.valid:
                notes.append(f"INVALID in {name}: " + "; ".join(side.reasons))
            elif side.valid_repeats < side.repeats:
                notes.append(
                    f"{name}: {side.repeats - side.valid_repeats} of {side.repeats} repeats "
                    f"left out ({'; '.join(side.reasons)})"
                )
        return " | ".join(notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "model": self.model,
            "batch": self.batch,
            "concurrency": self.concurrency,
            "in": self.where,
            "a": self.a.to_json() if self.a else None,
            "b": self.b.to_json() if self.b else None,
            "change_pct": self.change_pct,
            "change_low_pct": bounds.low if (bounds := self.change_interval) else None,
            "change_high_pct": bounds.high if bounds else None,
            "noise": self.noise,
            "note": self.note,
        }


@dataclass(frozen=True)
class Comparison:
    a: RunResults
    b: RunResults
    points: tuple[ComparedPoint, ...]

    def to_json(self) -> dict[str, Any]:
        def run(results: RunResults) -> dict[str, Any]:
            return {"id": results.run_id, "plan": results.plan_name, "path": str(results.path)}

        return {
            "a": run(self.a),
            "b": run(self.b),
            "points": [p.to_json() for p in self.points],
            "machine_differences": [asdict(d) for d in run_differences(self.a, self.b)],
        }


def _grouped(results: RunResults) -> dict[Key, list[PointResult]]:
    groups: dict[Key, list[PointResult]] = {}
    for p in results.points:
        groups.setdefault((p.server, p.model, p.batch, p.concurrency), []).append(p)
    return groups


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    """Every point of either run, with both runs' aggregates; ReportError for bad input."""
    a, b = read_results(run_a), read_results(run_b)
    groups_a, groups_b = _grouped(a), _grouped(b)
    kinds = list(dict.fromkeys([*a.kinds, *b.kinds]))
    models = list(dict.fromkeys([*a.models, *b.models]))
    keys = sorted(
        set(groups_a) | set(groups_b),
        key=lambda k: (kinds.index(k[0]), models.index(k[1]), k[2], k[3]),
    )
    return Comparison(
        a,
        b,
        tuple(
            ComparedPoint(
                *key,
                a=aggregate_side(groups_a[key]) if key in groups_a else None,
                b=aggregate_side(groups_b[key]) if key in groups_b else None,
            )
            for key in keys
        ),
    )


def _fps_cell(side: RunSide | None) -> str:
    if side is None or side.throughput_fps is None:
        return DASH
    text = format_fps(side.throughput_fps)
    return text if side.valid else f"({text})"


def _interval_cells(bounds: Interval | None) -> tuple[str, str, str]:
    """The change's interval, the samples behind it, and whether it is beyond the noise."""
    if bounds is None:
        return DASH, DASH, DASH
    if bounds.low is None or bounds.high is None:
        return DASH, str(bounds.samples) if bounds.samples else DASH, "unknown"
    beyond = bounds.low > 0 or bounds.high < 0
    return (
        f"{bounds.low:+.1f}%{RANGE_DASH}{bounds.high:+.1f}%",
        str(bounds.samples),
        "BEYOND" if beyond else "within",
    )


def _interval_why(bounds: Interval | None) -> str:
    return bounds.note or "" if bounds is not None and bounds.low is None else ""


def _ms_cell(side: RunSide | None) -> str:
    if side is None or side.p99_ms is None:
        return DASH
    text = format_ms(side.p99_ms)
    return text if side.valid else f"({text})"


def format_table(comparison: Comparison) -> str:
    """The comparison as a fixed-width table with a header naming both runs."""
    header = (
        "server",
        "model",
        "batch",
        "conc",
        "A fps",
        "B fps",
        "change",
        "A p99 ms",
        "B p99 ms",
        "95% interval",
        "n",
        "noise",
    )
    rows = []
    for p in comparison.points:
        change = p.change_pct
        rows.append(
            (
                p.server,
                p.model,
                str(p.batch),
                str(p.concurrency),
                _fps_cell(p.a),
                _fps_cell(p.b),
                DASH if change is None else f"{change:+.1f}%",
                _ms_cell(p.a),
                _ms_cell(p.b),
                *_interval_cells(p.change_interval),
                "; ".join(n for n in (_interval_why(p.change_interval), p.note) if n),
            )
        )
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    left = 2  # server and model are left-aligned, numbers right-aligned

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(cells[:12])
        ]
        note = cells[12] if len(cells) > 12 else "note"
        return ("  ".join(parts) + "  " + note).rstrip()

    a, b = comparison.a, comparison.b
    out = [
        f"A: {a.run_id} (plan {a.plan_name}) {a.path}",
        f"B: {b.run_id} (plan {b.plan_name}) {b.path}",
        "fps: frames/s, the median of the valid repeats; change = (B - A) / A; "
        "(x) = invalid, not compared",
        "95% interval of the change: Fieller's, from each run's repeats (or one repeat's batch"
        " means), n = the fewer of the two sides'; noise: BEYOND when the interval leaves out 0",
        "",
        line(header),
        line(["-" * w for w in widths] + ["-" * 4]),
    ]
    out.extend(line(r) for r in rows)
    if not rows:
        out.append("(neither run holds a point)")
    machine = run_differences(a, b)
    if machine:
        out += ["", "MACHINES DIFFER: a change above may be the machine's, not the server's"]
        out += [f"  {d}" for d in machine]
    note = untuned_note(a, b)
    if note:
        out += ["", f"note: {note}"]
    return "\n".join(out)


def register(groups: Any) -> None:
    """The `servelab compare` subcommand."""
    parser = groups.add_parser(
        "compare", help="compare the throughput and latency of two runs point by point"
    )
    parser.add_argument("run_a", metavar="RUN_A", type=Path, help="run directory (or results.json)")
    parser.add_argument("run_b", metavar="RUN_B", type=Path, help="run directory (or results.json)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    comparison = compare_runs(args.run_a, args.run_b)
    if args.json:
        print(json.dumps(comparison.to_json(), indent=2))
    else:
        print(format_table(comparison))
    return 0
