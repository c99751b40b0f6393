"""The verdict: each point of a new run against the same point in the run's recent history.

A synthetic history of ten nightly runs with seeded noise on eight points; the new run
either carries one injected 10% drop (exactly that point regresses, with its size and
confidence) or none (nothing regresses). Invalid points and short histories are not
judged, and say why. The false-alarm rate and the power are measured over many seeds.
"""

from __future__ import annotations

import json
import random
import statistics

import pytest

from servelab.controller.history import PointValue, read_history, register
from servelab.controller.intervals import from_repeats, interval, t_cdf
from servelab.controller.intervals import t_inverse as t_quantile
from servelab.controller.verdict import (
    IMPROVED,
    NOT_JUDGED,
    REGRESSED,
    UNCHANGED,
    Settings,
    judge_point,
    register_and_judge,
)
from tests.support.history import TRUE_FPS, add_run, noisy_values, run_id

CV = 0.02  # run-to-run noise of each point's throughput (coefficient of variation)
DROPPED = ("ref-openvino", "resnet_v2_50", 8)
DROPPED_SLUG = "ref-openvino-resnet_v2_50-b8-c4"


def _history(results, *, runs=10, cv=CV, seed=11):
    rng = random.Random(seed)
    for day in range(runs):
        register(add_run(results, day, noisy_values(rng, cv)), results)
    return rng


def _new_run(results, rng, *, drop=None, cv=CV, day=10, **options):
    values = noisy_values(rng, cv)
    if drop is not None:
        values[drop] *= 0.9
    return add_run(results, day, values, **options)


@pytest.mark.parametrize(
    ("p", "df", "table"),
    [(0.99, 9, 2.821), (0.975, 2, 4.303), (0.995, 9, 3.250), (0.975, 1, 12.706), (0.95, 30, 1.697)],
)
def test_student_t_quantiles_match_the_published_table(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-4)
    assert t_cdf(table, df) == pytest.approx(p, abs=1e-4)


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_one_injected_drop_of_ten_percent_is_the_one_regression(tmp_path, seed):
    results = tmp_path / "results"
    rng = _history(results, seed=seed)
    run_dir = _new_run(results, rng, drop=DROPPED)
    verdict = register_and_judge(run_dir, results)

    assert verdict.status == REGRESSED
    assert [p.slug for p in verdict.regressed] == [DROPPED_SLUG]
    (point,) = verdict.regressed
    assert len(point.history_fps) == 10
    assert point.change_pct == pytest.approx(
        100 * (point.throughput_fps / statistics.fmean(point.history_fps) - 1)
    )
    assert -16 < point.change_pct < -5  # a 10% drop, plus one run's noise
    assert point.confidence >= 0.99
    assert point.throughput_fps < point.expected_low_fps
    assert verdict.count(UNCHANGED) == len(TRUE_FPS) - 1
    # The verdict is written beside results.json, named with size and confidence.
    written = json.loads((run_dir / "verdict.json").read_text())
    assert written["status"] == REGRESSED
    assert written["regressed"] == [DROPPED_SLUG]
    (summary,) = [p["summary"] for p in written["points"] if p["slug"] == DROPPED_SLUG]
    assert summary.startswith(f"{DROPPED_SLUG}: REGRESSED {point.change_pct:+.1f}%")
    assert f"confidence {100 * point.confidence:.1f}%" in summary


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_the_same_history_without_the_drop_gives_no_regression(tmp_path, seed):
    results = tmp_path / "results"
    rng = _history(results, seed=seed)
    verdict = register_and_judge(_new_run(results, rng), results)
    assert verdict.status == "no regression"
    assert verdict.regressed == ()
    assert verdict.improved == ()
    assert verdict.count(UNCHANGED) == len(TRUE_FPS)
    for point in verdict.points:
        inside = point.expected_low_fps < point.throughput_fps < point.expected_high_fps
        if point.reason == "within the history's noise":
            assert inside and point.confidence < 0.99
        else:  # noise can step outside the range; the 5% minimum keeps it quiet
            assert point.reason == "outside the noise, but smaller than the 5% minimum"
            assert not inside and abs(point.change_pct) < 5


