"""Clock skew: the plan's bound, and the message a skewed lab gets before it measures.

The readings themselves come from a real Prometheus in tests/test_multihost.py; here
the rule that judges them, which a single machine's one clock cannot exercise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from servelab.controller.clocks import ClockOffset, ClockSkewError, check
from servelab.controller.plan import PlanError, load_plan

PLANS = Path(__file__).resolve().parents[2] / "plans"


def _offset(host: str, offset_ms: float, uncertainty_ms: float = 1.0) -> ClockOffset:
    return ClockOffset(host, "client", offset_ms, uncertainty_ms)


def test_clocks_within_the_bound_pass():
    check([_offset("client1", 12.0), _offset("server", -30.0)], max_skew_ms=50)


def test_a_skewed_host_is_named_with_its_direction_and_the_fix():
    offsets = [_offset("client1", 3.0), _offset("client2", -180.0, 2.0), _offset("x", 75.0)]
    with pytest.raises(ClockSkewError) as raised:
        check(offsets, max_skew_ms=50)
    message = str(raised.value)
    assert "client2 (client) is 180.0 ms behind the monitoring host (± 2.0 ms)" in message
    assert "x (client) is 75.0 ms ahead of" in message
    assert "client1" not in message
    assert "validity.max_clock_skew_ms 50" in message and "chrony or NTP" in message


def test_an_offset_inside_its_uncertainty_of_the_bound_is_not_blamed():
    # 60 ms measured to within 15 ms may be 45 ms: not proof of a skew beyond 50
    check([_offset("client1", 60.0, 15.0)], max_skew_ms=50)
    with pytest.raises(ClockSkewError):
        check([_offset("client1", 60.0, 5.0)], max_skew_ms=50)


def test_the_plan_defaults_and_checks_the_bound(tmp_path):
    data = yaml.safe_load((PLANS / "smoke.yml").read_text())
    plan = tmp_path / "plan.yml"
    plan.write_text(yaml.safe_dump(data))
    assert load_plan(plan).validity.max_clock_skew_ms == 50.0
    data["validity"]["max_clock_skew_ms"] = -5
    plan.write_text(yaml.safe_dump(data))
    with pytest.raises(PlanError, match=r"validity\.max_clock_skew_ms is -5; use a number"):
        load_plan(plan)
