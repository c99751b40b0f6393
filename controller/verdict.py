"""The verdict of a run: each point against the same point in the run's recent history.

For each point of the new run (server kind, model, batch, concurrency, under the
same plan, measured the same way, on the same hosts) the history is the point's
values in the last `history_runs` earlier runs of that series where it was valid;
a run's value is the median of its valid repeats.

The test is a prediction interval from the history's own spread: with history
mean m, standard deviation s over n values, a new run drawn from the same noise
gives t = (y - m) / (s * sqrt(1 + 1/n)), distributed as Student's t with n - 1
degrees of freedom. The confidence of a drop is the probability, under that
distribution, that a run of unchanged speed would be above the new value (of a
rise, below it): 50% is no evidence either way, 99% means a run of the history's
own noise falls this low once in a hundred nights. A point has regressed when
that confidence reaches `confidence` *and* the drop is at least `min_change` of
the history's mean, so a change too small to matter never alarms however quiet
the history is. Nothing is assumed about the noise beyond the history itself.

The new run's own precision counts too: a drop (rise) is called only when the
history's mean also lies outside the run's 95% interval of the point
(controller/intervals.py, from its repeats or one repeat's batch means). A run
that gives no interval (one repeat of a short window, a run of an older
servelab) is judged by the history alone, and its line says so.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from servelab.controller.fingerprint import run_differences
from servelab.controller.history import (
    HistoryError,
    HistoryRecord,
    PointKeyed,
    PointValue,
    read_history,
    register,
)
from servelab.controller.intervals import t_cdf, t_inverse
from servelab.controller.results import ReportError, read_results

VERDICT_FILE = "verdict.json"
RANGE_DASH = "\u2013"  # between an interval's bounds
REGRESSED, IMPROVED, UNCHANGED, NOT_JUDGED = "regressed", "improved", "unchanged", "not judged"


@dataclass(frozen=True)
class Settings:
    history_runs: int = 10  # the last this many earlier runs with a valid value of the point
    min_history: int = 3  # fewer valid earlier values: not judged
    confidence: float = 0.99  # one-sided: the alarm's false-alarm rate is 1 - this per point
    min_change: float = 0.05  # a smaller change is never a regression (fraction of the mean)

    def check(self) -> None:
        """ValueError naming the setting that is out of range."""
        if self.min_history < 2:
            raise ValueError(f"min_history {self.min_history}: at least 2 (a spread needs two)")
        if self.history_runs < self.min_history:
            raise ValueError(
                f"history_runs {self.history_runs} is below min_history {self.min_history}"
            )
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence {self.confidence}: must be above 0.5 and below 1")
        if not 0 <= self.min_change < 1:
            raise ValueError(f"min_change {self.min_change}: a fraction from 0 up to below 1")


# ---------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True)
class PointVerdict(PointKeyed):
    server: str
    model: str
    batch: int
    concurrency: int
    status: str  # regressed, improved, unchanged, not judged
    reason: str  # one sentence: why this status
    throughput_fps: float | None  # this run's median of valid repeats
    history_runs: tuple[str, ...] = ()  # the run ids whose values form the history, oldest first
    history_fps: tuple[float, ...] = ()
    history_skipped: int = 0  # earlier runs in the span where the point was invalid or failed
    mean_fps: float | None = None
    stdev_fps: float | None = None
    expected_low_fps: float | None = None  # below this: a drop at the confidence level
    expected_high_fps: float | None = None  # above this: a rise at the confidence level
    change_pct: float | None = None  # (this run - history mean) / history mean, in percent
    confidence: float | None = None  # of a drop when change < 0, of a rise when > 0
    # this run's 95% interval of the point (None: it has none, `reason` says so)
    run_low_fps: float | None = None
    run_high_fps: float | None = None
    run_samples: int = 0

    @property
    def cv_pct(self) -> float | None:
        if self.mean_fps is None or self.stdev_fps is None or not self.mean_fps:
            return None
        return 100.0 * self.stdev_fps / self.mean_fps

    def describe(self) -> str:
        """One line: the point, its status, size and confidence, or why it was not judged."""
        head = f"{self.slug}: {self.status.upper() if self.status == REGRESSED else self.status}"
        if self.change_pct is None or self.confidence is None:
            return f"{head} ({self.reason})"
        return (
            f"{head} {self.change_pct:+.1f}% ({self.throughput_fps:.1f} against "
            f"{self.mean_fps:.1f} frames/s, the mean of {len(self.history_fps)} runs), "
            f"confidence {100 * self.confidence:.1f}%"
            + ("" if self.status in (REGRESSED, IMPROVED) else f"; {self.reason}")
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["slug"] = self.slug
        data["history_runs"] = list(self.history_runs)
        data["history_fps"] = list(self.history_fps)
        data["cv_pct"] = self.cv_pct
        data["summary"] = self.describe()
        return data


@dataclass(frozen=True)
class Verdict:
    run_id: str
    plan: str
    status: str  # regressed, no regression, not judged (no point could be judged)
    settings: Settings
    points: tuple[PointVerdict, ...]
    versions_changed: tuple[str, ...] = ()  # against the newest earlier run of the series
    previous_run: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    # what differs between the previous run's machines and this run's (fingerprint.py)
    machine_changed: tuple[str, ...] = ()

    def count(self, status: str) -> int:
        return sum(p.status == status for p in self.points)

    @property
    def regressed(self) -> tuple[PointVerdict, ...]:
        return tuple(p for p in self.points if p.status == REGRESSED)

    @property
    def improved(self) -> tuple[PointVerdict, ...]:
        return tuple(p for p in self.points if p.status == IMPROVED)

    @property
    def headline(self) -> str:
        counts = ", ".join(
            f"{self.count(s)} {s}" for s in (REGRESSED, IMPROVED, UNCHANGED, NOT_JUDGED)
        )
        return f"verdict of {self.run_id}: {self.status.upper()} ({counts})"

    def lines(self) -> list[str]:
        out = [self.headline]
        if self.versions_changed:
            out.append(f"versions changed since {self.previous_run}:")
            out.extend(f"  {change}" for change in self.versions_changed)
        if self.machine_changed:
            out.append(
                f"MACHINES DIFFER from {self.previous_run}'s: a change may be the machine's,"
                " not the server's:"
            )
            out.extend(f"  {change}" for change in self.machine_changed)
        out.extend(f"  {p.describe()}" for p in self.points)
        out.extend(self.notes)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan": self.plan,
            "status": self.status,
            "counts": {s: self.count(s) for s in (REGRESSED, IMPROVED, UNCHANGED, NOT_JUDGED)},
            "regressed": [p.slug for p in self.regressed],
            "improved": [p.slug for p in self.improved],
            "settings": asdict(self.settings),
            "previous_run": self.previous_run,
            "versions_changed": list(self.versions_changed),
            "notes": list(self.notes),
            "machine_changed": list(self.machine_changed),
            "points": [p.to_json() for p in self.points],
        }


def judge_point(
    value: PointValue,
    earlier: Sequence[tuple[str, PointValue | None]],
    settings: Settings,
) -> PointVerdict:
    """One point of the new run against its values in earlier runs (oldest first, run id each)."""
    base = {
        "server": value.server,
        "model": value.model,
        "batch": value.batch,
        "concurrency": value.concurrency,
        "throughput_fps": value.throughput_fps,
    }
    if not value.valid or value.throughput_fps is None:
        why = "; ".join(value.reasons) or "no valid repeat"
        return PointVerdict(**base, status=NOT_JUDGED, reason=f"invalid in this run: {why}")
    usable = [(run, p) for run, p in earlier if p is not None and p.valid and p.throughput_fps]
    used = usable[-settings.history_runs :]
    oldest = earlier.index(used[0]) if used else len(earlier)
    skipped = sum(1 for _, p in earlier[oldest:] if p is not None and not p.valid)
    if len(used) < settings.min_history:
        invalid = sum(1 for _, p in earlier if p is not None and not p.valid)
        return PointVerdict(
            **base,
            status=NOT_JUDGED,
            reason=f"history too short: {len(used)} earlier valid runs of this point, "
            f"{settings.min_history} needed"
            + (f" ({invalid} earlier runs invalid there, left out)" if invalid else ""),
            history_runs=tuple(run for run, _ in used),
            history_fps=tuple(p.throughput_fps or 0.0 for _, p in used),
            history_skipped=invalid,
        )
    values = [p.throughput_fps or 0.0 for _, p in used]
    n = len(values)
    mean = statistics.fmean(values)
    stdev = statistics.stdev(values)
    y = value.throughput_fps
    scale = stdev * math.sqrt(1.0 + 1.0 / n)
    if scale > 0:
        t = (y - mean) / scale
        confidence = t_cdf(abs(t), n - 1)
        half_width = t_inverse(settings.confidence, n - 1) * scale
    else:  # a history without spread: any difference is certain, min_change decides
        confidence = 0.5 if y == mean else 1.0
        half_width = 0.0
    change = (y - mean) / mean
    low, high = value.low_fps, value.high_fps
    has_interval = low is not None and high is not None
    inside = low is not None and high is not None and low <= mean <= high
    alone = (
        ""
        if has_interval
        else f"; no interval in this run ({value.interval_note or 'unknown'}):"
        " judged by the history alone"
    )
    if confidence >= settings.confidence and abs(change) >= settings.min_change and inside:
        status = UNCHANGED
        side = "below" if change < 0 else "above"
        reason = (
            f"{side} the history's range, but the history's mean {mean:.1f} lies inside this"
            f" run's 95% interval ({low:.1f}{RANGE_DASH}{high:.1f}, n = {value.interval_samples})"
        )
    elif confidence >= settings.confidence and change <= -settings.min_change:
        status, reason = REGRESSED, "below the history's range and this run's interval" + alone
    elif confidence >= settings.confidence and change >= settings.min_change:
        status, reason = IMPROVED, "above the history's range and this run's interval" + alone
    elif confidence >= settings.confidence:
        status = UNCHANGED
        reason = f"outside the noise, but smaller than the {100 * settings.min_change:.0f}% minimum"
    else:
        status = UNCHANGED
        reason = "within the history's noise"
    return PointVerdict(
        **base,
        status=status,
        reason=reason,
        history_runs=tuple(run for run, _ in used),
        history_fps=tuple(values),
        history_skipped=skipped,
        mean_fps=mean,
        stdev_fps=stdev,
        expected_low_fps=mean - half_width,
        expected_high_fps=mean + half_width,
        change_pct=100.0 * change,
        confidence=confidence,
        run_low_fps=low,
        run_high_fps=high,
        run_samples=value.interval_samples,
    )


def series_before(records: Sequence[HistoryRecord], run: HistoryRecord) -> list[HistoryRecord]:
    """The runs of the same series that started before this one, oldest first."""
    return [
        r
        for r in records
        if r.series == run.series
        and r.run_id != run.run_id
        and r.finished is not None
        and (r.started or "") < (run.started or "")
    ]


def judge(
    run: HistoryRecord, records: Sequence[HistoryRecord], settings: Settings | None = None
) -> Verdict:
    """The verdict of one registered run against the records before it."""
    settings = settings or Settings()
    settings.check()
    earlier = series_before(records, run)
    points = tuple(
        judge_point(value, [(r.run_id, r.point(value.key)) for r in earlier], settings)
        for value in run.points
    )
    if any(p.status == REGRESSED for p in points):
        status = REGRESSED
    elif points and all(p.status == NOT_JUDGED for p in points):
        status = NOT_JUDGED
    else:
        status = "no regression"
    notes = []
    if not earlier:
        notes.append(
            f"no earlier run of plan {run.plan_name} on these hosts with the same measuring "
            "settings: this run starts the history"
        )
    previous = earlier[-1] if earlier else None
    return Verdict(
        run_id=run.run_id,
        plan=run.plan_name,
        status=status,
        settings=settings,
        points=points,
        versions_changed=_version_changes(previous, run) if previous else (),
        previous_run=previous.run_id if previous else None,
        notes=tuple(notes),
    )


def _version_changes(before: HistoryRecord, after: HistoryRecord) -> tuple[str, ...]:
    names = list(dict.fromkeys([*before.versions, *after.versions]))
    return tuple(
        f"{name}: {before.versions.get(name, '(none)')} -> {after.versions.get(name, '(none)')}"
        for name in names
        if before.versions.get(name) != after.versions.get(name)
    )


def write_verdict(run_dir: Path, verdict: Verdict) -> Path:
    """verdict.json in the run directory, written whole (results.json is not touched)."""
    path = run_dir / VERDICT_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(verdict.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def verdict_from_json(data: dict[str, Any]) -> Verdict:
    """A verdict.json read back (the report shows what the run was told)."""
    names = {f.name for f in fields(PointVerdict)}
    points = []
    for p in data["points"]:
        values = {k: v for k, v in p.items() if k in names}
        values["history_runs"] = tuple(values.get("history_runs", ()))
        values["history_fps"] = tuple(values.get("history_fps", ()))
        points.append(PointVerdict(**values))
    return Verdict(
        run_id=str(data["run_id"]),
        plan=str(data["plan"]),
        status=str(data["status"]),
        settings=Settings(**data["settings"]),
        points=tuple(points),
        versions_changed=tuple(data.get("versions_changed", ())),
        previous_run=data.get("previous_run"),
        notes=tuple(data.get("notes", ())),
        machine_changed=tuple(data.get("machine_changed", ())),
    )


def read_verdict(run_dir: Path) -> Verdict | None:
    path = run_dir / VERDICT_FILE
    if not path.exists():
        return None
    try:
        return verdict_from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise HistoryError(f"{path}: not a verdict ({exc})") from None


def register_and_judge(
    run_dir: Path, results_root: Path | None = None, settings: Settings | None = None
) -> Verdict:
    """What a finished run does: join the history, be judged against it, write verdict.json."""
    results_root = results_root or run_dir.resolve().parent
    record = register(run_dir, results_root)
    records = read_history(results_root)
    verdict = judge(record, records, settings)
    previous = next((r for r in records if r.run_id == verdict.previous_run), None)
    if previous is not None:
        verdict = replace(
            verdict, machine_changed=machine_changes(results_root / previous.path, run_dir)
        )
    write_verdict(run_dir, verdict)
    return verdict


def machine_changes(previous_dir: Path, run_dir: Path) -> tuple[str, ...]:
    """What differs between the previous run's machines and this run's, as verdict lines."""
    try:
        before, after = read_results(previous_dir), read_results(run_dir)
    except ReportError as exc:
        return (f"machines not compared: {exc}",)
    return tuple(str(d) for d in run_differences(before, after))
