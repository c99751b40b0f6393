"""The report of a run: results.csv, report.md, report.html and charts/*.png from results.json.

Every number shown comes from the run's results.json (read by controller/results.py);
nothing is measured or assumed here. The published result shape is kept: throughput
per model and batch size, each server kind's throughput relative to the plan's
baseline kind at the same model and batch size, and each configuration relative to
the baseline at batch 1.

How a configuration's throughput is formed (the gains are computed from this alone):
per (kind, model, batch, concurrency) the median of the valid repeats' frames/s;
per (kind, model, batch) the concurrency with the highest such median (the lower
concurrency on a tie). Invalid and failed points never enter a gain.

Every configuration's throughput and every relative figure carries a 95% interval
(controller/intervals.py: a t-interval on the mean of the valid repeats, or batch
means of one repeat's window; Fieller's interval for a ratio). The intervals are
written into results.json's `intervals` and results.csv as well.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servelab.controller.charts import CHARTS_DIR, Chart, chart_slug, save_chart, write_bytes
from servelab.controller.formats import (
    DASH,
    format_bytes,
    format_cores,
    format_count,
    format_fps,
    format_fraction,
    format_mebibytes,
    format_megabytes,
    format_ms,
    format_percent,
    format_percentile,
)
from servelab.controller.intervals import (
    Estimate,
    Interval,
    configuration_estimate,
    interval,
    ratio_interval,
    unbounded,
)
from servelab.controller.kinds import KINDS
from servelab.controller.metrics import NEAR_CAPACITY
from servelab.controller.phases import PROJECT_DIR
from servelab.controller.plan import DEFAULT_VALIDITY
from servelab.controller.results import (
    LATENCY_FIELDS,
    ConfigurationInterval,
    GainInterval,
    PointResult,
    ReportError,
    RunIntervals,
    RunResults,
    read_results,
    write_results,
)
from servelab.controller.trend import TrendSection, report_section
from servelab.controller.validity import merged_timeline

TEMPLATES_DIR = PROJECT_DIR / "templates"

# Distinctive colours per server kind (the HTML test finds them in a screenshot); a kind
# the registry does not know (an old results.json) takes one of the others.
KIND_COLOURS = {kind.name: kind.colour for kind in KINDS.values()}
OTHER_KIND_COLOURS = ("#2e7d32", "#00838f", "#8d6e63", "#ad1457", "#827717", "#37474f")
KIND_DESCRIPTIONS = {kind.name: kind.description for kind in KINDS.values()}


# ---------------------------------------------------------------------------
# Aggregation and gains


@dataclass(frozen=True)
class ConfigThroughput:
    """One (kind, model, batch, concurrency): the median of its valid repeats."""

    kind: str
    model: str
    batch: int
    concurrency: int
    throughput_fps: float  # median of the valid repeats' frames/s
    repeats: int  # valid repeats the median is taken over
    repeats_total: int  # every point of this configuration, valid, invalid or failed
    p50_ms: float | None  # medians of the same valid repeats' client latency percentiles
    p90_ms: float | None
    p99_ms: float | None
    estimate: Estimate | None = None  # mean and standard error behind the interval
    interval: Interval | None = None  # 95% (controller/intervals.py)


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate_configs(
    points: Iterable[PointResult],
) -> dict[tuple[str, str, int, int], ConfigThroughput]:
    """Per (kind, model, batch, concurrency) with a valid repeat: the median over valid repeats."""
    groups: dict[tuple[str, str, int, int], list[PointResult]] = {}
    for point in points:
        key = (point.server, point.model, point.batch, point.concurrency)
        groups.setdefault(key, []).append(point)
    configs = {}
    for key, group in groups.items():
        counted = [p for p in group if p.counted]
        if not counted:
            continue
        rates = [p.throughput_fps or 0.0 for p in counted]
        timeline = merged_timeline(counted[0].clients) if len(counted) == 1 else None
        estimate, why = configuration_estimate(rates, timeline)
        configs[key] = ConfigThroughput(
            kind=key[0],
            model=key[1],
            batch=key[2],
            concurrency=key[3],
            throughput_fps=statistics.median(p.throughput_fps or 0.0 for p in counted),
            repeats=len(counted),
            repeats_total=len(group),
            p50_ms=_median(p.latency.p50 for p in counted),
            p90_ms=_median(p.latency.p90 for p in counted),
            p99_ms=_median(p.latency.p99 for p in counted),
            estimate=estimate,
            interval=interval(estimate) if estimate else unbounded(None, why, len(counted)),
        )
    return configs


def best_configs(points: Iterable[PointResult]) -> dict[tuple[str, str, int], ConfigThroughput]:
    """Per (kind, model, batch): the concurrency with the highest median (lower on a tie)."""
    best: dict[tuple[str, str, int], ConfigThroughput] = {}
    for config in sorted(aggregate_configs(points).values(), key=lambda c: c.concurrency):
        key = (config.kind, config.model, config.batch)
        if key not in best or config.throughput_fps > best[key].throughput_fps:
            best[key] = config
    return best


@dataclass(frozen=True)
class Relative:
    """A configuration's throughput as a percentage of a reference configuration's."""

    kind: str
    model: str
    batch: int
    config: ConfigThroughput | None
    reference: ConfigThroughput | None
    note: str | None  # why there is no percentage

    @property
    def percent(self) -> float | None:
        if self.config is None or self.reference is None or not self.reference.throughput_fps:
            return None
        return 100.0 * self.config.throughput_fps / self.reference.throughput_fps

    @property
    def interval(self) -> Interval | None:
        """The 95% interval of the percentage (Fieller's); None for the reference itself."""
        if self.config is None or self.reference is None or self.config == self.reference:
            return None
        mine, theirs = self.config.estimate, self.reference.estimate
        if mine is None or theirs is None:
            side = self.config if mine is None else self.reference
            why = side.interval.note if side.interval else None
            return unbounded(self.percent, f"{side.kind} batch {side.batch}: {why}")
        ratio = ratio_interval(mine, theirs)
        scale = 100.0
        return Interval(
            self.percent,
            None if ratio.low is None else ratio.low * scale,
            None if ratio.high is None else ratio.high * scale,
            ratio.samples,
            ratio.method,
            ratio.note,
        )


def _missing(results: RunResults, kind: str, model: str, batch: int) -> str:
    """Why (kind, model, batch) has no valid throughput, with what the run does hold."""
    points = [p for p in results.points if (p.server, p.model, p.batch) == (kind, model, batch)]
    failed = sum(p.status == "failed" for p in points)
    invalid = len(points) - failed
    held = [f"{n} {word}" for n, word in ((invalid, "invalid"), (failed, "failed")) if n]
    return f"{kind} {model} batch {batch}: no valid point" + (
        f" ({', '.join(held)})" if held else " (not measured)"
    )


def _relative(
    results: RunResults,
    best: Mapping[tuple[str, str, int], ConfigThroughput],
    kind: str,
    model: str,
    batch: int,
    reference_batch: int,
) -> Relative:
    baseline = results.baseline or ""
    config = best.get((kind, model, batch))
    reference = best.get((baseline, model, reference_batch))
    note = None
    if config is None:
        note = _missing(results, kind, model, batch)
    elif reference is None:
        note = "baseline " + _missing(results, baseline, model, reference_batch)
    elif not reference.throughput_fps:
        note = f"baseline {baseline} {model} batch {reference_batch}: 0 frames/s"
    return Relative(kind, model, batch, config, reference, note)


def relative_to_baseline(
    results: RunResults, best: Mapping[tuple[str, str, int], ConfigThroughput]
) -> list[Relative]:
    """Per model, batch and kind: throughput / the baseline's at the same model and batch."""
    return [
        _relative(results, best, kind, model, batch, batch)
        for model in results.models
        for batch in results.batches
        for kind in results.kinds
    ]


def relative_to_baseline_batch1(
    results: RunResults, best: Mapping[tuple[str, str, int], ConfigThroughput]
) -> list[Relative]:
    """Per model, kind and batch: throughput / the baseline's at the same model, batch 1."""
    return [
        _relative(results, best, kind, model, batch, 1)
        for model in results.models
        for kind in results.kinds
        for batch in results.batches
    ]


LEAD_CHART_PREFIX = "throughput_batch_"
INTERVAL_METHOD = (
    "Each interval is 95%. A configuration's comes from its valid repeats (Student's t on their"
    " mean), or, with one repeat, from batch means of its window's per-second completions"
    " (batches widened until nearly independent); a relative figure's is Fieller's interval for"
    " the ratio of the two means. n is the number of repeats (or batch means) behind it: the"
    " fewer of the two sides' for a ratio."
)
RANGE_DASH = "\u2013"  # an en dash between an interval's bounds


def max_ci_halfwidth(results: RunResults) -> float:
    """The plan's validity.max_ci_halfwidth, or its default."""
    value = (results.plan.get("validity") or {}).get("max_ci_halfwidth")
    return float(value) if isinstance(value, int | float) else DEFAULT_VALIDITY.max_ci_halfwidth


def format_interval(value: Interval | None, unit: str = "") -> str:
    """The bounds after a figure, "(128.0 to 146.1%, n = 3)" with an en dash; why not."""
    if value is None:
        return ""
    if value.low is None or value.high is None:
        return f"(no interval: {value.note})" if value.note else "(no interval)"
    return f"({value.low:.1f}{RANGE_DASH}{value.high:.1f}{unit}, n = {value.samples})"


def format_gain(relative: Relative) -> str:
    """A relative figure with its bounds, as the report prints it: 136.9% (128.0 to 146.1%)."""
    percent = format_percent(relative.percent)
    bounds = relative.interval
    if relative.percent is None or bounds is None:
        return percent
    if bounds.low is None or bounds.high is None:
        return f"{percent} (no interval)"
    return f"{percent} {format_interval(bounds, '%')}"


def wide_configurations(
    configs: Mapping[tuple[str, str, int, int], ConfigThroughput], limit: float
) -> list[str]:
    """The configurations whose interval is wider than `limit` either side, or has none."""
    wide = []
    for config in configs.values():
        bounds = config.interval
        name = f"{config.kind} {config.model} batch {config.batch} concurrency {config.concurrency}"
        half = bounds.relative_halfwidth if bounds else None
        if half is None:
            note = bounds.note if bounds and bounds.note else "no interval"
            wide.append(f"{name}: no interval ({note})")
        elif half > limit:
            wide.append(
                f"{name}: ±{100 * half:.1f}% (n = {bounds.samples}), over ±{100 * limit:.1f}%"
            )
    return wide


def run_intervals(results: RunResults) -> RunIntervals:
    """results.json's `intervals`: every configuration's and every relative figure's."""
    configs = aggregate_configs(results.points)
    best = best_configs(results.points)
    records = RunIntervals()
    for c in sorted(configs.values(), key=lambda c: (c.kind, c.model, c.batch, c.concurrency)):
        bounds = c.interval or unbounded(None, "no interval")
        records.configurations.append(
            ConfigurationInterval(
                c.kind,
                c.model,
                c.batch,
                c.concurrency,
                c.estimate.mean if c.estimate else c.throughput_fps,
                bounds.low,
                bounds.high,
                bounds.samples,
                bounds.method,
                bounds.note,
            )
        )
    relatives = relative_to_baseline(results, best)
    if 1 in results.batches:
        relatives += [r for r in relative_to_baseline_batch1(results, best) if r.batch != 1]
    for r in relatives:
        bounds = r.interval
        if r.reference is None or r.percent is None or bounds is None:
            continue
        records.gains.append(
            GainInterval(
                r.kind,
                r.model,
                r.batch,
                r.config.concurrency if r.config else 0,
                r.reference.kind,
                r.reference.batch,
                r.percent,
                bounds.low,
                bounds.high,
                bounds.samples,
                bounds.method,
                bounds.note,
            )
        )
    records.wide = wide_configurations(configs, max_ci_halfwidth(results))
    return records


@dataclass(frozen=True)
class PointCounts:
    total: int
    valid: int
    invalid: int
    failed: int


def count_points(points: Sequence[PointResult]) -> PointCounts:
    failed = sum(p.status == "failed" for p in points)
    valid = sum(p.status == "measured" and p.valid for p in points)
    return PointCounts(len(points), valid, len(points) - valid - failed, failed)


# ---------------------------------------------------------------------------
# Markdown cells (numbers are formatted by controller/formats.py)


def _markdown_cell(value: Any) -> str:
    """Text for a Markdown table cell or list item: one line, no table break, no raw HTML."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.replace("|", "\\|").replace("<", "\\<")


# ---------------------------------------------------------------------------
# CSV

CSV_COLUMNS = (
    "server",
    "model",
    "batch",
    "concurrency",
    "repeat",
    "status",
    "valid",
    "reasons",
    "throughput_fps",
    "requests_per_s",
    *(f"latency_{name}_ms" for name in LATENCY_FIELDS),
    "requests",
    "errors_total",
    "errors",
    "verify_failures",
    "proxy_requests",
    "proxy_requests_per_s",
    "proxy_avg_response_ms",
    "server_requests",
    "server_requests_per_s",
    "server_errors",
    "server_request_mean_ms",
    "server_inference_mean_ms",
    "cpu_server_fraction",
    "cpu_client_fraction",
    "cpu_client_pool_fraction",
    "in_process_fps",
    "served_fraction_of_in_process",
    "stability_spread",
    "window_start_epoch",
    "window_end_epoch",
    "window_duration_s",
    # the point's configuration (kind, model, batch, concurrency): its 95% interval
    "config_mean_fps",
    "config_low_fps",
    "config_high_fps",
    "config_interval_samples",
    # and its figure relative to the baseline at the same batch, when it is the
    # concurrency that enters the gain
    "gain_percent",
    "gain_low_percent",
    "gain_high_percent",
)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_row(point: PointResult, intervals: RunIntervals | None = None) -> dict[str, str]:
    """One point flattened to the CSV's columns (full precision, empty for null)."""
    proxy, metrics, cpu, window = point.proxy, point.server_metrics, point.cpu, point.window
    key = (point.server, point.model, point.batch, point.concurrency)
    config = next(
        (
            c
            for c in (intervals.configurations if intervals else [])
            if (c.server, c.model, c.batch, c.concurrency) == key
        ),
        None,
    )
    gain = next(
        (
            g
            for g in (intervals.gains if intervals else [])
            if (g.server, g.model, g.batch, g.concurrency) == key and g.reference_batch == g.batch
        ),
        None,
    )
    values: dict[str, Any] = {
        "server": point.server,
        "model": point.model,
        "batch": point.batch,
        "concurrency": point.concurrency,
        "repeat": point.repeat,
        "status": point.status,
        "valid": point.valid,
        "reasons": "; ".join(point.reasons),
        "throughput_fps": point.throughput_fps,
        "requests_per_s": point.requests_per_s,
        **{f"latency_{n}_ms": getattr(point.latency, n) for n in LATENCY_FIELDS},
        "requests": point.requests,
        "errors_total": point.errors_total,
        "errors": " ".join(f"{code}={n}" for code, n in (point.errors or {}).items()),
        "verify_failures": point.verify_failures,
        "proxy_requests": proxy.requests if proxy else None,
        "proxy_requests_per_s": proxy.requests_per_s if proxy else None,
        "proxy_avg_response_ms": proxy.avg_response_ms if proxy else None,
        "server_requests": metrics.requests if metrics else None,
        "server_requests_per_s": metrics.requests_per_s if metrics else None,
        "server_errors": metrics.errors if metrics else None,
        "server_request_mean_ms": metrics.request_ms_mean if metrics else None,
        "server_inference_mean_ms": metrics.inference_ms_mean if metrics else None,
        "cpu_server_fraction": cpu.server if cpu else None,
        "cpu_client_fraction": cpu.client if cpu else None,
        "cpu_client_pool_fraction": cpu.client_pool if cpu else None,
        "in_process_fps": point.in_process_fps,
        "served_fraction_of_in_process": point.served_fraction,
        "stability_spread": point.stability_spread,
        "window_start_epoch": window.start_epoch if window else None,
        "window_end_epoch": window.end_epoch if window else None,
        "window_duration_s": window.duration_s if window else None,
        "config_mean_fps": config.throughput_fps if config else None,
        "config_low_fps": config.low_fps if config else None,
        "config_high_fps": config.high_fps if config else None,
        "config_interval_samples": config.samples if config else None,
        "gain_percent": gain.percent if gain else None,
        "gain_low_percent": gain.low_percent if gain else None,
        "gain_high_percent": gain.high_percent if gain else None,
    }
    return {column: _csv_value(values[column]) for column in CSV_COLUMNS}


def _csv_text(points: Sequence[PointResult], intervals: RunIntervals | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for point in points:
        writer.writerow(csv_row(point, intervals))
    return out.getvalue()


# ---------------------------------------------------------------------------
# Charts


def kind_colours(kinds: Sequence[str]) -> dict[str, str]:
    """A fixed colour per kind: the known kinds' own, others from a palette in order."""
    others = iter(OTHER_KIND_COLOURS * (len(kinds) // len(OTHER_KIND_COLOURS) + 1))
    return {kind: KIND_COLOURS.get(kind) or next(others) for kind in kinds}


Best = Mapping[tuple[str, str, int], ConfigThroughput]
BASIS = "median of valid repeats, each kind at its best concurrency"


def _offsets(n: int) -> tuple[float, list[float]]:
    """Bar width and each of n grouped bars' offset from its group's centre."""
    width = 0.8 / n
    return width, [(i - (n - 1) / 2) * width for i in range(n)]


def _error_bars(configs: Sequence[ConfigThroughput | None]) -> list[list[float]]:
    """Below and above each bar: its 95% interval (none drawn where there is none)."""
    below, above = [], []
    for config in configs:
        bounds = config.interval if config else None
        if config is None or bounds is None or bounds.low is None or bounds.high is None:
            below.append(0.0)
            above.append(0.0)
            continue
        below.append(max(0.0, config.throughput_fps - bounds.low))
        above.append(max(0.0, bounds.high - config.throughput_fps))
    return [below, above]


def _throughput_at_batch(
    best: Best, kinds: Sequence[str], models: Sequence[str], batch: int, colours: dict[str, str]
) -> Any:
    """(a) Grouped bars: throughput per model at one batch size, one bar per kind."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.5))
    ax = figure.add_subplot()
    width, offsets = _offsets(len(kinds))
    for kind, offset in zip(kinds, offsets, strict=True):
        configs = [best.get((kind, model, batch)) for model in models]
        bars = ax.bar(
            [j + offset for j in range(len(models))],
            [c.throughput_fps if c else 0.0 for c in configs],
            width * 0.95,
            label=kind,
            color=colours[kind],
            yerr=_error_bars(configs),
            capsize=4,
            error_kw={"elinewidth": 1.2, "ecolor": "#222222"},
        )
        labels = [format_fps(c.throughput_fps if c else None) for c in configs]
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.set_xticks(range(len(models)), models)
    ax.set_xlabel("model")
    ax.set_ylabel("throughput (frames/s)")
    ax.set_title(f"Throughput at batch {batch} ({BASIS}; bars: 95% interval)", fontsize=10)
    ax.margins(y=0.12)
    ax.legend(title="server kind", fontsize=8)
    return figure


def _throughput_against_batch(
    best: Best, kinds: Sequence[str], model: str, batches: Sequence[int], colours: dict[str, str]
) -> Any:
    """(b) Lines: one model's throughput against batch size, one line per kind."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    figure = Figure(figsize=(9, 4.5))
    ax = figure.add_subplot()
    for kind in kinds:
        measured = [b for b in batches if (kind, model, b) in best]
        ax.plot(
            measured,
            [best[(kind, model, b)].throughput_fps for b in measured],
            marker="o",
            linewidth=2.5,
            markersize=7,
            label=kind,
            color=colours[kind],
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(batches)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size (frames per request)")
    ax.set_ylabel("throughput (frames/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"{model}: throughput against batch size ({BASIS})", fontsize=10)
    ax.legend(title="server kind", fontsize=8)
    return figure


LATENCY_SHADES = (("p99", 0.3), ("p90", 0.55), ("p50", 1.0))  # drawn in this order


def _latency(
    best: Best, kinds: Sequence[str], model: str, batches: Sequence[int], colours: dict[str, str]
) -> Any:
    """(c) One model's client latency p50/p90/p99 per batch size: shades of each kind's colour."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    figure = Figure(figsize=(9, 4.5))
    ax = figure.add_subplot()
    width, offsets = _offsets(len(kinds))
    for kind, offset in zip(kinds, offsets, strict=True):
        for j, batch in enumerate(batches):
            config = best.get((kind, model, batch))
            for name, alpha in LATENCY_SHADES if config else ():
                value = getattr(config, f"{name}_ms")
                if value is not None:
                    ax.bar(j + offset, value, width * 0.95, color=colours[kind], alpha=alpha)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("client latency (ms)")
    ax.set_title(f"{model}: latency p50 (solid) / p90 / p99 (lightest), {BASIS}", fontsize=10)
    handles = [Patch(color=colours[k], label=k) for k in kinds]
    handles += [Patch(color="#555555", alpha=a, label=n) for n, a in LATENCY_SHADES]
    ax.legend(handles=handles, fontsize=8)
    return figure


def write_charts(results: RunResults, best: Best, charts_dir: Path) -> list[Chart]:
    """Throughput per batch size, throughput against batch size, latency; PNGs in charts_dir."""
    if not best:
        return []
    # matplotlib is imported where a chart is drawn (here and in the figures above):
    # it costs about a second, which compare, history and a resumed run never need.
    import matplotlib.style

    charts_dir.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in results.kinds if any(key[0] == k for key in best)]
    colours = kind_colours(results.kinds)
    charts: list[Chart] = []

    def measured(model: str, batch: int) -> bool:
        return any((kind, model, batch) in best for kind in kinds)

    def save(figure: Any, name: str, title: str) -> None:
        path = charts_dir / name
        save_chart(figure, path)
        charts.append(Chart(path, title))

    with matplotlib.style.context("default"):  # not the user's matplotlibrc
        for batch in results.batches:
            models = [m for m in results.models if measured(m, batch)]
            if models:
                figure = _throughput_at_batch(best, kinds, models, batch, colours)
                save(figure, f"throughput_batch_{batch}.png", f"Throughput at batch {batch}")
        for model in results.models:
            batches = [b for b in results.batches if measured(model, b)]
            if batches:
                figure = _throughput_against_batch(best, kinds, model, batches, colours)
                title = f"{model}: throughput against batch size"
                save(figure, f"throughput_vs_batch_{chart_slug(model)}.png", title)
        for model in results.models:
            batches = [b for b in results.batches if measured(model, b)]
            if batches:
                figure = _latency(best, kinds, model, batches, colours)
                save(figure, f"latency_{chart_slug(model)}.png", f"{model}: latency percentiles")
    return charts


# ---------------------------------------------------------------------------
# The report


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        fps=format_fps,
        ms=format_ms,
        percent=format_percent,
        percentile=format_percentile,
        fraction=format_fraction,
        count=format_count,
        gib=format_bytes,
        megabytes=format_megabytes,
        cores=format_cores,
        mebibytes=format_mebibytes,
        md=_markdown_cell,
        gain=format_gain,
        ci=format_interval,
    )
    return env


def _matrix(
    rows: Sequence[Relative], key: Any, columns: Sequence[int]
) -> list[tuple[Any, list[Relative]]]:
    """Relatives grouped into table rows by key, one cell per batch size in columns."""
    grouped: dict[Any, dict[int, Relative]] = {}
    for relative in rows:
        grouped.setdefault(key(relative), {})[relative.batch] = relative
    return [(k, [cells[b] for b in columns]) for k, cells in grouped.items()]


def _context(
    results: RunResults, charts: Sequence[Chart], trends: TrendSection | None = None
) -> dict[str, Any]:
    best = best_configs(results.points)
    gains = relative_to_baseline(results, best)
    batch1 = relative_to_baseline_batch1(results, best)
    baseline = results.baseline
    others = [k for k in results.kinds if k != baseline]
    has_baseline = baseline is not None and baseline in results.kinds
    points = sorted(results.points, key=results.sort_key)
    return {
        "run": results,
        "dash": DASH,
        "counts": count_points(results.points),
        "baseline": baseline,
        "has_baseline": has_baseline,
        "has_batch1": 1 in results.batches,
        "kinds": results.kinds,
        "kind_colours": kind_colours(results.kinds),
        "kind_descriptions": [(k, KIND_DESCRIPTIONS.get(k, "")) for k in results.kinds],
        "batches": results.batches,
        "several_concurrencies": len({p.concurrency for p in results.points}) > 1,
        "gain_matrices": [
            (
                kind,
                _matrix([g for g in gains if g.kind == kind], lambda g: g.model, results.batches),
            )
            for kind in others
        ],
        "gains": gains,
        "gain_notes": sorted({g.note for g in gains if g.note}, key=_note_order(gains)),
        "batch1": _matrix(batch1, lambda g: (g.model, g.kind), results.batches),
        "batch1_notes": sorted({g.note for g in batch1 if g.note}, key=_note_order(batch1)),
        "points": points,
        "problems": [p for p in points if p.status == "failed" or not p.valid],
        "charts": charts,
        # the per-model bars with error bars lead the report; the other charts come later
        "lead_charts": [c for c in charts if c.path.name.startswith(LEAD_CHART_PREFIX)],
        "other_charts": [c for c in charts if not c.path.name.startswith(LEAD_CHART_PREFIX)],
        "interval_method": INTERVAL_METHOD,
        "wide": wide_configurations(aggregate_configs(results.points), max_ci_halfwidth(results)),
        "max_ci_halfwidth": max_ci_halfwidth(results),
        "trends": trends,  # controller/trend.py: the verdict and trend charts, or None
        "plan_yaml": yaml.safe_dump(results.plan, sort_keys=False, allow_unicode=True).rstrip(),
        "near_capacity": NEAR_CAPACITY,
        "max_clock_skew_ms": (results.plan.get("validity") or {}).get(
            "max_clock_skew_ms", DEFAULT_VALIDITY.max_clock_skew_ms
        ),
        "max_lab_cpu": (results.plan.get("validity") or {}).get(
            "max_lab_cpu", DEFAULT_VALIDITY.max_lab_cpu
        ),
    }


def _note_order(rows: Sequence[Relative]) -> Any:
    order = {note: i for i, note in reversed(list(enumerate(r.note for r in rows)))}
    return lambda note: order[note]


def render(
    results: RunResults, charts: Sequence[Chart], trends: TrendSection | None = None
) -> tuple[str, str]:
    """The Markdown and the self-contained HTML report."""
    env = _environment()
    context = _context(results, charts, trends)
    markdown = env.get_template("report.md.j2").render(**context)
    html = env.get_template("report.html.j2").render(**context)
    return markdown, html


def build_report(run_dir: Path) -> list[Path]:
    """Write results.csv, report.md, report.html and charts/*.png into run_dir; their paths."""
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory")
    results = read_results(run_dir)
    charts_dir = run_dir / CHARTS_DIR
    charts = write_charts(results, best_configs(results.points), charts_dir)
    # Charts of an earlier build that this one did not draw would be stale.
    drawn = {chart.path.name for chart in charts}
    for old in sorted(charts_dir.glob("*.png")) if charts_dir.is_dir() else []:
        if old.name not in drawn:
            old.unlink()
    points = sorted(results.points, key=results.sort_key)
    intervals = run_intervals(results)
    if intervals != results.intervals:  # results.json carries what the report shows
        write_results(run_dir, results.run, results.points, results.failures, intervals)
    csv_path = run_dir / "results.csv"
    write_bytes(csv_path, _csv_text(points, intervals).encode())
    trends = report_section(run_dir)  # None until the run has a verdict.json
    markdown, html = render(results, charts, trends)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    write_bytes(md_path, markdown.encode())
    write_bytes(html_path, html.encode())
    trend_charts = [chart.path for chart in trends.charts] if trends else []
    return [csv_path, md_path, html_path, *(chart.path for chart in charts), *trend_charts]


def register(groups: Any) -> None:
    """The `servelab report` subcommand."""
    parser = groups.add_parser(
        "report", help="(re)build a run's report: results.csv, report.md, report.html, charts"
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        type=Path,
        nargs="?",
        default=PROJECT_DIR / "results" / "latest",
        help="the run's directory, holding results.json (default: results/latest)",
    )
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    for path in build_report(args.run_dir):
        print(path)
    return 0
