"""How long a point's window lasts: the plan's duration, or longer until it holds enough requests.

MLPerf LoadGen's rule: a window lasts at least `window.duration_s` and goes on, up
to `window.max_duration_s`, until the point has the requests it needs. It needs
`validity.min_requests`, and as many as the validity rules need to judge it at
its number of clients: counting whole requests moves a rate by up to one request
per client, so HAProxy's check needs clients / proxy_tolerance requests and the
stability check 2 x clients x stability_intervals / max_spread (validity.py).

The pools on several client hosts cannot talk to each other, so they cannot stop
together once their counts add up; every pool is given the same window before the
load starts. Its length comes from the rate already seen for the same (kind, model,
batch), at an earlier concurrency or repeat. A window that still ends short (no
rate seen yet, or the rate fell) is measured again with a window long enough at
the rate it saw, capped at max_duration_s; only the last attempt is kept, and the
result says why its window is longer than the plan's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servelab.controller.plan import Point, Validity, Window

# The window asked is this much longer than the rate seen says it needs: a rate
# seen at a lower concurrency, or in a short window, is a rough guide.
MARGIN = 1.25


@dataclass
class WindowChoice:
    """The window a point was measured with, as results.json keeps it (`window_choice`)."""

    duration_s: float  # the window asked of the pools
    attempts: int  # how often the point was measured; only the last attempt is kept
    reason: str | None  # why the window is longer than the plan's duration_s; None if it is not


def requests_to_judge(validity: Validity, clients: int) -> int:
    """The fewest requests whose counting allowance fits inside the tolerances it is added to."""
    needed = 0
    if validity.proxy_tolerance > 0:
        needed = math.ceil(clients / validity.proxy_tolerance)
    if validity.max_spread > 0:
        per_interval = 2 * clients / validity.max_spread
        needed = max(needed, math.ceil(per_interval * validity.stability_intervals))
    return needed


def requests_needed(validity: Validity, clients: int) -> int:
    """What a point's window must hold: min_requests, and enough to be judged."""
    return max(validity.min_requests, requests_to_judge(validity, clients))


class WindowPlanner:
    """Chooses each point's window from the rates seen so far in the run."""

    def __init__(self, window: Window, validity: Validity) -> None:
        self.window = window
        self.validity = validity
        # (kind, model, batch) -> (requests/s, the point that showed it)
        self._rates: dict[tuple[str, str, int], tuple[float, Point]] = {}
        self._client_hosts = 1  # how many pools the last point ran; the first guess is one

    def _length(self, rate: float, needed: int) -> float:
        wanted = math.ceil(needed / rate * MARGIN)
        return float(min(self.window.max_duration_s, max(self.window.duration_s, wanted)))

    def first(self, point: Point) -> WindowChoice:
        """The window of a point's first attempt."""
        needed = requests_needed(self.validity, point.concurrency * self._client_hosts)
        seen = self._rates.get((point.server, point.model, point.batch))
        if seen is None:
            return WindowChoice(self.window.duration_s, 1, None)
        rate, where = seen
        length = self._length(rate, needed)
        if length <= self.window.duration_s:
            return WindowChoice(self.window.duration_s, 1, None)
        return WindowChoice(
            length,
            1,
            f"window {length:.0f} s, not {self.window.duration_s:g} s: {needed} requests needed,"
            f" and concurrency {where.concurrency} repeat {where.repeat} ran {rate:.2f}"
            " requests/s",
        )

    def learn(self, point: Point, requests: int, window_s: float, client_hosts: int) -> None:
        """Remember a measured window's rate for the next points of its configuration."""
        if client_hosts:
            self._client_hosts = client_hosts
        if requests > 0 and window_s > 0:
            self._rates[(point.server, point.model, point.batch)] = (requests / window_s, point)

    def again(
        self, point: Point, choice: WindowChoice, requests: int, window_s: float, client_hosts: int
    ) -> WindowChoice | None:
        """A longer window when this attempt ended short of what it needs; None to keep it."""
        needed = requests_needed(self.validity, point.concurrency * max(client_hosts, 1))
        if requests >= needed or requests <= 0 or window_s <= 0:
            return None
        if choice.duration_s >= self.window.max_duration_s:
            return None  # capped: the judge says the point has too few requests
        length = self._length(requests / window_s, needed)
        if length <= choice.duration_s:
            return None
        return WindowChoice(
            length,
            choice.attempts + 1,
            f"window lengthened to {length:.0f} s: a {window_s:.0f}-s window held {requests}"
            f" requests, {needed} needed (validity.min_requests {self.validity.min_requests},"
            " and enough to judge the rates)",
        )