def test_a_point_invalid_in_the_new_run_is_not_judged_and_says_why(tmp_path):
    results = tmp_path / "results"
    rng = _history(results)
    reason = "client CPU 0.95 above the plan's 0.8"
    run_dir = _new_run(results, rng, drop=DROPPED, invalid={DROPPED: reason})
    verdict = register_and_judge(run_dir, results)
    (point,) = [p for p in verdict.points if p.slug == DROPPED_SLUG]
    assert point.status == NOT_JUDGED
    assert point.reason == f"invalid in this run: {reason}"
    assert point.confidence is None
    assert verdict.status == "no regression"  # the drop hides behind invalidity: not judged


def test_points_invalid_in_history_are_left_out_and_counted(tmp_path):
    results = tmp_path / "results"
    rng = random.Random(5)
    for day in range(10):
        # the dropped point is invalid on 8 of 10 nights: 2 valid values are too few
        invalid = {DROPPED: "errors: {'UNAVAILABLE': 3}"} if day >= 2 else {}
        register(add_run(results, day, noisy_values(rng, CV), invalid=invalid), results)
    verdict = register_and_judge(_new_run(results, rng, drop=DROPPED), results)
    (point,) = [p for p in verdict.points if p.slug == DROPPED_SLUG]
    assert point.status == NOT_JUDGED
    assert point.reason == (
        "history too short: 2 earlier valid runs of this point, 3 needed "
        "(8 earlier runs invalid there, left out)"
    )
    assert verdict.status == "no regression"


def test_invalid_history_runs_do_not_shrink_the_window(tmp_path):
    earlier = [
        (f"r{i}", PointValue("k", "m", 1, 1, 100.0 + i % 3, True, 1, 1, ())) for i in range(12)
    ]
    earlier[10] = ("r10", PointValue("k", "m", 1, 1, 5.0, False, 0, 1, ("errors",)))
    verdict = judge_point(
        PointValue("k", "m", 1, 1, 101.0, True, 1, 1, ()), earlier, Settings(history_runs=5)
    )
    assert verdict.history_runs == ("r6", "r7", "r8", "r9", "r11")  # the invalid r10 skipped
    assert verdict.history_skipped == 1
    assert 5.0 not in verdict.history_fps


def test_the_first_runs_are_not_judged_history_too_short(tmp_path):
    results = tmp_path / "results"
    rng = _history(results, runs=2)
    verdict = register_and_judge(_new_run(results, rng, drop=DROPPED, day=2), results)
    assert verdict.status == NOT_JUDGED
    assert {p.reason for p in verdict.points} == {
        "history too short: 2 earlier valid runs of this point, 3 needed"
    }
    first = register_and_judge(results / run_id(0), results)
    assert first.notes and "starts the history" in first.notes[0]


def test_a_small_change_in_a_quiet_history_is_certain_but_not_a_regression():
    rng = random.Random(3)
    earlier = [
        (f"r{i}", PointValue("k", "m", 1, 1, 100 * (1 + rng.gauss(0, 0.002)), True, 1, 1, ()))
        for i in range(10)
    ]
    verdict = judge_point(PointValue("k", "m", 1, 1, 97.0, True, 1, 1, ()), earlier, Settings())
    assert verdict.confidence > 0.999
    assert verdict.status == UNCHANGED
    assert verdict.reason == "outside the noise, but smaller than the 5% minimum"
    raised = judge_point(PointValue("k", "m", 1, 1, 110.0, True, 1, 1, ()), earlier, Settings())
    assert raised.status == IMPROVED


def test_runs_on_other_hosts_or_with_other_settings_are_another_history(tmp_path):
    results = tmp_path / "results"
    rng = _history(results)
    other_hosts = _new_run(results, rng, drop=DROPPED, hostname="lab-b")
    assert register_and_judge(other_hosts, results).status == NOT_JUDGED
    plan = json.loads((results / run_id(0) / "results.json").read_text())["run"]["plan"]
    longer = {**plan, "window": {**plan["window"], "duration_s": 60}}
    other_plan = _new_run(results, rng, drop=DROPPED, day=12, plan=longer)
    assert register_and_judge(other_plan, results).status == NOT_JUDGED
    # ...while a plan that only adds points keeps the history of the points it shares
    wider = {**plan, "description": "more batches", "batches": [1, 8, 16]}
    same_way = _new_run(results, rng, drop=DROPPED, day=13, plan=wider)
    assert [p.slug for p in register_and_judge(same_way, results).regressed] == [DROPPED_SLUG]


