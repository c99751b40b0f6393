"""How every number of the report, `servelab compare` and `servelab history` is written.

One place, so that every format shows the same rounding, and a number that does not
exist looks the same everywhere (an en dash; empty in CSV).
"""

from __future__ import annotations

from typing import Any

from servelab.controller.percentiles import enough_samples

DASH = "\u2013"  # an en dash: what a number that does not exist looks like, in every format but CSV


def format_fps(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def format_ms(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def format_percent(value: float | None, digits: int = 1) -> str:
    """A value already in percent."""
    return DASH if value is None else f"{value:.{digits}f}%"


def format_fraction(value: float | None, digits: int = 0) -> str:
    """A fraction (1.0 = 100%) as a percentage."""
    return DASH if value is None else f"{100.0 * value:.{digits}f}%"


def format_megabytes(value: float | None) -> str:
    """Bytes per second as MB/s (10^6 bytes)."""
    return DASH if value is None else f"{value / 1e6:.2f}"


def format_count(value: int | None) -> str:
    return DASH if value is None else str(value)


def format_bytes(value: int | None) -> str:
    return DASH if value is None else f"{value / 2**30:.1f} GiB"


def format_percentile(latency: Any, name: str) -> str:
    """A latency percentile (ms) of a point's `latency_ms`, or why it is not stated.

    `latency` is results.json's Latency (anything with the percentile's attribute
    and `samples`). Below the percentile's sample minimum (controller/percentiles.py)
    it reads "n/a: 19 samples"; points measured before the count was kept show their
    value as it was stored.
    """
    samples = getattr(latency, "samples", None)
    if samples is not None and not enough_samples(name, samples):
        return f"n/a: {samples} samples"
    return format_ms(getattr(latency, name, None))


def format_cores(value: float | None) -> str:
    """CPU in cores (1.00 = one core busy all the time)."""
    return DASH if value is None else f"{value:.2f}"


def format_mebibytes(value: float | None) -> str:
    """Bytes as MiB (2^20 bytes)."""
    return DASH if value is None else f"{value / 2**20:.0f}"
