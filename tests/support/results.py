"""Synthetic results.json documents in the run's format, for report and compare tests.

    doc = run_document([point("ref-openvino", "resnet_v1_50", 1, fps=30.0), ...])
    run_dir = write_run(tmp_path / "run", doc)

Every number is given by the test; the helpers fill the rest of the shape (latency,
proxy, server metrics, CPU, window) from them so that a test can compute what a
report must show by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLAN = {
    "name": "synthetic",
    "description": "two kinds, two models, two batch sizes, two repeats",
    "servers": ["ref-openvino", "ref-tensorflow"],
    "baseline": "ref-tensorflow",
    "models": ["resnet_v1_50", "resnet_v2_50"],
    "batches": [1, 8],
    "concurrency": [4],
    "repeats": 2,
    "window": {"warmup_s": 3, "duration_s": 10, "cooldown_s": 1},
    "validity": {"max_client_cpu": 0.8, "proxy_tolerance": 0.02, "max_spread": 0.2},
}

WINDOW_S = 10.0


def point(
    server: str,
    model: str,
    batch: int,
    *,
    fps: float | None,
    concurrency: int = 4,
    repeat: int = 0,
    valid: bool = True,
    reasons: list[str] | None = None,
    status: str = "measured",
    p50_ms: float = 40.0,
    p90_ms: float = 45.0,
    p99_ms: float = 50.0,
    in_process_fps: float | None = None,
    cpu: dict[str, float] | None = None,
    errors: dict[str, int] | None = None,
    proxy: bool = True,
) -> dict[str, Any]:
    """One point; `status="failed"` (or fps=None) gives the nulls a failed phase leaves."""
    failed = status == "failed" or fps is None
    start = 1_795_400_000.0 + 100 * repeat
    requests_per_s = None if failed else fps / batch
    return {
        "server": server,
        "model": model,
        "batch": batch,
        "concurrency": concurrency,
        "repeat": repeat,
        "status": status,
        "throughput_fps": None if failed else fps,
        "requests_per_s": requests_per_s,
        "latency_ms": None
        if failed
        else {
            "mean": p50_ms + 1.0,
            "p50": p50_ms,
            "p90": p90_ms,
            "p95": (p90_ms + p99_ms) / 2,
            "p99": p99_ms,
            "p99_9": p99_ms + 5.0,
            "max": p99_ms + 10.0,
            "min": p50_ms / 2,
        },
        "requests": None if failed else round(requests_per_s * WINDOW_S),
        "errors": None if failed else (errors or {}),
        "verify_failures": None if failed else 0,
        "window": None
        if failed
        else {"start_epoch": start, "end_epoch": start + WINDOW_S, "duration_s": WINDOW_S},
        "proxy": {
            "requests": round(requests_per_s * WINDOW_S) + 1,
            "requests_per_s": requests_per_s * 1.01,
            "avg_response_ms": p50_ms + 2.0,
        }
        if proxy and not failed
        else None,
        "server_metrics": None
        if failed
        else {
            "requests": round(requests_per_s * WINDOW_S),
            "requests_per_s": requests_per_s,
            "errors": 0,
            "request_ms_mean": p50_ms * 0.8,
            "inference_ms_mean": p50_ms * 0.7,
        },
        "cpu": None
        if failed
        else {
            **(cpu or {"server": 0.9, "client": 0.2, "client_pool": 0.15}),
            "server_cores": 8,
            "client_cores": 8,
            "shared_host": False,
        },
        "in_process_fps": in_process_fps,
        "stability": None
        if failed
        else {
            "interval_s": 1.0,
            "requests_per_s": [fps / batch] * 3,
            "spread": 0.02,
            "allowed": 0.3,
        },
        "valid": False if failed else valid,
        "reasons": list(reasons or []),
        "clients": {} if failed else {"client": {"tool": "servelab-load"}},
    }


def run_document(
    points: list[dict[str, Any]],
    *,
    plan: dict[str, Any] | None = None,
    failures: list[str] | None = None,
    run_id: str = "20261123T101500Z-synthetic",
    finished: str | None = "2026-11-23T10:45:00+00:00",
) -> dict[str, Any]:
    host = {
        "name": "server",
        "hostname": "lab-a",
        "cpu_model": "Synthetic CPU @ 3.0GHz",
        "cores": 8,
        "memory_bytes": 32 * 2**30,
        "kernel": "6.1.0",
        "os": "Debian GNU/Linux 12",
    }
    return {
        "run": {
            "id": run_id,
            "plan": plan or PLAN,
            "started": "2026-11-23T10:15:00+00:00",
            "finished": finished,
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "inventory": "/work/main/inventory/local.yml",
            "hosts": {"server": [host], "client": [{**host, "name": "client"}]},
            "versions": {
                "servelab": "0.1.0",
                "python": "3.11.7",
                "ansible": "2.19.0",
                "haproxy": "2.6.12",
                "prometheus": "2.42.0",
                "node_exporter": "1.5.0",
                "servers": {
                    "ref-openvino": "refserver 0.1.0 openvino 2026.4.1",
                    "ref-tensorflow": "refserver 0.1.0 tensorflow 2.21.0",
                },
            },
            "controller": {"host": "lab-a", "python": "3.11.7"},
        },
        "points": points,
        "failures": list(failures or []),
    }


def write_run(run_dir: Path, document: dict[str, Any] | str) -> Path:
    """A run directory holding `document` as results.json (a str is written as it is)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = document if isinstance(document, str) else json.dumps(document, indent=2)
    (run_dir / "results.json").write_text(text)
    return run_dir
