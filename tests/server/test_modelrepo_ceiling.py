"""The in-process ceiling lands in ceiling.json, merged, and is measured once per (model, batch)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from servelab.controller.cpusets import format_cpuset
from servelab.server.modelrepo.ceiling import load_ceiling, measure_ceiling


def test_benchmark_app_ceiling_for_tiny(tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    command = [
        sys.executable, "-m", "servelab.controller", "models", "ceiling", "--repo", str(repo),
        "--models", "tiny", "--batches", "1", "--duration", "2", "--missing-only", "--json",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["measured"] == ["tiny@1"]

    records = load_ceiling(repo)
    record = records[("tiny", 1)]
    print(f"tiny batch 1: {record.throughput_fps:.0f} fps via {record.method}")
    assert record.method == "benchmark_app"
    assert record.throughput_fps > 0
    assert record.duration_s >= 1.5
    assert record.nireq is not None and record.nireq >= 1
    assert record.nstreams is not None and record.nstreams >= 1
    assert record.cpu_logical_cores >= 1
    assert record.throughput_fps == pytest.approx(record.iterations / record.duration_s, rel=1e-3)
    raw = json.loads((repo / "ceiling.json").read_text())
    assert raw["models"]["tiny"]["1"]["throughput_fps"] == record.throughput_fps

    again = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["changed"] is False
    assert document["skipped"] == ["tiny@1"]


def test_fallback_queue_merges_with_existing_records(tiny_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    measure_ceiling(repo, ["tiny"], [1], duration_s=1, method="async_infer_queue")
    report = measure_ceiling(repo, ["tiny"], [2], duration_s=1, method="async_infer_queue")

    assert [(r.model, r.batch) for r in report.records] == [("tiny", 2)]
    records = load_ceiling(repo)
    assert set(records) == {("tiny", 1), ("tiny", 2)}
    second = records[("tiny", 2)]
    assert second.method == "async_infer_queue"
    assert second.throughput_fps == pytest.approx(
        second.iterations * 2 / second.duration_s, rel=1e-3
    )
    assert second.throughput_fps > 0


def test_the_ceiling_runs_on_the_servers_cpus_and_a_new_set_measures_again(
    tiny_repo: Path, tmp_path: Path
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("pinning to one CPU differs from all CPUs only with two or more")
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    cpu = max(os.sched_getaffinity(0))
    every = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))

    def ceiling(cpus: str) -> dict:
        command = [
            sys.executable, "-m", "servelab.controller", "models", "ceiling", "--repo",
            str(repo), "--models", "tiny", "--batches", "1", "--duration", "1",
            "--missing-only", "--json", "--cpus", cpus,
        ]  # fmt: skip
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert ceiling(str(cpu))["measured"] == ["tiny@1"]
    pinned = load_ceiling(repo)[("tiny", 1)]
    assert pinned.cpus == str(cpu)
    # OpenVINO sized itself to the one CPU it was given, as the pinned server does
    assert pinned.nstreams == 1 and pinned.nireq == 1, (pinned.nstreams, pinned.nireq)
    assert ceiling(str(cpu))["skipped"] == ["tiny@1"], "same build, same set: kept"
    assert ceiling(every)["measured"] == ["tiny@1"], "another set: measured again"
    assert load_ceiling(repo)[("tiny", 1)].cpus == format_cpuset(os.sched_getaffinity(0))
