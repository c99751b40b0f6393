"""The run loop on a fake lab: resuming, exit statuses, provenance, clocks and coverage.

What users rely on: `--resume` measures nothing twice and answers only for its own
attempt; a failed phase is written down and the run goes on; a clock too far off
stops the run before its first point; a point whose scrapes leave part of its
window uncovered is invalid, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servelab.controller.bookkeeping import RunBook
from servelab.controller.clocks import ClockOffset
from servelab.controller.lab import window_coverage
from servelab.controller.prometheus import Window
from servelab.controller.run import execute
from tests.controller.fake_phases import PROJECT, FakeLab, smoke_plan

INVENTORY = PROJECT / "inventory" / "local.yml"
FIRST = "ref-openvino-tiny-b1-c2-r0"


def _book(tmp_path: Path, progress: Path | None = None) -> RunBook:
    return RunBook.start(
        smoke_plan(tmp_path, batches=[1]),
        tmp_path / "results",
        inventory=INVENTORY,
        progress=progress,
    )


def _document(book: RunBook) -> dict:
    return json.loads((book.dir / "results.json").read_text())


def test_every_point_is_written_with_provenance_and_the_run_finishes(tmp_path):
    lab = FakeLab()
    book = _book(tmp_path)
    assert execute(book, lab) == 0
    phases = [phase for phase, _ in lab.phases if phase != "health"]
    assert phases == ["facts", "serve", "load", "serve", "load", "teardown"]
    assert lab.checked() == 2, "the lab's daemons checked before each point"
    document = _document(book)
    assert document["run"]["hosts"]["server"] == [{"name": "server"}]
    assert document["run"]["versions"] == {"haproxy": "fake"}
    assert document["run"]["finished"] is not None
    assert [p["valid"] for p in document["points"]] == [True, True]
    assert document["points"][0]["scrape_coverage"] == {
        "haproxy": 1.0,
        "node": 1.0,
        "model_server": 1.0,
    }
    assert (book.dir / "report.md").is_file() and (book.dir / "verdict.json").is_file()


def test_a_failed_phase_is_written_down_and_the_run_goes_on(tmp_path):
    lab = FakeLab(failing_loads=(FIRST,))
    book = _book(tmp_path)
    assert execute(book, lab) == 1
    document = _document(book)
    statuses = {p["server"]: p["status"] for p in document["points"]}
    assert statuses == {"ref-openvino": "failed", "ref-tensorflow": "measured"}
    assert document["failures"] == [
        f"{FIRST}: playbooks/phases/load.yml failed: client: pool: {FIRST}"
    ]


def test_resume_measures_only_what_is_missing_and_answers_for_itself(tmp_path, capsys):
    book = _book(tmp_path)
    assert execute(book, FakeLab(failing_loads=(FIRST,))) == 1
    kept = _document(book)["points"][1]

    again = FakeLab()
    resumed = RunBook.resume(book.dir, progress=tmp_path / "progress.log")
    # the failures of the attempt before stay on record, but do not fail this one
    assert execute(resumed, again) == 0
    assert [p.slug for p in again.loaded] == [FIRST]
    assert ("facts", "") not in again.phases  # provenance is read once per run
    document = _document(resumed)
    assert len(document["run"]["resumed"]) == 1
    assert document["failures"] == _document(book)["failures"]
    points = {p["server"]: p for p in document["points"]}
    assert points["ref-tensorflow"] == kept
    assert points["ref-openvino"]["valid"]
    lines = (tmp_path / "progress.log").read_text().splitlines()
    assert lines[0].startswith(f"point 1/2 {FIRST}: 100.0 frames/s")
    assert lines[1].startswith("point 2/2 ref-tensorflow-tiny-b1-c2-r0: 100.0 frames/s")
    assert lines[1].endswith("(measured before)")


def test_a_resumed_run_with_an_invalid_point_still_exits_1(tmp_path):
    book = _book(tmp_path)
    lab = FakeLab(errors=lambda point: {"UNAVAILABLE": 2} if point.server == "ref-openvino" else {})
    assert execute(book, lab) == 1
    # an invalid point was measured: resuming keeps it, and the run is still not clean
    again = FakeLab()
    assert execute(RunBook.resume(book.dir, progress=None), again) == 1
    assert again.loaded == []


def test_clocks_too_far_apart_stop_the_run_before_its_first_point(tmp_path):
    far = ClockOffset(host="server", platform="server", offset_ms=400.0, uncertainty_ms=1.0)
    near = ClockOffset(host="controller", platform="controller", offset_ms=2.0, uncertainty_ms=1.0)
    lab = FakeLab(clocks=[far, near])
    book = _book(tmp_path, progress=tmp_path / "progress.log")
    assert execute(book, lab) == 1
    assert lab.loaded == [] and lab.phases[-1] == ("teardown", "")
    assert book.failures[0].startswith("clocks: clocks differ more than the plan allows")
    lines = (tmp_path / "progress.log").read_text().splitlines()
    assert lines[0] == "clocks: the furthest is server, +400.0 ms"
    assert lines[1].startswith("run stopped before its first point: clocks differ")
    assert _document(book)["run"]["clocks"][0]["offset_ms"] == 400.0


@pytest.mark.parametrize("job", ["haproxy", "node", "model_server"])
def test_a_point_whose_scrapes_miss_part_of_its_window_is_invalid(tmp_path, job):
    # Prometheus' scrapes covered 2.0 s of the 4-s window (the starved CI machine)
    lab = FakeLab(coverage_s={job: 2.0})
    book = _book(tmp_path)
    assert execute(book, lab) == 1
    for point in _document(book)["points"]:
        assert not point["valid"]
        assert point["reasons"] == [
            f"Prometheus' {job} samples cover 2.0 s of the 4.0-s window (50%), under 90%"
        ]
        assert point["scrape_coverage"] == {
            "haproxy": 1.0,
            "node": 1.0,
            "model_server": 1.0,
            job: 0.5,
        }


def test_the_coverage_bound_is_the_plans(tmp_path):
    plan = smoke_plan(tmp_path, batches=[1], validity={"min_scrape_coverage": 0.4})
    book = RunBook.start(plan, tmp_path / "results", inventory=INVENTORY, progress=None)
    assert execute(book, FakeLab(coverage_s={"haproxy": 2.0})) == 0


class UpSamples:
    """Prometheus' `up` per job: the model server's scrapes failing from the window's start."""

    def __init__(self, jobs: dict[str, list[tuple[float, float]]]) -> None:
        self.jobs = jobs

    def targets(self) -> list[dict]:
        return [{"labels": {"job": job}, "scrapeInterval": "1s"} for job in self.jobs]

    def raw(self, selector: str, start: float, end: float) -> list:
        job = selector.split('job="')[1].split('"')[0]
        labels = {"job": job, "instance": "127.0.0.1:8404"}
        return [(labels, self.jobs[job])] if job in self.jobs else []