def test_the_verdict_names_the_versions_that_changed(tmp_path):
    results = tmp_path / "results"
    rng = _history(results)
    versions = {"ref-openvino": "refserver 0.1.0 openvino 2026.5.0", "ref-tensorflow": "x"}
    run_dir = _new_run(results, rng, drop=DROPPED, versions=versions)
    verdict = register_and_judge(run_dir, results)
    assert verdict.previous_run == run_id(9)
    assert (
        "servers: ref-openvino: refserver 0.1.0 openvino 2026.4.1 -> "
        "refserver 0.1.0 openvino 2026.5.0" in verdict.versions_changed
    )
    assert len(verdict.versions_changed) == 2
    assert [r.run_id for r in read_history(results)][-1] == run_id(10)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"confidence 1\.5"):
        Settings(confidence=1.5).check()
    with pytest.raises(ValueError, match="history_runs 2 is below min_history 3"):
        Settings(history_runs=2).check()


def _rates(cv: float, drop: float, nights: int) -> float:
    """The fraction of points that regress over many seeded nights of 10-run histories."""
    settings, flagged, points = Settings(), 0, 0
    for seed in range(nights):
        rng = random.Random(seed)
        for fps in TRUE_FPS.values():
            earlier = [
                (str(i), PointValue("k", "m", 1, 1, fps * (1 + rng.gauss(0, cv)), True, 1, 1, ()))
                for i in range(10)
            ]
            new = fps * (1 - drop) * (1 + rng.gauss(0, cv))
            value = PointValue("k", "m", 1, 1, new, True, 1, 1, ())
            flagged += judge_point(value, earlier, settings).status == REGRESSED
            points += 1
    return flagged / points


def test_ordinary_noise_rarely_alarms_and_a_real_drop_does():
    # Without a drop, the prediction interval makes false alarms at most 1 - confidence;
    # a 10% drop in 2% noise is found almost always, in 3% noise about two times in three.
    false_3 = _rates(0.03, 0.0, 250)
    false_2 = _rates(0.02, 0.0, 250)
    found_2 = _rates(0.02, 0.10, 250)
    found_3 = _rates(0.03, 0.10, 250)
    print(
        f"\nfalse alarms per point: {100 * false_2:.2f}% at 2% noise, {100 * false_3:.2f}% at 3%;"
        f" a 10% drop found: {100 * found_2:.1f}% at 2% noise, {100 * found_3:.1f}% at 3%"
    )
    assert false_3 <= 0.015  # 1 - confidence, give or take the sampling error of 2000 points
    assert false_2 <= 0.015
    assert found_2 >= 0.9
    assert found_3 >= 0.5


def _quiet_history() -> list[tuple[str, PointValue]]:
    rng = random.Random(5)
    return [
        (f"r{i}", PointValue("k", "m", 1, 1, 100 * (1 + rng.gauss(0, 0.01)), True, 1, 1, ()))
        for i in range(10)
    ]


def _run_of(repeats: list[float]) -> PointValue:
    """The new run's point as the history registers it, its interval from its repeats."""
    bounds = interval(from_repeats(repeats))
    median = statistics.median(repeats)
    return PointValue(
        "k",
        "m",
        1,
        1,
        median,
        True,
        len(repeats),
        len(repeats),
        (),
        low_fps=bounds.low,
        high_fps=bounds.high,
        interval_samples=len(repeats),
    )


def test_a_drop_inside_the_new_runs_own_interval_is_not_a_regression():
    # median 90 (-10%) against a 1%-quiet history, but its repeats scatter from 70 to 130:
    # the history's mean 100 lies inside the run's interval, so the drop is not called
    verdict = judge_point(_run_of([70.0, 90.0, 130.0]), _quiet_history(), Settings())
    assert verdict.confidence > 0.99 and verdict.change_pct < -5
    assert verdict.status == UNCHANGED
    assert "inside this run's 95% interval" in verdict.reason
    assert verdict.run_low_fps < 100 < verdict.run_high_fps


def test_a_drop_outside_both_the_history_and_the_runs_interval_is_a_regression():
    verdict = judge_point(_run_of([89.0, 90.0, 91.0]), _quiet_history(), Settings())
    assert verdict.status == REGRESSED
    assert verdict.run_high_fps < 100
    assert verdict.reason == "below the history's range and this run's interval"


def test_a_run_without_an_interval_is_judged_by_the_history_alone_and_says_so():
    value = PointValue(
        "k", "m", 1, 1, 90.0, True, 1, 1, (), interval_note="one repeat and no timeline"
    )
    verdict = judge_point(value, _quiet_history(), Settings())
    assert verdict.status == REGRESSED
    assert "no interval in this run (one repeat and no timeline)" in verdict.reason
