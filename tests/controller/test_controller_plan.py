"""Plan files: the shipped plans load, and each mistake gets a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from servelab.controller.plan import PlanError, load_plan

PLANS = Path(__file__).resolve().parents[2] / "plans"


@pytest.mark.parametrize("name", ["quick", "published", "smoke"])
def test_shipped_plans_load(name):
    plan = load_plan(PLANS / f"{name}.yml")
    assert plan.baseline in plan.servers
    points = list(plan.points())
    expected = (
        len(plan.servers)
        * len(plan.models)
        * len(plan.batches)
        * len(plan.concurrency)
        * plan.repeats
    )
    assert len(points) == expected
    # grouped by server kind, so each kind is started once
    servers = [p.server for p in points]
    assert servers == sorted(servers, key=plan.servers.index)


def test_the_published_plan_is_the_published_matrix():
    plan = load_plan(PLANS / "published.yml")
    assert plan.models == ("resnet_v1_50", "resnet_v2_50", "resnet_v1_152", "resnet_v2_152")
    assert plan.batches == (1, 8, 16, 32)


def _write(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((PLANS / "smoke.yml").read_text())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / "plan.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"servers": ["ref-openvino", "triton"]}, r"unknown server kind\(s\) \['triton'\]"),
        ({"baseline": "ovms"}, "baseline 'ovms' is not one of the plan's servers"),
        ({"batches": [1, 0]}, "'batches' holds 0; use positive integers"),
        ({"batches": []}, "'batches' must be a non-empty list"),
        ({"concurrency": ["4"]}, "'concurrency' holds '4'"),
        ({"models": None}, "'models' must be a non-empty list of names"),
        ({"repeats": 0}, "'repeats' is 0"),
        ({"window": {"warmup_s": 1, "duration_s": 0, "cooldown_s": 0}}, "window.duration_s"),
        ({"window": None}, "'window' must map"),
        ({"batch": [1]}, r"unknown key\(s\) \['batch'\]; allowed: \['name', 'description'"),
        (
            {"models": ["resnet50"]},
            r"unknown model\(s\) \['resnet50'\]; known: \['tiny', 'resnet_v1_50'",
        ),
        ({"window": {"warmup_s": 1, "duration_s": 2, "cooldown_s": 0, "cool": 1}}, "'cool'"),
        ({"validity": {"max_cpu": 0.5}}, r"validity: unknown key\(s\) \['max_cpu'\]"),
        ({"validity": {"max_client_cpu": 1.5}}, "max_client_cpu is 1.5; use a number from"),
        ({"validity": {"stability_intervals": 1}}, "stability_intervals is 1; use an integer >= 2"),
        ({"concurrency": {"sweep": {"start": 4, "max": 2}}}, "sweep.max is 2; use an integer >= 4"),
        ({"concurrency": {"sweep": {"max": 8, "factor": 1}}}, "sweep.factor is 1"),
        ({"concurrency": {"steps": [1]}}, r"concurrency: unknown key\(s\) \['steps'\]"),
        ({"schedule": "random"}, r"'schedule' is 'random'; use one of \['interleaved'"),
        ({"max_repeats": 4}, "'max_repeats' applies only with 'repeats: auto'"),
        ({"repeats": "auto", "max_repeats": 1}, "'max_repeats' is 1; use an integer >= 2"),
        ({"repeats": "many"}, "'repeats' is 'many'; use a positive integer or 'auto'"),
        ({"validity": {"max_ci_halfwidth": 0}}, "max_ci_halfwidth is 0; use a number from"),
        (
            {"repeats": "auto", "concurrency": {"sweep": {"max": 8}}},
            "'repeats: auto' does not combine with a concurrency sweep",
        ),
    ],
)
def test_mistakes_are_named(tmp_path, changes, message):
    with pytest.raises(PlanError, match=message) as raised:
        load_plan(_write(tmp_path, **changes))
    assert raised.value.exit_code == 2


def test_a_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(PlanError, match="cannot read plan"):
        load_plan(tmp_path / "absent.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("servers: [unclosed\n")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(broken)


def test_a_sweep_doubles_concurrency_up_to_its_bound(tmp_path):
    plan = load_plan(_write(tmp_path, concurrency={"sweep": {"start": 1, "max": 12}}))
    assert plan.concurrency == (1, 2, 4, 8)
    assert plan.sweep.min_gain == 0.05
    assert {p.concurrency for p in plan.points()} == {1, 2, 4, 8}


def test_validity_bounds_default_and_can_be_set(tmp_path):
    plan = load_plan(_write(tmp_path, validity={"max_client_cpu": 0.3}))
    assert plan.validity.max_client_cpu == 0.3
    assert plan.validity.proxy_tolerance == 0.05


def test_repeats_auto_and_the_schedule_defaults(tmp_path):
    auto = load_plan(_write(tmp_path, repeats="auto"))
    assert (auto.repeats, auto.max_repeats, auto.most_repeats) == (2, 6, 6)
    assert auto.schedule == "interleaved" and auto.validity.max_ci_halfwidth == 0.05
    assert load_plan(_write(tmp_path, repeats=1)).schedule == "sequential"
    kept = load_plan(_write(tmp_path, repeats=3, schedule="sequential"))
    assert (kept.schedule, kept.max_repeats) == ("sequential", None)
