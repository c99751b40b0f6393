"""Which point the run measures next: a small interface, and the plan's strategies behind it.

A scheduler hands out steps one at a time (`next`) and hears each point's result
(`record`) before it is asked again, so a strategy may decide from what was measured:
the plan's own order, repeats interleaved between kinds, repeats added until the
intervals are narrow (`repeats: auto`), and the concurrency sweep; a search under a
latency bound fits the same two methods. A step is either a point
to measure or a point the strategy gives up, with the reason shown for it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from servelab.controller.intervals import configuration_estimate, interval
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
        points = len(list(self.plan.points()))
        return points // self.plan.repeats * self.plan.most_repeats

    def narrow(self, points: list[Point]) -> bool:
        """Whether these repeats' valid throughputs give an interval within max_ci_halfwidth."""
        rates = [
            r.throughput_fps
            for p in points
            if (r := self.results.get(p)) is not None and r.counted and r.throughput_fps
        ]
        estimate, _ = configuration_estimate(rates)
        halfwidth = interval(estimate).relative_halfwidth if estimate else None
        return halfwidth is not None and halfwidth <= self.plan.validity.max_ci_halfwidth

    def next(self) -> Step | None:
        return next(self._steps, None)

    def record(self, result: PointResult) -> None:
        self.results[result.point] = result

    def _walk(self) -> Iterator[Step]:
        raise NotImplementedError


class PlanOrder(_FedByResults):
    """Every point of the plan in the plan's order: each kind, model, batch, level, repeat.

    With repeats: auto, a configuration's repeats go on, after the first ones, until
    its interval is narrow or it has max_repeats.
    """

    def _walk(self) -> Iterator[Step]:
        for server, model, batch in self.plan.configurations():
            for concurrency in self.plan.concurrency:
                done: list[Point] = []
                for repeat in range(self.plan.most_repeats):
                    if repeat >= self.plan.repeats and self.narrow(done):
                        break
                    done.append(Point(server, model, batch, concurrency, repeat))
                    yield Step(done[-1])


class InterleavedOrder(_FedByResults):
    """Per model, batch and level, the kinds alternate repeat by repeat: A B A B ...

    A slow drift of the machine then falls on every kind alike instead of on the
    kind measured last. With repeats: auto, another round of every kind follows
    while any kind's interval is still wide (a gain needs both sides narrow).
    """

    def _walk(self) -> Iterator[Step]:
        plan = self.plan
        for model in plan.models:
            for batch in plan.batches:
                for concurrency in plan.concurrency:
                    rounds: dict[str, list[Point]] = {kind: [] for kind in plan.servers}
                    for repeat in range(plan.most_repeats):
                        if repeat >= plan.repeats and all(map(self.narrow, rounds.values())):
                            break
                        for kind in plan.servers:
                            rounds[kind].append(Point(kind, model, batch, concurrency, repeat))
                            yield Step(rounds[kind][-1])


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
        if self.plan.schedule == "interleaved":
            yield from self._interleaved()
            return
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

    def _interleaved(self) -> Iterator[Step]:
        """Per model and batch the kinds climb together, alternating repeat by repeat.

        Each kind still stops on its own: once a kind's level stops paying, its
        higher levels are skipped while the other kinds go on climbing.
        """
        repeats = range(self.plan.repeats)
        levels = self.plan.concurrency
        for model in self.plan.models:
            for batch in self.plan.batches:
                best: dict[str, float] = {}
                climbing = list(self.plan.servers)
                for index, concurrency in enumerate(levels):
                    for repeat in repeats:
                        for kind in climbing:
                            yield Step(Point(kind, model, batch, concurrency, repeat))
                    for kind in list(climbing):
                        points = [Point(kind, model, batch, concurrency, r) for r in repeats]
                        level, top = self._level(points), best.get(kind)
                        if level is None or (
                            top is not None and level < top * (1 + self.sweep.min_gain)
                        ):
                            climbing.remove(kind)
                            reason = f"the sweep stopped at concurrency {concurrency}"
                            for higher in levels[index + 1 :]:
                                for r in repeats:
                                    yield Step(Point(kind, model, batch, higher, r), reason)
                        else:
                            best[kind] = max(top or 0.0, level)


def listed_points(plan: Plan) -> list[Point]:
    """The steps' points in the order the run takes them, as many as it may take
    (every repeat up to max_repeats; every level of a sweep)."""
    order, points = scheduler_for(plan), []
    while (step := order.next()) is not None:
        points.append(step.point)
    return points


def scheduler_for(plan: Plan) -> Scheduler:
    """The plan's own strategy: a sweep when it asks for one, else its schedule's order."""
    if plan.sweep is not None:
        return SweepOrder(plan, plan.sweep)
    return InterleavedOrder(plan) if plan.schedule == "interleaved" else PlanOrder(plan)
