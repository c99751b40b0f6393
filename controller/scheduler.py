"""Which point the run measures next: a small interface, and the plan's strategies behind it.

A scheduler hands out steps one at a time (`next`) and hears each point's result
(`record`) before it is asked again, so a strategy may decide from what was measured:
today the plan's own order and the concurrency sweep; interleaved or adaptive repeats
and a search under a latency bound fit the same two methods. A step is either a point
to measure or a point the strategy gives up, with the reason shown for it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from servelab.controller.plan import Plan, Point, Sweep
from servelab.controller.results import PointResult


@dataclass(frozen=True)
class Step:
    point: Point
    skipped: str | None = None  # why this point is not measured; None: measure it


class Scheduler(Protocol):
    """The order of a run's points, decided as their results come in."""

    @property
    def total(self) -> int:
        """How many steps the run may take at most (the progress lines' n/total)."""
        ...

    def next(self) -> Step | None:
        """The next step; None when the run has nothing left to measure."""
        ...

    def record(self, result: PointResult) -> None:
        """The result of the point the last step named (measured now or before)."""
        ...


class _FedByResults:
    """A strategy written as a generator that reads the results recorded so far."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.results: dict[Point, PointResult] = {}
        self._steps = self._walk()

    @property
    def total(self) -> int:
        return len(list(self.plan.points()))

    def next(self) -> Step | None:
        return next(self._steps, None)

    def record(self, result: PointResult) -> None:
        self.results[result.point] = result

    def _walk(self) -> Iterator[Step]:
        raise NotImplementedError


class PlanOrder(_FedByResults):
    """Every point of the plan in the plan's order: each kind, model, batch, level, repeat."""

    def _walk(self) -> Iterator[Step]:
        for point in self.plan.points():
            yield Step(point)


class SweepOrder(_FedByResults):
    """Concurrency climbs per (kind, model, batch) until one more level stops paying.

    A level's throughput is the median of its valid repeats; the climb ends after
    the first level that adds less than `min_gain` over the best so far (or has no
    valid repeat), and the levels above it are skipped.
    """

    def __init__(self, plan: Plan, sweep: Sweep) -> None:
        super().__init__(plan)
        self.sweep = sweep

    def _level(self, points: list[Point]) -> float | None:
        rates = [
            r.throughput_fps
            for p in points
            if (r := self.results.get(p)) is not None and r.valid and r.throughput_fps is not None
        ]
        return statistics.median(rates) if rates else None

    def _walk(self) -> Iterator[Step]:
        repeats = range(self.plan.repeats)
        levels = self.plan.concurrency
        for server, model, batch in self.plan.configurations():
            best: float | None = None
            for index, concurrency in enumerate(levels):
                points = [Point(server, model, batch, concurrency, r) for r in repeats]
                for point in points:
                    yield Step(point)
                level = self._level(points)
                if level is None or (best is not None and level < best * (1 + self.sweep.min_gain)):
                    reason = f"the sweep stopped at concurrency {concurrency}"
                    for higher in levels[index + 1 :]:
                        for repeat in repeats:
                            yield Step(Point(server, model, batch, higher, repeat), reason)
                    break
                best = max(best or 0.0, level)


def scheduler_for(plan: Plan) -> Scheduler:
    """The plan's own strategy: a sweep when it asks for one, else its order."""
    return PlanOrder(plan) if plan.sweep is None else SweepOrder(plan, plan.sweep)
