"""servelab-load against a real refserver (OpenVINO runtime, tiny model, short windows)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.load import SHORT, load_command, predict_successes, run_load
from tests.support.refserver import free_port, running_refserver


def test_counts_match_what_the_server_saw(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        before = predict_successes(server.rest_url)
        rc, summary, stderr = run_load(
            server.target, tiny_repo, "--concurrency", "2", "--processes", "2", *SHORT
        )
        after = predict_successes(server.rest_url)

    assert rc == 0, (stderr, summary and summary["problems"], summary and summary["requests"])
    requests = summary["requests"]
    assert requests["errors_total"] == {} and requests["verification_failures_total"] == 0
    assert requests["sent_total"] == requests["succeeded_total"] == after - before
    assert 0 < requests["completed"] == requests["verified"] < requests["sent_total"]
    assert summary["frames"] == requests["verified"]
    assert sum(p["completed"] for p in summary["timeline"]) == requests["completed"]
    assert len(summary["timeline"]) == 2  # a 1.5 s window has seconds 0 and 1
    window = summary["window"]
    assert window["end_epoch"] - window["start_epoch"] == pytest.approx(1.5)
    assert summary["throughput"]["requests_per_s"] == pytest.approx(requests["completed"] / 1.5)
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert summary["pool"]["processes"] == 2 and summary["pool"]["window_cpu_s"] > 0
    assert summary["pool"]["peak_rss_mb_per_worker"] > 0


def test_other_weights_fail_verification_without_false_passes(
    tiny_repo: Path, tiny_repo_other_weights: Path
) -> None:
    # The server has other weights than the golden samples the client holds.
    with running_refserver("openvino", tiny_repo_other_weights) as server:
        rc, summary, stderr = run_load(
            server.target, tiny_repo, "--concurrency", "2", "--processes", "1", *SHORT
        )
    assert rc == 1, stderr
    requests = summary["requests"]
    assert requests["verified"] == 0
    assert requests["verification_failures"] == requests["completed"] > 0
    assert requests["errors"] == {}
    assert requests["first_verification_failure"]
    assert summary["frames"] == 0
    assert any("verification failures" in p for p in summary["problems"])


def test_a_killed_server_gives_errors_by_code_and_a_summary(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        start_at = time.time() + 3.0  # time for the pool to start its workers
        pool = subprocess.Popen(
            load_command(
                server.target,
                tiny_repo,
                "--concurrency",
                "2",
                "--processes",
                "1",
                "--start-at",
                f"{start_at:.3f}",
                "--warmup",
                "0.5",
                "--duration",
                "2",
                "--cooldown",
                "0",
                "--timeout",
                "2",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(max(0.0, start_at + 1.2 - time.time()))  # into the window
        server.process.kill()
        server.process.wait()
        stdout, stderr = pool.communicate(timeout=60)

    assert pool.returncode == 1, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    requests = summary["requests"]
    assert requests["completed"] > 0  # before the kill
    assert requests["errors"].get("UNAVAILABLE", 0) > 0
    assert set(requests["errors"]) <= {"UNAVAILABLE", "CANCELLED", "INTERNAL", "UNKNOWN"}
    assert any("UNAVAILABLE" in p for p in summary["problems"])


def test_two_pools_with_the_same_start_at_start_together(tiny_repo: Path) -> None:
    with running_refserver("openvino", tiny_repo) as server:
        # The instant exactly as the pools are told it (ms resolution), so that a pool
        # starting on time is never "before" a reference that has more digits.
        start_at = round(time.time() + 5.0, 3)
        extra = ("--concurrency", "1", "--processes", "1", "--start-at", f"{start_at:.3f}")
        pools = [
            subprocess.Popen(
                load_command(server.target, tiny_repo, *extra, *SHORT),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=60) for p in pools]

    summaries = []
    for pool, (stdout, stderr) in zip(pools, outputs, strict=True):
        assert pool.returncode == 0, stderr
        summaries.append(json.loads(stdout))
    starts = [s["window"]["load_start_epoch"] for s in summaries]
    assert all(s["window"]["scheduled_start_epoch"] == pytest.approx(start_at) for s in summaries)
    assert abs(starts[0] - starts[1]) < 0.050
    assert all(0 <= s - start_at < 0.050 for s in starts), [s - start_at for s in starts]


def test_ctrl_c_writes_the_summary_of_what_was_measured(tiny_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    with running_refserver("openvino", tiny_repo) as server:
        start_at = time.time() + 3.0
        pool = subprocess.Popen(
            load_command(
                server.target,
                tiny_repo,
                "--concurrency",
                "2",
                "--start-at",
                f"{start_at:.3f}",
                "--warmup",
                "0.5",
                "--duration",
                "60",
                "--out",
                str(out),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(max(0.0, start_at + 2.0 - time.time()))
        pool.send_signal(signal.SIGINT)
        _, stderr = pool.communicate(timeout=30)

    assert pool.returncode == 130, stderr
    assert "Traceback" not in stderr
    summary = json.loads(out.read_text())
    assert summary["interrupted"] is True
    assert summary["requests"]["completed"] > 0
    assert 1.0 < summary["window"]["duration_s"] < 3.0


def _assert_bad_input(rc: int, stderr: str, pattern: str) -> None:
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in stderr


def test_unreachable_target_is_bad_input(tiny_repo: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    rc, summary, stderr = run_load(target, tiny_repo, "--connect-timeout", "1")
    assert summary is None
    _assert_bad_input(rc, stderr, rf"cannot reach {target}")


def test_bad_inputs_against_a_live_server(tiny_repo: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((1, 16, 16, 3), np.float32))
    with running_refserver("openvino", tiny_repo) as server:
        rc, _, stderr = run_load(server.target, tiny_repo, "--model", "nosuch")
        _assert_bad_input(rc, stderr, r"model 'nosuch' not found on 127\.0\.0\.1:\d+")
        rc, _, stderr = run_load(server.target, tiny_repo, "--model-version", "7")
        _assert_bad_input(rc, stderr, r"model 'tiny' version 7 not found")
        rc, _, stderr = run_load(server.target, tiny_repo, "--input", str(wrong))
        _assert_bad_input(rc, stderr, r"sample shape \[16, 16, 3\].*\[-1, 32, 32, 3\]")
        rc, _, stderr = run_load(server.target, tmp_path)  # no golden/tiny.npz there
        _assert_bad_input(rc, stderr, r"golden samples .*tiny\.npz do not exist")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("--concurrency", "0"), r"--concurrency: 0 is not a positive integer"),
        (("--duration", "soon"), r"--duration: 'soon' is not a number of seconds"),
        (("--target", "nohost"), r"--target: 'nohost' is not HOST:PORT"),
        (("--start-at", "1000"), r"--start-at 1000\.000 is .* s in the past"),
        (("--input", "pictures"), r"--input 'pictures': expected golden, random or a \.npy"),
    ],
)
def test_bad_flags_are_one_line_errors(
    tiny_repo: Path, args: tuple[str, ...], pattern: str
) -> None:
    command = [*load_command("127.0.0.1:1", tiny_repo), *args]  # later flags win
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    _assert_bad_input(result.returncode, result.stderr, pattern)
