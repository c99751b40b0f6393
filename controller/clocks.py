"""How far each lab host's clock is from the monitoring host's, read through Prometheus.

The client pools start at an agreed wall-clock instant, and each point's window is
looked up in Prometheus by the pools' wall-clock times: a host whose clock is off
starts late, and its window lands on the wrong samples. So every clock is compared
with Prometheus' own.

Prometheus stamps each sample with its clock at the start of the scrape; the node
exporter reads its host's clock (`node_time_seconds`) while it answers. So each scrape
bounds the host's offset: between the sample's value minus its stamp, less the
scrape's duration, and that difference itself. The scrapes of the last seconds
together bound it tighter (the intersection of their intervals); the offset is the
middle of what is left, its uncertainty half the width. The controller's own clock is
compared with Prometheus' `time()`, the quickest of a few round trips standing in for
the scrape.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from servelab.controller.prometheus import PrometheusAPI, PrometheusError

# How far back the scrapes are read.
LOOKBACK_S = 10.0
# Prometheus may move a scrape's stamp this far to align it with the schedule.
STAMP_SLACK_S = 0.002


@dataclass(frozen=True)
class ClockOffset:
    host: str  # an inventory host, or "controller"
    platform: str  # server, client, or controller
    offset_ms: float  # this clock minus the monitoring host's (Prometheus')
    uncertainty_ms: float  # half the time the reading took


class ClockSkewError(RuntimeError):
    """A host's clock is further from the monitoring host's than the plan allows."""


def measure(api: PrometheusAPI) -> list[ClockOffset]:
    """Every node-exporter host's offset, then the controller's."""
    now = api_time(api)[0]
    durations = {
        labels.get("instance"): dict(samples)
        for labels, samples in api.raw('scrape_duration_seconds{job="node"}', now - LOOKBACK_S, now)
    }
    offsets = []
    for labels, samples in api.raw('node_time_seconds{job="node"}', now - LOOKBACK_S, now):
        scrapes = durations.get(labels.get("instance"), {})
        bounds = [
            (value - stamp - scrapes[stamp], value - stamp + STAMP_SLACK_S)
            for stamp, value in samples
            if stamp in scrapes
        ]
        if not bounds:
            continue
        low, high = max(b[0] for b in bounds), min(b[1] for b in bounds)
        if low > high:  # the clock moved during the lookback: the scrapes disagree
            low = statistics.median(b[0] for b in bounds)
            high = statistics.median(b[1] for b in bounds)
        offsets.append(
            ClockOffset(
                host=labels.get("host", labels.get("instance", "?")),
                platform=labels.get("platform", "?"),
                offset_ms=(low + high) / 2 * 1e3,
                uncertainty_ms=(high - low) / 2 * 1e3,
            )
        )
    if not offsets:
        raise PrometheusError("no node exporter's node_time_seconds in Prometheus")
    readings = [api_time(api) for _ in range(5)]
    prometheus_now, before, after = min(readings, key=lambda r: r[2] - r[1])
    offsets.append(
        ClockOffset(
            host="controller",
            platform="controller",
            offset_ms=((before + after) / 2 - prometheus_now) * 1e3,
            uncertainty_ms=(after - before) / 2 * 1e3,
        )
    )
    return sorted(offsets, key=lambda o: (o.platform, o.host))


def api_time(api: PrometheusAPI) -> tuple[float, float, float]:
    """(Prometheus' time, this clock before asking, this clock after the answer)."""
    before = time.time()
    present = api.scalar("time()")
    return present, before, time.time()


def check(offsets: list[ClockOffset], max_skew_ms: float) -> None:
    """Raise ClockSkewError naming every clock that is off by more than the plan allows."""
    off = [o for o in offsets if abs(o.offset_ms) - o.uncertainty_ms > max_skew_ms]
    if off:
        named = "; ".join(
            f"{o.host} ({o.platform}) is {abs(o.offset_ms):.1f} ms "
            f"{'ahead of' if o.offset_ms > 0 else 'behind'} the monitoring host"
            f" (± {o.uncertainty_ms:.1f} ms)"
            for o in off
        )
        raise ClockSkewError(
            f"clocks differ more than the plan allows (validity.max_clock_skew_ms"
            f" {max_skew_ms:g}): {named}. Synchronise the hosts' clocks (chrony or NTP)"
            " before measuring, or raise the bound if the lab's windows tolerate it."
        )
