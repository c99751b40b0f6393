"""The schedulers: which point comes next, decided from the results recorded so far."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from servelab.controller.bookkeeping import RunBook
from servelab.controller.intervals import from_repeats, interval
from servelab.controller.plan import Plan, Point
from servelab.controller.results import PointResult
from servelab.controller.run import execute
from servelab.controller.scheduler import (
    InterleavedOrder,
    PlanOrder,
    Step,
    SweepOrder,
    listed_points,
    scheduler_for,
)
from tests.controller.fake_phases import PROJECT, FakeLab, smoke_plan


def _result(point: Point, fps: float | None, valid: bool = True) -> PointResult:
    result = PointResult(point.server, point.model, point.batch, point.concurrency, point.repeat)
    result.throughput_fps, result.valid = fps, valid
    return result


def _drive(scheduler, fps: dict[tuple[int, int], float | None]) -> list[Step]:
    """Every step, each measured point answered with fps[(concurrency, repeat)]."""
    steps = []
    while (step := scheduler.next()) is not None:
        steps.append(step)
        if step.skipped is None:
            key = (step.point.concurrency, step.point.repeat)
            scheduler.record(_result(step.point, fps[key], valid=fps[key] is not None))
    return steps


def _sweep_plan(tmp_path: Path, repeats: int = 1, servers: tuple[str, ...] = ("ref-openvino",)):
    return smoke_plan(
        tmp_path,
        servers=list(servers),
        baseline=servers[0],
        batches=[1],
        repeats=repeats,
        concurrency={"sweep": {"start": 1, "max": 8, "min_gain": 0.1}},
    )


def test_the_plans_order_is_every_point_in_turn(tmp_path):
    plan = smoke_plan(tmp_path, repeats=2, schedule="sequential")
    scheduler = scheduler_for(plan)
    assert isinstance(scheduler, PlanOrder)
    steps = _drive(scheduler, {(2, 0): 1.0, (2, 1): 1.0})
    assert [s.point for s in steps] == list(plan.points())
    assert scheduler.total == len(steps) == 8 and all(s.skipped is None for s in steps)


def test_a_sweep_level_is_the_median_of_its_valid_repeats(tmp_path):
    scheduler = scheduler_for(_sweep_plan(tmp_path, repeats=3))
    assert isinstance(scheduler, SweepOrder)
    # level 2's median (115) is 15% over level 1's (100), its invalid repeat left out;
    # level 4's (120) adds under 10% over it: the sweep stops there, 8 is skipped
    fps = {(1, 0): 90.0, (1, 1): 100.0, (1, 2): 130.0}
    fps |= {(2, 0): 110.0, (2, 1): None, (2, 2): 120.0}
    fps |= {(4, 0): 120.0, (4, 1): 120.0, (4, 2): 500.0}
    steps = _drive(scheduler, fps)
    measured = [(s.point.concurrency, s.point.repeat) for s in steps if s.skipped is None]
    assert measured == [(c, r) for c in (1, 2, 4) for r in range(3)]
    skipped = [s for s in steps if s.skipped is not None]
    assert [(s.point.concurrency, s.point.repeat) for s in skipped] == [(8, 0), (8, 1), (8, 2)]
    assert {s.skipped for s in skipped} == {"the sweep stopped at concurrency 4"}
    assert scheduler.total == len(steps) == 12


def test_a_level_without_a_valid_repeat_ends_the_sweep(tmp_path):
    scheduler = scheduler_for(_sweep_plan(tmp_path, servers=("ref-openvino", "ref-tensorflow")))
    steps = _drive(scheduler, {(1, 0): 100.0, (2, 0): None, (4, 0): 1.0, (8, 0): 1.0})
    # each kind climbs on its own: both stop at 2
    assert [(s.point.server, s.point.concurrency, s.skipped is None) for s in steps] == [
        (server, level, level <= 2)
        for server in ("ref-openvino", "ref-tensorflow")
        for level in (1, 2, 4, 8)
    ]


class Interleaved:
    """Repeats alternating between kinds (A B A B): a strategy the cycle never hears of."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.recorded: list[Point] = []
        self._steps = self._walk()

    @property
    def total(self) -> int:
        return len(list(self.plan.points()))

    def _walk(self) -> Iterator[Step]:
        for repeat in range(self.plan.repeats):
            for server in self.plan.servers:
                for model in self.plan.models:
                    for batch in self.plan.batches:
                        yield Step(Point(server, model, batch, self.plan.concurrency[0], repeat))

    def next(self) -> Step | None:
        return next(self._steps, None)

    def record(self, result: PointResult) -> None:
        self.recorded.append(result.point)


