"""The serve phase runs when a point needs it, and only then.

A kind that served the previous point without an error, and that Prometheus has
scraped since, keeps running: the next point goes straight to its load. A new kind,
an error in the previous point (a server killed mid-window) or a target Prometheus
no longer reaches brings the serve phase back. The lab is a fake
(tests/controller/fake_phases.py); tests/lab/test_lab.py runs the real one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from servelab.controller.bookkeeping import RunBook
from servelab.controller.lab import AnsibleLab
from servelab.controller.plan import Point
from servelab.controller.prometheus import Window
from servelab.controller.run import execute
from tests.controller.fake_phases import PROJECT, FakeLab, smoke_plan

INVENTORY = PROJECT / "inventory" / "local.yml"


def _execute(tmp_path: Path, lab: FakeLab) -> RunBook:
    book = RunBook.start(
        smoke_plan(tmp_path, batches=[1, 4]),
        tmp_path / "results",
        inventory=INVENTORY,
        progress=None,
    )
    execute(book, lab, keep_up=True)
    return book


def test_a_kind_that_served_cleanly_and_is_still_scraped_is_served_once(tmp_path, capsys):
    lab = FakeLab(still_up=True)
    book = _execute(tmp_path, lab)
    assert [phase for phase, _ in lab.phases].count("load") == 4
    assert lab.served() == ["ref-openvino", "ref-tensorflow"]
    # asked about the kind of the point before, since the end of that point's window
    assert lab.asked == [("ref-openvino", 1010.0), ("ref-tensorflow", 1030.0)]
    assert all(p.valid for p in book.points), [p.reasons for p in book.points]
    out = capsys.readouterr().out
    assert "ref-openvino-tiny-b4-c2-r0: ref-openvino still serves, not served again" in out


def test_errors_in_the_previous_point_bring_the_serve_phase_back(tmp_path):
    # a server killed in the middle of batch 1: UNAVAILABLE there, and served again after
    lab = FakeLab(errors=lambda point: {"UNAVAILABLE": 3} if point.batch == 1 else {})
    book = _execute(tmp_path, lab)
    assert lab.served() == ["ref-openvino"] * 2 + ["ref-tensorflow"] * 2
    valid = {(p.server, p.batch): p.valid for p in book.points}
    assert valid == {
        ("ref-openvino", 1): False,
        ("ref-openvino", 4): True,
        ("ref-tensorflow", 1): False,
        ("ref-tensorflow", 4): True,
    }


def test_a_failed_load_brings_the_serve_phase_back(tmp_path):
    lab = FakeLab(failing_loads=("ref-openvino-tiny-b1-c2-r0",))
    book = _execute(tmp_path, lab)
    assert lab.served() == ["ref-openvino"] * 2 + ["ref-tensorflow"]
    assert book.failures == [
        "ref-openvino-tiny-b1-c2-r0: playbooks/phases/load.yml failed: client: pool:"
        " ref-openvino-tiny-b1-c2-r0"
    ]


def test_without_a_fresh_scrape_every_point_is_served(tmp_path):
    lab = FakeLab(still_up=False)
    _execute(tmp_path, lab)
    assert lab.served() == ["ref-openvino"] * 2 + ["ref-tensorflow"] * 2


class ScrapedTargets:
    """Prometheus as the real lab's serve decision sees it."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.asked: list[tuple[str, str, float]] = []

    def up_since(self, job: str, labels: dict[str, str], after: float) -> bool:
        self.asked.append((job, labels["kind"], after))
        return self.up


def _ansible_lab(tmp_path: Path, prometheus: ScrapedTargets | None) -> AnsibleLab:
    return AnsibleLab(
        inventory=INVENTORY, extravars={}, plan_file=tmp_path / "plan.yml", prometheus=prometheus
    )


def test_the_real_lab_asks_prometheus_whether_the_kind_was_scraped_since():
    for up in (True, False):
        prometheus = ScrapedTargets(up)
        lab = _ansible_lab(Path("/nonexistent"), prometheus)
        assert lab.still_serving("ref-openvino", 1010.0) is up
        assert prometheus.asked == [("model_server", "ref-openvino", 1010.0)]


def test_without_prometheus_the_real_lab_never_says_a_kind_still_serves(tmp_path):
    lab = _ansible_lab(tmp_path, None)
    assert lab.still_serving("ref-openvino", 1010.0) is False
    point = Point("ref-openvino", "tiny", 1, 2, 0)
    assert lab.observe(point, Window(1006.0, 1010.0), {}, None) is None
    assert lab.clock_offsets() is None


def _interleaved(tmp_path: Path, serve_others: str) -> FakeLab:
    lab = FakeLab(still_up=True)
    lab.serve_others = serve_others
    book = RunBook.start(
        smoke_plan(tmp_path, batches=[1], repeats=3),
        tmp_path / "results",
        inventory=INVENTORY,
        progress=None,
    )
    execute(book, lab, keep_up=True)
    return lab


def test_interleaved_repeats_with_idle_kinds_serve_each_kind_once(tmp_path):
    lab = _interleaved(tmp_path, "idle")
    assert [p.server for p in lab.loaded] == ["ref-openvino", "ref-tensorflow"] * 3
    assert lab.served() == ["ref-openvino", "ref-tensorflow"]


def test_interleaved_repeats_with_stopped_kinds_serve_every_switch(tmp_path):
    lab = _interleaved(tmp_path, "stopped")
    # each serve stops the other kind, so its earlier clean window no longer counts
    assert lab.served() == ["ref-openvino", "ref-tensorflow"] * 3
    assert lab.asked == []


def test_the_lab_refuses_an_unknown_serve_others(tmp_path):
    with pytest.raises(ValueError, match="servelab_serve_others"):
        AnsibleLab(
            inventory=INVENTORY,
            extravars={"servelab_serve_others": "paused"},
            plan_file=tmp_path / "plan.yml",
            prometheus=None,
        )