def test_the_real_lab_judges_haproxy_node_and_the_servers_own_scrapes():
    window = Window(10.0, 14.0)
    every_second = [(float(t), 1.0) for t in range(5, 20)]
    down = [(t, 0.0) for t, _ in every_second]
    # haproxy scraped throughout; no node target at all; the server never answered
    prometheus = UpSamples({"haproxy": every_second, "model_server": down})
    coverage = window_coverage(prometheus, "k", window)
    assert [(c.job, c.target, c.covered_s) for c in coverage] == [
        ("haproxy", "127.0.0.1:8404", 4.0),
        ("node", "no target", 0.0),
    ]
    # a server that answered, then died in the window: its counts stop there
    died = [(t, 1.0 if t <= 12 else 0.0) for t, _ in every_second]
    prometheus = UpSamples({"haproxy": every_second, "model_server": died})
    coverage = window_coverage(prometheus, "k", window)
    assert [(c.job, c.covered_s) for c in coverage if c.job == "model_server"] == [
        ("model_server", 2.0)
    ]


def _spoiled_once(slug: str) -> tuple[dict[str, list[str]], object]:
    """The first attempt at `slug` loses requests while HAProxy is down."""
    attempts: dict[str, int] = {}

    def errors(point):
        attempts[point.slug] = attempts.get(point.slug, 0) + 1
        return {"UNAVAILABLE": 7} if point.slug == slug and attempts[slug] == 1 else {}

    return {slug: ["HAProxy (haproxy on client)"]}, errors


def test_a_point_the_labs_daemons_spoiled_is_a_lab_fault_measured_again(tmp_path):
    deaths, errors = _spoiled_once(FIRST)
    lab = FakeLab(errors=errors, lab_deaths=deaths)
    book = _book(tmp_path, progress=tmp_path / "progress.log")
    assert execute(book, lab) == 0, "measured again and valid: the run answers 0"
    assert [p.slug for p in lab.loaded].count(FIRST) == 2
    document = _document(book)
    assert [p["valid"] for p in document["points"]] == [True, True]
    assert document["failures"] == []
    lines = (tmp_path / "progress.log").read_text().splitlines()
    first = [line for line in lines if FIRST in line]
    assert "FAILED: lab fault: HAProxy (haproxy on client) died during the point" in first[0]
    assert "UNAVAILABLE" in first[0], "the spoiled point's own reasons are kept"
    assert first[1].startswith(f"point 1/2 {FIRST}: 100.0 frames/s")


def test_a_point_spoiled_with_the_lab_whole_stays_invalid(tmp_path):
    lab = FakeLab(errors=lambda point: {"UNAVAILABLE": 3} if point.slug == FIRST else {})
    book = _book(tmp_path)
    assert execute(book, lab) == 1
    assert [p.slug for p in lab.loaded].count(FIRST) == 1, "the server spoiled it: not again"
    point = _document(book)["points"][0]
    assert point["status"] == "measured" and not point["valid"]
    assert not any(r.startswith("lab fault") for r in point["reasons"])


def test_a_lab_fault_twice_is_left_failed_for_resume_to_measure(tmp_path):
    book = _book(tmp_path)
    dying = FakeLab(errors=lambda p: {"UNAVAILABLE": 1} if p.slug == FIRST else {})
    dying.lab_deaths = _AlwaysDies(FIRST)
    assert execute(book, dying) == 1
    point = next(
        p for p in _document(book)["points"] if p["batch"] == 1 and "openvino" in p["server"]
    )
    assert point["status"] == "failed" and point["reasons"][0].startswith("lab fault: Prometheus")
    resumed = RunBook.resume(book.dir, progress=None)
    again = FakeLab()
    assert execute(resumed, again) == 0
    assert [p.slug for p in again.loaded] == [FIRST]


class _AlwaysDies(dict):
    """Prometheus dies in every attempt at one point."""

    def __init__(self, slug: str) -> None:
        super().__init__()
        self.slug = slug

    def __contains__(self, slug: object) -> bool:
        return slug == self.slug

    def pop(self, slug, *default):
        return ["Prometheus"]
