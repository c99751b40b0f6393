"""A concurrency sweep stops where one more step stops paying, and says what it skipped.

The phases are replaced by a throughput curve (this test is about the run's
bookkeeping, not the lab: tests/test_lab.py runs the real phases).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from servelab.controller.plan import Point, load_plan
from servelab.controller.results import PointResult
from servelab.controller.run import Run

PROJECT = Path(__file__).resolve().parents[2]
# frames/s by concurrency: rising to 4, then flat
CURVE = {1: 100.0, 2: 180.0, 4: 300.0, 8: 305.0, 16: 310.0, 32: 320.0}


class CurveRun(Run):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.measured: list[Point] = []
        self.phases: list[str] = []

    def _phase(self, playbook, extravars):  # teardown and provenance: only noted here
        self.phases.append(playbook)

    def _measure(self, point: Point) -> PointResult:
        self.measured.append(point)
        result = PointResult(point.server, point.model, point.batch, point.concurrency, 0)
        result.throughput_fps = CURVE[point.concurrency]
        result.valid = True
        return result


def _plan(tmp_path: Path) -> Path:
    data = yaml.safe_load((PROJECT / "plans" / "smoke.yml").read_text())
    data.update(
        servers=["ref-openvino"],
        baseline="ref-openvino",
        batches=[1],
        concurrency={"sweep": {"start": 1, "max": 32, "min_gain": 0.05}},
    )
    path = tmp_path / "plan.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(tmp_path: Path, **options) -> CurveRun:
    run = CurveRun.start(
        load_plan(_plan(tmp_path)),
        tmp_path / "results",
        inventory=PROJECT / "inventory" / "local.yml",
        extravars={},
        prometheus=None,
        progress=tmp_path / "progress.log",
        **options,
    )
    run.meta["hosts"] = {"server": [], "client": []}  # no provenance phase
    return run


def test_the_sweep_stops_after_the_first_step_that_adds_under_min_gain(tmp_path, capsys):
    run = _run(tmp_path)
    assert run.execute() == 0
    assert run.phases[-1] == "playbooks/teardown.yml"
    # 8 adds under 5% over 4: measured, and the sweep ends there
    assert [p.concurrency for p in run.measured] == [1, 2, 4, 8]
    lines = (tmp_path / "progress.log").read_text().splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["1/6", "2/6", "3/6", "4/6", "5/6", "6/6"]
    assert "skipped, the sweep stopped at concurrency 8" in lines[4]
    assert lines[5].startswith("point 6/6 ref-openvino-tiny-b1-c32-r0: skipped")
    assert lines[-1].startswith("run finished: 4 of 4 points valid")


def test_keep_up_leaves_the_lab_running_after_the_run(tmp_path):
    run = _run(tmp_path, keep_up=True)
    assert run.execute() == 0
    assert run.measured and "playbooks/teardown.yml" not in run.phases
