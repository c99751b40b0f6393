"""Synthetic histories: a series of finished runs with seeded noise, registered in order.

    runs = noisy_history(results, runs=10, cv=0.03, seed=7)
    last = add_run(results, day=10, values={...}, seed=...)

Every run measures the same plan on the same hosts (support.results' document),
one day apart; each (server, model, batch) has a true throughput, and each run's
value is that times (1 + a Gaussian with standard deviation `cv`), the same for
both repeats, so a run's median of valid repeats is exactly its noisy value.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.support.results import PLAN, point, run_document, write_run

# The true throughput of each configuration of support.results.PLAN.
TRUE_FPS = {
    ("ref-openvino", "resnet_v1_50", 1): 60.0,
    ("ref-openvino", "resnet_v1_50", 8): 140.0,
    ("ref-openvino", "resnet_v2_50", 1): 55.0,
    ("ref-openvino", "resnet_v2_50", 8): 130.0,
    ("ref-tensorflow", "resnet_v1_50", 1): 20.0,
    ("ref-tensorflow", "resnet_v1_50", 8): 45.0,
    ("ref-tensorflow", "resnet_v2_50", 1): 18.0,
    ("ref-tensorflow", "resnet_v2_50", 8): 41.0,
}
Config = tuple[str, str, int]


def run_id(day: int) -> str:
    return f"202611{day + 1:02d}T030000Z-synthetic"


def add_run(
    results: Path,
    day: int,
    values: dict[Config, float],
    *,
    invalid: dict[Config, str] | None = None,
    versions: dict[str, Any] | None = None,
    plan: dict[str, Any] | None = None,
    hostname: str | None = None,
) -> Path:
    """One finished run on `day` (0, 1, ...) with these values; written, not registered."""
    invalid = invalid or {}
    points = []
    for (server, model, batch), fps in values.items():
        for repeat in range(2):
            reason = invalid.get((server, model, batch))
            points.append(
                point(
                    server,
                    model,
                    batch,
                    fps=fps,
                    repeat=repeat,
                    valid=reason is None,
                    reasons=[reason] if reason else [],
                )
            )
    document = run_document(
        points,
        plan=plan or PLAN,
        run_id=run_id(day),
        finished=f"2026-11-{day + 1:02d}T03:40:00+00:00",
    )
    document["run"]["started"] = f"2026-11-{day + 1:02d}T03:00:00+00:00"
    if versions:
        document["run"]["versions"]["servers"] = versions
    if hostname:
        for hosts in document["run"]["hosts"].values():
            for host in hosts:
                host["hostname"] = hostname
    return write_run(results / run_id(day), document)


def noisy_values(rng: random.Random, cv: float) -> dict[Config, float]:
    return {config: fps * (1.0 + rng.gauss(0.0, cv)) for config, fps in TRUE_FPS.items()}
