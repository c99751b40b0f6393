"""Whether a measured point counts, with a reason for each rule it breaks.

The rules (bounds from the plan's `validity`):
- no transport error and no verification failure in the window;
- the client side used at most `max_client_cpu` of the client platform's cores
  (when both platforms share a kernel, the pools' own share, since the node
  exporters count the server's CPU too);
- HAProxy's request rate and the clients' agree within `proxy_tolerance`, plus
  what counting whole requests allows (one per client over the stretch HAProxy's
  rate covers). HAProxy's rate is taken between its first and last scrape inside
  the window: exact counts, untouched by warm-up and cool-down, which may run at
  another rate than the window (a pool that stops verifying runs faster);
- the rate over the window's sub-intervals is steady: their spread, (max - min)
  / mean, is within `max_spread` plus what counting whole requests allows;
- the window lasted as long as the plan asks, and holds `min_requests` completed
  requests (the window is lengthened for that, up to `window.max_duration_s`:
  controller/window_length.py);
- the counting allowances fit their tolerances: when one request per client is
  more than `proxy_tolerance` of the requests HAProxy's rate covers, or 2 x clients
  per sub-interval more than `max_spread`, no difference could be seen, and the
  point is "too few requests to judge" instead of passing on a wide allowance;
- no host's CPU frequency moved by more than `max_frequency_change` inside the
  window, and no host throttled its CPUs (where the node exporter shows them);
- Prometheus' successful scrapes of each job (HAProxy, the node exporters, the
  server's own metrics) cover at least `min_scrape_coverage` of the window: across
  a longer gap its counts are guesses (a starved machine once left HAProxy's count
  32% short with scrapes over 2.0 s of a 4-s window);
- the lab's CPU set (servelab_lab_cpus) on every client host was at most
  `max_lab_cpu` busy: a saturated lab set means HAProxy, the pools or the
  exporters set the pace, not the server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from servelab.controller.plan import Validity, Window
from servelab.controller.prometheus import ScrapeCoverage

TOO_FEW = "too few requests to judge"


@dataclass
class Stability:
    interval_s: float
    requests_per_s: list[float]  # the rate in each sub-interval of the window
    spread: float  # (max - min) / mean
    allowed: float  # max_spread plus the counting allowance


def stability(
    timeline: list[int], duration_s: float, concurrency: int, intervals: int, max_spread: float
) -> Stability | None:
    """The window cut into equal sub-intervals of whole seconds; None when it is too short.

    `timeline` holds completions per second since the window's start. Counting whole
    requests shifts up to one request per client across each sub-interval's edges, so
    a sub-interval of n requests may read 2 x concurrency / n apart without any change
    in rate; that much is allowed on top of max_spread.
    """
    seconds = min(len(timeline), int(duration_s + 1e-9))
    intervals = min(intervals, seconds)
    if intervals < 2:
        return None
    size = seconds // intervals
    counts = [sum(timeline[i * size : (i + 1) * size]) for i in range(intervals)]
    mean = sum(counts) / len(counts)
    if mean <= 0:
        return None
    return Stability(
        interval_s=float(size),
        requests_per_s=[c / size for c in counts],
        spread=(max(counts) - min(counts)) / mean,
        allowed=max_spread + 2 * concurrency / mean,
    )


def judge(
    *,
    bounds: Validity,
    window: Window,
    measured_window_s: float | None,
    requests: int,
    errors: dict[str, int],
    verify_failures: int,
    concurrency: int,
    proxy_rate: tuple[float, float] | None,
    client_cpu: float | None,
    client_cpu_source: str,
    stable: Stability | None,
    coverage: Sequence[ScrapeCoverage] = (),
    frequency: Sequence[Any] = (),
    lab_set: float | None = None,
) -> list[str]:
    """The reasons this point is invalid; an empty list is a valid point."""
    reasons: list[str] = []
    if requests == 0:
        reasons.append("no request completed in the window")
    if sum(errors.values()):
        listed = ", ".join(f"{n} {code}" for code, n in sorted(errors.items()))
        reasons.append(f"transport errors: {listed}")
    if verify_failures:
        reasons.append(f"{verify_failures} responses failed verification")
    if measured_window_s is not None and measured_window_s < window.duration_s * 0.99:
        reasons.append(
            f"window {measured_window_s:.2f} s is shorter than the plan's {window.duration_s} s"
        )
    if 0 < requests < bounds.min_requests:
        reasons.append(
            f"{requests} requests in the window, fewer than validity.min_requests"
            f" {bounds.min_requests} (window.max_duration_s {window.max_duration_s:g} s)"
        )
    if client_cpu is None:
        reasons.append("client platform CPU unknown: no node exporter samples for the window")
    elif client_cpu > bounds.max_client_cpu:
        reasons.append(
            f"client side used {client_cpu:.0%} of the client platform's CPU ({client_cpu_source}),"
            f" above the bound {bounds.max_client_cpu:.0%}: the clients, not the server, were"
            " measured"
        )
    finished = requests + sum(errors.values())
    if proxy_rate is None:
        reasons.append("HAProxy's request rate unknown: fewer than two scrapes in the window")
    elif finished and measured_window_s:
        rate, span_s = proxy_rate
        clients_rate = finished / measured_window_s
        counting = concurrency / (clients_rate * span_s)
        allowed = bounds.proxy_tolerance + counting
        if 0 < bounds.proxy_tolerance < counting:
            reasons.append(
                f"{TOO_FEW}: HAProxy's rate covers about {clients_rate * span_s:.0f} requests,"
                f" so counting whole requests of {concurrency} clients allows {counting:.0%},"
                f" more than proxy_tolerance {bounds.proxy_tolerance:.0%}"
            )
        elif abs(rate - clients_rate) > allowed * clients_rate:
            reasons.append(
                f"HAProxy forwarded {rate:.1f} requests/s, the clients finished"
                f" {clients_rate:.1f}/s: apart by more than {allowed:.1%}"
            )
    counting_spread = stable.allowed - bounds.max_spread if stable is not None else 0.0
    if stable is not None and 0 < bounds.max_spread < counting_spread:
        per_interval = sum(stable.requests_per_s) / len(stable.requests_per_s) * stable.interval_s
        reasons.append(
            f"{TOO_FEW}: {per_interval:.0f} requests per {stable.interval_s:.0f}-s interval,"
            " so counting whole requests"
            f" allows a spread of {counting_spread:.0%}, more than max_spread"
            f" {bounds.max_spread:.0%}"
        )
    elif stable is not None and stable.spread > stable.allowed:
        rates = ", ".join(f"{r:.1f}" for r in stable.requests_per_s)
        reasons.append(
            f"unstable throughput: {rates} requests/s over {stable.interval_s:.0f}-s intervals"
            f" (spread {stable.spread:.0%}, allowed {stable.allowed:.0%})"
        )
    reasons += coverage_reasons(coverage, bounds.min_scrape_coverage)
    reasons += frequency_reasons(frequency, bounds.max_frequency_change)
    if lab_set is not None and lab_set > bounds.max_lab_cpu:
        reasons.append(
            f"the lab's CPU set was {lab_set:.0%} busy, above the bound"
            f" {bounds.max_lab_cpu:.0%}: the lab's own processes, not the server, were the limit"
        )
    return reasons


def frequency_reasons(frequency: Sequence[Any], max_change: float) -> list[str]:
    """A reason per host whose CPU frequency moved, or whose CPUs throttled, in the window.

    `frequency` holds results.json's HostFrequency records; a host that exposes no
    frequency (many VMs) is not judged.
    """
    reasons = []
    for host in frequency:
        if host.change is not None and host.change > max_change:
            reasons.append(
                f"CPU frequency of {host.host} moved from {host.high_hz / 1e9:.2f} to"
                f" {host.low_hz / 1e9:.2f} GHz in the window ({host.change:.1%}), more than"
                f" max_frequency_change {max_change:.0%}: the machine changed under the"
                " measurement (set the governor to performance)"
            )
        if host.throttles:
            reasons.append(f"{host.host} throttled its CPUs {host.throttles} times in the window")
    return reasons


def coverage_reasons(coverage: Sequence[ScrapeCoverage], minimum: float) -> list[str]:
    """One reason per job whose least-covered target is under `minimum` of the window."""
    reasons = []
    for job in dict.fromkeys(c.job for c in coverage):  # the jobs in the order given
        targets = [c for c in coverage if c.job == job]
        worst = min(targets, key=lambda c: c.fraction)
        if worst.fraction >= minimum:
            continue
        which = f" of the {worst.target}" if len(targets) > 1 else ""
        reasons.append(
            f"Prometheus' {job} samples{which} cover {worst.covered_s:.1f} s of the"
            f" {worst.window_s:.1f}-s window ({math.floor(worst.fraction * 100)}%),"
            f" under {minimum:.0%}"
        )
    return reasons


def worst_coverage(coverage: Sequence[ScrapeCoverage]) -> dict[str, float]:
    """Each job's least-covered share of the window, as the point's record keeps it."""
    worst: dict[str, float] = {}
    for c in coverage:
        worst[c.job] = round(min(worst.get(c.job, 1.0), c.fraction), 3)
    return worst


def merged_timeline(summaries: dict[str, dict[str, Any]]) -> list[int]:
    """Completions per second of the window, added up over the client hosts."""
    per_second: dict[int, int] = {}
    for summary in summaries.values():
        for entry in summary.get("timeline", []):
            per_second[entry["second"]] = per_second.get(entry["second"], 0) + entry["completed"]
    return [per_second.get(s, 0) for s in range(max(per_second, default=-1) + 1)]
