"""The serve phase runs when a point needs it, and only then.

A kind that served the previous point without an error, and that Prometheus has
scraped since, keeps running: the next point goes straight to its load. A new kind,
an error in the previous point (a server killed mid-window) or a target Prometheus
no longer reaches brings the serve phase back. The phases and Prometheus are
stand-ins here; tests/test_lab.py runs the real ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from servelab.controller.plan import Point, load_plan
from servelab.controller.results import MeasuredWindow, PointResult
from servelab.controller.run import Run

PROJECT = Path(__file__).resolve().parents[2]


class ScrapedTargets:
    """Prometheus as the serve decision sees it: is the kind's target up since then?"""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.asked: list[tuple[str, float]] = []

    def up_since(self, job: str, labels: dict[str, str], after: float) -> bool:
        self.asked.append((labels["kind"], after))
        return self.up

    def target_health(self, job: str, labels: dict[str, str]) -> str:
        return "up"


class PhaseLog(Run):
    """Records each phase; a point's errors come from `errors_by_batch`."""

    def __init__(self, *args: Any, errors_by_batch: dict[int, dict[str, int]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.errors_by_batch = errors_by_batch
        self.phases: list[tuple[str, str]] = []
        self._clock = 1000.0

    def _phase(self, playbook: str, extravars: dict[str, Any]) -> None:
        kind = extravars.get("servelab_serve_kind") or extravars.get("servelab_point", {}).get(
            "server", ""
        )
        self.phases.append((Path(playbook).stem, kind))

    def _clocks_agree(self) -> bool:  # no node exporters to read clocks from
        return True

    def _evaluate(self, point: Point, summaries: dict[str, dict[str, Any]]) -> PointResult:
        result = PointResult(point.server, point.model, point.batch, point.concurrency, 0)
        self._clock += 10
        result.window = MeasuredWindow(self._clock - 4, self._clock, 4.0)
        result.errors = dict(self.errors_by_batch.get(point.batch, {}))
        result.valid = not any(result.errors.values())
        return result


def _run(
    tmp_path: Path,
    prometheus: ScrapedTargets | None,
    errors_by_batch: dict[int, dict[str, int]] | None = None,
) -> PhaseLog:
    data = yaml.safe_load((PROJECT / "plans" / "smoke.yml").read_text())
    data["batches"] = [1, 4]
    path = tmp_path / "plan.yml"
    path.write_text(yaml.safe_dump(data))
    run = PhaseLog.start(
        load_plan(path),
        tmp_path / "results",
        inventory=PROJECT / "inventory" / "local.yml",
        extravars={},
        prometheus=prometheus,
        progress=None,
        keep_up=True,
        errors_by_batch=errors_by_batch or {},
    )
    run.meta["hosts"] = {"server": [], "client": []}  # no provenance phase
    return run


def _serves(run: PhaseLog) -> list[str]:
    return [kind for phase, kind in run.phases if phase == "serve"]


def test_a_kind_that_served_cleanly_and_is_still_scraped_is_served_once(tmp_path):
    prometheus = ScrapedTargets(up=True)
    run = _run(tmp_path, prometheus)
    run.execute()
    assert [phase for phase, _ in run.phases].count("load") == 4
    assert _serves(run) == ["ref-openvino", "ref-tensorflow"]
    # asked about the kind of the point before, since the end of that point's window
    assert prometheus.asked == [("ref-openvino", 1010.0), ("ref-tensorflow", 1030.0)]


def test_errors_in_the_previous_point_bring_the_serve_phase_back(tmp_path):
    run = _run(tmp_path, ScrapedTargets(up=True), errors_by_batch={1: {"UNAVAILABLE": 3}})
    run.execute()
    assert _serves(run) == ["ref-openvino"] * 2 + ["ref-tensorflow"] * 2


@pytest.mark.parametrize("prometheus", [ScrapedTargets(up=False), None])
def test_without_a_fresh_scrape_every_point_is_served(tmp_path, prometheus):
    run = _run(tmp_path, prometheus)
    run.execute()
    assert _serves(run) == ["ref-openvino"] * 2 + ["ref-tensorflow"] * 2
