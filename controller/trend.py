"""Trends over the history: a chart per point, the verdict section of a run's report,
and the `servelab history` command with the tables it prints.

A trend chart shows one point (server kind, model, batch, concurrency) over the
runs of its series: every earlier run's value (a hollow marker where the point
was invalid), the history's mean and the range a run of unchanged speed stays in
at the verdict's confidence, and the judged run coloured by its status.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servelab.controller.charts import CHARTS_DIR, Chart, chart_slug, save_chart
from servelab.controller.formats import DASH, format_fps
from servelab.controller.history import (
    HISTORY_FILE,
    HistoryError,
    HistoryRecord,
    PointKey,
    PointValue,
    read_history,
    register,
)
from servelab.controller.phases import PROJECT_DIR
from servelab.controller.verdict import (
    IMPROVED,
    NOT_JUDGED,
    REGRESSED,
    PointVerdict,
    Verdict,
    judge,
    read_verdict,
    series_before,
)

TREND_DIR = "trend"  # charts/trend/: apart from the run's own charts, which a rebuild prunes
STATUS_COLOURS = {REGRESSED: "#c62828", IMPROVED: "#2e7d32", NOT_JUDGED: "#757575"}
UNCHANGED_COLOUR = "#1565c0"


class TrendChart(Chart):
    """A chart in charts/trend/ (charts.Chart assumes charts/)."""

    @property
    def relative_path(self) -> str:
        return f"{CHARTS_DIR}/{TREND_DIR}/{self.path.name}"


# ---------------------------------------------------------------------------
# Charts


def _trend_figure(
    key: PointKey,
    series: Sequence[tuple[HistoryRecord, PointValue | None]],
    judged: PointVerdict | None,
    confidence: float,
) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2))
    ax = figure.add_subplot()
    xs = list(range(len(series)))
    labels = [(r.started or r.run_id)[:10] for r, _ in series]
    earlier = [(x, p) for x, (_, p) in zip(xs[:-1], series[:-1], strict=True) if p is not None]
    valid = [(x, p.throughput_fps) for x, p in earlier if p.valid and p.throughput_fps]
    invalid = [(x, p.throughput_fps) for x, p in earlier if not p.valid and p.throughput_fps]
    if valid:
        ax.plot(*zip(*valid, strict=True), marker="o", color="#555555", label="earlier runs")
    _run_intervals(ax, [(x, p) for x, (_, p) in zip(xs, series, strict=True) if p is not None])
    if invalid:
        ax.scatter(
            *zip(*invalid, strict=True),
            facecolors="none",
            edgecolors="#b00020",
            label="invalid (not used)",
            zorder=3,
        )
    if judged is not None and judged.mean_fps is not None:
        used = [x for x, (r, _) in zip(xs, series, strict=True) if r.run_id in judged.history_runs]
        first = used[0] if used else xs[-1]
        ax.hlines(judged.mean_fps, first, xs[-1], colors="#555555", linestyles="--", linewidth=1)
        if judged.expected_low_fps is not None and judged.expected_high_fps is not None:
            ax.fill_between(
                [first, xs[-1]],
                judged.expected_low_fps,
                judged.expected_high_fps,
                color="#90caf9",
                alpha=0.35,
                label=f"range of unchanged speed ({100 * confidence:g}%)",
            )
    last = series[-1][1]
    if last is not None and last.throughput_fps is not None:
        status = judged.status if judged else "unchanged"
        ax.scatter(
            [xs[-1]],
            [last.throughput_fps],
            s=80,
            color=STATUS_COLOURS.get(status, UNCHANGED_COLOUR),
            label=f"this run: {status}",
            zorder=4,
            marker="o" if last.valid else "x",
        )
    ax.set_xticks(xs, labels, rotation=30, fontsize=7, ha="right")
    ax.set_ylabel("frames/s")
    _steady_axis(ax, [p.throughput_fps for _, p in series if p is not None and p.throughput_fps])
    ax.grid(True, alpha=0.3)
    server, model, batch, concurrency = key
    title = f"{server} {model} batch {batch} concurrency {concurrency}"
    if judged is not None and judged.change_pct is not None and judged.confidence is not None:
        title += f": {judged.change_pct:+.1f}%, confidence {100 * judged.confidence:.1f}%"
    elif judged is not None:
        title += f": {judged.status}"
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:  # a point with no throughput draws nothing
        ax.legend(fontsize=7, loc="best")
    return figure


# The y axis spans at least this share of the runs' median either side, so that a
# percent of noise never fills the chart (a tight axis once drew a 2% wobble as a cliff).
MIN_AXIS_SPAN = 0.2


def _run_intervals(ax: Any, values: Sequence[tuple[int, PointValue]]) -> None:
    """Each run's own 95% interval as an error bar, where the history recorded one."""
    bounded = [
        (x, p)
        for x, p in values
        if p.low_fps is not None and p.high_fps is not None and p.throughput_fps is not None
    ]
    if not bounded:
        return
    ax.errorbar(
        [x for x, _ in bounded],
        [p.throughput_fps for _, p in bounded],
        yerr=[
            [max(0.0, (p.throughput_fps or 0.0) - (p.low_fps or 0.0)) for _, p in bounded],
            [max(0.0, (p.high_fps or 0.0) - (p.throughput_fps or 0.0)) for _, p in bounded],
        ],
        fmt="none",
        ecolor="#333333",
        elinewidth=1,
        capsize=3,
        label="each run's 95% interval",
        zorder=2,
    )


