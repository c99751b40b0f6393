"""A concurrency sweep stops where one more step stops paying, and says what it skipped.

The lab is a fake whose throughput follows a curve (this test is about the run's
bookkeeping, not the lab: tests/lab/test_lab.py runs the real phases).
"""

from __future__ import annotations

from pathlib import Path

from servelab.controller.bookkeeping import RunBook
from servelab.controller.run import execute
from tests.controller.fake_phases import PROJECT, FakeLab, smoke_plan

# frames/s by concurrency: rising to 4, then flat
CURVE = {1: 100.0, 2: 180.0, 4: 300.0, 8: 305.0, 16: 310.0, 32: 320.0}


def _book(tmp_path: Path) -> RunBook:
    plan = smoke_plan(
        tmp_path,
        servers=["ref-openvino"],
        baseline="ref-openvino",
        batches=[1],
        concurrency={"sweep": {"start": 1, "max": 32, "min_gain": 0.05}},
    )
    return RunBook.start(
        plan,
        tmp_path / "results",
        inventory=PROJECT / "inventory" / "local.yml",
        progress=tmp_path / "progress.log",
    )


def _curve_lab() -> FakeLab:
    return FakeLab(fps=lambda point: CURVE[point.concurrency])


def test_the_sweep_stops_after_the_first_step_that_adds_under_min_gain(tmp_path):
    lab = _curve_lab()
    assert execute(_book(tmp_path), lab) == 0
    assert lab.phases[-1] == ("teardown", "")
    # 8 adds under 5% over 4: measured, and the sweep ends there
    assert [p.concurrency for p in lab.loaded] == [1, 2, 4, 8]
    lines = (tmp_path / "progress.log").read_text().splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    assert "skipped, the sweep stopped at concurrency 8" in lines[4]
    assert lines[5].startswith("point 6/6 ref-openvino-tiny-b1-c32-r0: skipped")
    assert lines[-1].startswith("run finished: 4 of 4 points valid")


def test_keep_up_leaves_the_lab_running_after_the_run(tmp_path):
    lab = _curve_lab()
    assert execute(_book(tmp_path), lab, keep_up=True) == 0
    assert lab.loaded and ("teardown", "") not in lab.phases