def test_the_loop_takes_any_scheduler(tmp_path):
    plan = smoke_plan(tmp_path, batches=[1], repeats=2)
    book = RunBook.start(
        plan, tmp_path / "results", inventory=PROJECT / "inventory" / "local.yml", progress=None
    )
    lab = FakeLab()
    order = Interleaved(plan)
    assert execute(book, lab, scheduler=order) == 0
    a, b = plan.servers
    assert [(p.server, p.repeat) for p in lab.loaded] == [(a, 0), (b, 0), (a, 1), (b, 1)]
    assert order.recorded == lab.loaded


def test_two_kinds_and_two_repeats_alternate_by_default(tmp_path):
    plan = smoke_plan(tmp_path, batches=[1, 4], repeats=2)
    assert plan.schedule == "interleaved"
    scheduler = scheduler_for(plan)
    assert isinstance(scheduler, InterleavedOrder)
    steps = _drive(scheduler, {(2, 0): 1.0, (2, 1): 1.0})
    a, b = plan.servers
    order = [(s.point.server, s.point.batch, s.point.repeat) for s in steps]
    assert order == [
        (kind, batch, repeat) for batch in (1, 4) for repeat in (0, 1) for kind in (a, b)
    ]
    assert {s.point for s in steps} == set(plan.points()) and len(steps) == 8
    assert scheduler.total == len(steps)


def test_interleaved_sweep_climbs_every_kind_together_and_stops_each_alone(tmp_path):
    plan = _sweep_plan(tmp_path, repeats=2, servers=("ref-openvino", "ref-tensorflow"))
    assert plan.schedule == "interleaved"
    scheduler = scheduler_for(plan)
    a, b = plan.servers
    steps = []
    while (step := scheduler.next()) is not None:
        steps.append(step)
        if step.skipped is None:
            p = step.point
            # a stops paying at 2 (100 -> 100); b keeps climbing to 8 (doubles each level)
            fps = 100.0 if p.server == a else 50.0 * p.concurrency
            scheduler.record(_result(p, fps))
    measured = [
        (s.point.server, s.point.concurrency, s.point.repeat) for s in steps if not s.skipped
    ]
    assert measured[:4] == [(a, 1, 0), (b, 1, 0), (a, 1, 1), (b, 1, 1)]
    assert {c for k, c, _ in measured if k == a} == {1, 2}
    assert {c for k, c, _ in measured if k == b} == {1, 2, 4, 8}
    skipped = {(s.point.server, s.point.concurrency) for s in steps if s.skipped}
    assert skipped == {(a, 4), (a, 8)}


def _auto_run(tmp_path, fps, max_repeats: int = 6):
    plan = smoke_plan(
        tmp_path,
        batches=[1],
        repeats="auto",
        max_repeats=max_repeats,
        validity={"max_ci_halfwidth": 0.05},
    )
    book = RunBook.start(
        plan, tmp_path / "results", inventory=PROJECT / "inventory" / "local.yml", progress=None
    )
    lab = FakeLab(fps=fps)
    assert execute(book, lab) == 0
    return plan, lab


def test_repeats_auto_stops_once_every_interval_is_narrow(tmp_path):
    # repeat r measures 100 +- 3 (alternating), so the interval of r repeats is narrow
    # three: t(2) * s / sqrt(3) = 4.3 * 3.5 / 1.7 = 8.6% > 5%; four: 3.2*3.5/2 = 5.5%;
    # five: 2.78 * 3.0 / 2.2 = 3.7%. The run must stop at five rounds, not go to six.
    noise = [3.0, -3.0, 3.0, -3.0, 0.0, 3.0]

    def fps(point: Point) -> float:
        return 100.0 + noise[point.repeat]

    plan, lab = _auto_run(tmp_path, fps)
    a, b = plan.servers
    rounds = [(p.server, p.repeat) for p in lab.loaded]
    assert rounds == [(kind, r) for r in range(len(rounds) // 2) for kind in (a, b)]
    repeats = len(rounds) // 2
    assert 2 < repeats < 6

    def halfwidth(n: int) -> float:
        return interval(
            from_repeats([fps(Point(a, "tiny", 1, 2, r)) for r in range(n)])
        ).relative_halfwidth

    assert halfwidth(repeats) <= 0.05 < halfwidth(repeats - 1)


def test_repeats_auto_gives_up_at_max_repeats(tmp_path):
    _, lab = _auto_run(tmp_path, lambda p: 100.0 + (40.0 if p.repeat % 2 else -40.0), 4)
    assert sorted({p.repeat for p in lab.loaded}) == [0, 1, 2, 3]


def test_the_listed_points_are_the_runs_order_with_every_repeat_auto_may_add(tmp_path):
    plan = smoke_plan(tmp_path, batches=[1], repeats="auto", max_repeats=3)
    listed = listed_points(plan)
    a, b = plan.servers
    assert [(p.server, p.repeat) for p in listed] == [(k, r) for r in range(3) for k in (a, b)]
    assert len(listed) == scheduler_for(plan).total