def _steady_axis(ax: Any, rates: Sequence[float]) -> None:
    """At least +-MIN_AXIS_SPAN of the median, and everything drawn, with some room."""
    if not rates:
        return
    middle = statistics.median(rates)
    low, high = ax.get_ylim()
    span = (high - low) * 0.1
    ax.set_ylim(
        max(0.0, min(low - span, middle * (1 - MIN_AXIS_SPAN))),
        max(high + span, middle * (1 + MIN_AXIS_SPAN)),
    )


def write_trend_charts(
    records: Sequence[HistoryRecord],
    run: HistoryRecord,
    charts_dir: Path,
    verdict: Verdict | None = None,
) -> list[Chart]:
    """One PNG per point of `run`: its value in each earlier run of the series, and this one."""
    # matplotlib is imported where a chart is drawn: `servelab history` without --charts
    # and the verdict alone never pay its second of start-up.
    import matplotlib.style

    verdict = verdict or judge(run, records)
    earlier = series_before(records, run)[-verdict.settings.history_runs * 2 :]
    judged = {p.key: p for p in verdict.points}
    charts_dir.mkdir(parents=True, exist_ok=True)
    charts = []
    with matplotlib.style.context("default"):
        for value in run.points:
            series = [(r, r.point(value.key)) for r in earlier] + [(run, value)]
            figure = _trend_figure(
                value.key, series, judged.get(value.key), verdict.settings.confidence
            )
            path = charts_dir / f"trend_{chart_slug(value.slug)}.png"
            save_chart(figure, path)
            charts.append(TrendChart(path, f"{value.slug}: throughput over the runs"))
    for old in charts_dir.glob("trend_*.png"):  # points this run no longer has
        if old not in {c.path for c in charts}:
            old.unlink()
    return charts


# ---------------------------------------------------------------------------
# The report's section


@dataclass(frozen=True)
class TrendSection:
    verdict: Verdict
    charts: tuple[Chart, ...]

    @property
    def headline(self) -> str:
        return self.verdict.headline


def report_section(run_dir: Path) -> TrendSection | None:
    """The verdict and a trend chart per point, when the run has been judged."""
    verdict = read_verdict(run_dir)
    if verdict is None:
        return None
    try:
        records = read_history(run_dir.resolve().parent)
    except HistoryError:  # a damaged index costs the trend charts, not the report
        records = []
    run = next((r for r in records if r.run_id == verdict.run_id), None)
    trend_dir = run_dir / CHARTS_DIR / TREND_DIR
    if run is None:  # charts of an earlier build would no longer match the report
        for old in trend_dir.glob("trend_*.png") if trend_dir.is_dir() else []:
            old.unlink()
        return TrendSection(verdict, ())
    return TrendSection(verdict, tuple(write_trend_charts(records, run, trend_dir, verdict)))


# ---------------------------------------------------------------------------
# `servelab history` tables


def format_runs(records: Sequence[HistoryRecord]) -> str:
    """One line per registered run, oldest first, with its points' validity."""
    lines = [f"{'run':<34} {'plan':<12} {'commit':<12} {'valid':>7}  series"]
    for r in records:
        valid = sum(p.valid for p in r.points)
        lines.append(
            f"{r.run_id:<34} {r.plan_name:<12} {(r.git_commit or DASH)[:12]:<12} "
            f"{f'{valid}/{len(r.points)}':>7}  {r.method_hash[:6]}/{r.hosts_id[:6]}"
        )
    return "\n".join(lines)


def format_point_trend(records: Sequence[HistoryRecord], slug: str) -> str:
    """The throughput of one point in every run holding it, per series."""
    holding = [(r, p) for r in records for p in r.points if p.slug == slug]
    if not holding:
        known = sorted({p.slug for r in records for p in r.points})
        raise HistoryError(f"no run holds point {slug!r}; points: {', '.join(known)}")
    lines = [f"{slug}: frames/s (median of valid repeats) per run"]
    for series in dict.fromkeys(r.series for r, _ in holding):
        plan, method, hosts = series
        lines.append(f"plan {plan}, settings {method[:6]}, hosts {hosts[:6]}:")
        for r, p in holding:
            if r.series == series:
                state = "valid" if p.valid else "INVALID: " + "; ".join(p.reasons)
                lines.append(f"  {r.run_id:<34} {format_fps(p.throughput_fps):>9}  {state}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The `servelab history` command


def register_cli(groups: Any) -> None:
    """The `servelab history` subcommand."""
    parser = groups.add_parser(
        "history", help="list the registered runs, a point's trend, and draw the trend charts"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=PROJECT_DIR / "results",
        help="the results directory holding history.jsonl (default: results/ in the project)",
    )
    parser.add_argument("--plan", help="only the runs of this plan (its name)")
    parser.add_argument(
        "--point",
        metavar="SLUG",
        help="the trend of one point, e.g. ref-openvino-resnet_v1_50-b1-c2",
    )
    parser.add_argument(
        "--charts",
        type=Path,
        metavar="DIR",
        help="write a trend chart (PNG) per point of the newest run into DIR",
    )
    parser.add_argument(
        "--register",
        type=Path,
        metavar="RUN_DIR",
        help="add a finished run to the history (servelab run does this itself)",
    )
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    if args.register is not None:
        record = register(args.register, args.results)
        print(f"registered {record.run_id} in {args.results / HISTORY_FILE}")
    records = read_history(args.results)
    if args.plan:
        records = [r for r in records if r.plan_name == args.plan]
    if not records:
        print(f"no run registered in {args.results / HISTORY_FILE}")
        return 0
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
    elif args.point:
        print(format_point_trend(records, args.point))
    else:
        print(format_runs(records))
    if args.charts is not None:
        for chart in write_trend_charts(records, records[-1], args.charts):
            print(chart.path)
    return 0
