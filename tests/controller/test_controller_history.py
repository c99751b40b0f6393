"""The history index (results/history.jsonl), `servelab history`, and the report's verdict.

Registering a run appends one record and writes nothing else in results/: older run
directories keep every byte. Writers from several processes never tear a line.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
from pathlib import Path

import pytest

from servelab.controller import cli
from servelab.controller.history import (
    HISTORY_FILE,
    HistoryError,
    read_history,
    register,
)
from servelab.controller.report import build_report
from servelab.controller.verdict import register_and_judge
from tests.support.history import add_run, noisy_values, run_id

DROPPED = ("ref-openvino", "resnet_v2_50", 8)
DROPPED_SLUG = "ref-openvino-resnet_v2_50-b8-c4"


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root: its sha256 and mtime."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _lines(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / HISTORY_FILE).read_text().splitlines()]


def test_a_finished_run_is_registered_with_its_provenance(tmp_path):
    results = tmp_path / "results"
    run_dir = add_run(results, 0, noisy_values(random.Random(1), 0.02))
    record = register(run_dir, results)
    (line,) = _lines(results)
    assert line["run_id"] == run_id(0) == record.run_id
    assert line["path"] == run_id(0)
    assert line["plan"] == "synthetic"
    assert line["git_commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert line["started"] == "2026-11-01T03:00:00+00:00"
    assert line["finished"] == "2026-11-01T03:40:00+00:00"
    assert line["versions"]["servers: ref-openvino"] == "refserver 0.1.0 openvino 2026.4.1"
    assert line["hosts"] == [
        "server: lab-a (Synthetic CPU @ 3.0GHz, 8 cores)",
        "client: lab-a (Synthetic CPU @ 3.0GHz, 8 cores)",
    ]
    assert len(line["plan_hash"]) == len(line["hosts_id"]) == 16
    assert len(line["points"]) == 8
    (p,) = [p for p in line["points"] if (p["server"], p["model"], p["batch"]) == DROPPED]
    assert p["valid"] and p["valid_repeats"] == p["repeats"] == 2
    assert p["concurrency"] == 4


def test_registering_touches_no_older_run_and_appends_only(tmp_path):
    results = tmp_path / "results"
    rng = random.Random(2)
    for day in range(3):
        register(add_run(results, day, noisy_values(rng, 0.02)), results)
    before = _tree(results)
    index_before = (results / HISTORY_FILE).read_bytes()
    new_run = add_run(results, 3, noisy_values(rng, 0.02))
    new_results = (new_run / "results.json").read_bytes()
    register_and_judge(new_run, results)
    after = _tree(results)
    for name, state in before.items():
        if name != HISTORY_FILE:
            assert after[name] == state, f"{name} was rewritten"
    # the index only grew: the old lines are its first bytes
    assert (results / HISTORY_FILE).read_bytes().startswith(index_before)
    assert len(_lines(results)) == 4
    assert (new_run / "results.json").read_bytes() == new_results  # the contract stays as is
    assert (new_run / "verdict.json").exists()


def test_registering_again_is_idempotent_and_a_resumed_run_supersedes(tmp_path):
    results = tmp_path / "results"
    run_dir = add_run(results, 0, noisy_values(random.Random(3), 0.02))
    register(run_dir, results)
    register(run_dir, results)
    assert len(_lines(results)) == 1
    document = json.loads((run_dir / "results.json").read_text())
    document["run"]["finished"] = "2026-11-01T05:00:00+00:00"  # finished again after a resume
    (run_dir / "results.json").write_text(json.dumps(document))
    register(run_dir, results)
    assert len(_lines(results)) == 2
    (record,) = read_history(results)
    assert record.finished == "2026-11-01T05:00:00+00:00"


def test_an_unfinished_run_is_not_registered(tmp_path):
    results = tmp_path / "results"
    run_dir = add_run(results, 0, noisy_values(random.Random(4), 0.02))
    document = json.loads((run_dir / "results.json").read_text())
    document["run"]["finished"] = None
    (run_dir / "results.json").write_text(json.dumps(document))
    with pytest.raises(HistoryError, match="has not finished"):
        register(run_dir, results)
    assert not (results / HISTORY_FILE).exists()


def _register_in_process(args: tuple[str, str]) -> str:
    run_dir, results = args
    return register(Path(run_dir), Path(results)).run_id


def test_runs_registered_at_once_from_many_processes_all_land_whole(tmp_path):
    results = tmp_path / "results"
    rng = random.Random(5)
    runs = [add_run(results, day, noisy_values(rng, 0.02)) for day in range(16)]
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        ids = pool.map(_register_in_process, [(str(r), str(results)) for r in runs])
    assert sorted(ids) == sorted(run_id(day) for day in range(16))
    assert sorted(line["run_id"] for line in _lines(results)) == sorted(ids)


def test_a_damaged_index_is_an_error_naming_the_line(tmp_path):
    results = tmp_path / "results"
    register(add_run(results, 0, noisy_values(random.Random(6), 0.02)), results)
    with (results / HISTORY_FILE).open("a") as index:
        index.write('{"run_id": "half a rec\n')
    with pytest.raises(HistoryError, match=rf"{HISTORY_FILE}:2: not a history record"):
        read_history(results)


def _judged_history(results: Path) -> Path:
    rng = random.Random(11)
    for day in range(10):
        invalid = {DROPPED: "errors: {'UNAVAILABLE': 2}"} if day == 4 else {}
        register(add_run(results, day, noisy_values(rng, 0.02), invalid=invalid), results)
    values = noisy_values(rng, 0.02)
    values[DROPPED] *= 0.9
    run_dir = add_run(results, 10, values)
    register_and_judge(run_dir, results)
    return run_dir


def test_history_lists_runs_and_a_points_trend(tmp_path, capsys):
    results = tmp_path / "results"
    _judged_history(results)
    assert cli.main(["history", "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:]] == [run_id(day) for day in range(11)]
    assert cli.main(["history", "--results", str(results), "--point", DROPPED_SLUG]) == 0
    trend = capsys.readouterr().out
    assert trend.count("INVALID: errors: {'UNAVAILABLE': 2}") == 1
    assert len([line for line in trend.splitlines() if line.startswith("  2026")]) == 11
    assert cli.main(["history", "--results", str(results), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 11


def test_history_refuses_an_unknown_point_naming_the_known_ones(tmp_path, capsys):
    results = tmp_path / "results"
    _judged_history(results)
    assert cli.main(["history", "--results", str(results), "--point", "nope-b1-c1"]) == 2
    err = capsys.readouterr().err
    assert "no run holds point 'nope-b1-c1'" in err
    assert DROPPED_SLUG in err


def test_history_draws_a_trend_chart_per_point(tmp_path, capsys):
    results = tmp_path / "results"
    _judged_history(results)
    charts = tmp_path / "charts"
    assert cli.main(["history", "--results", str(results), "--charts", str(charts)]) == 0
    pngs = sorted(charts.glob("trend_*.png"))
    assert len(pngs) == 8
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert charts / f"trend_{DROPPED_SLUG}.png" in pngs


def test_the_report_shows_the_verdict_and_a_trend_chart_per_point(tmp_path):
    results = tmp_path / "results"
    run_dir = _judged_history(results)
    paths = build_report(run_dir)
    trend_dir = run_dir / "charts" / "trend"
    pngs = sorted(trend_dir.glob("*.png"))
    assert len(pngs) == 8
    assert set(pngs) <= set(paths)
    markdown = (run_dir / "report.md").read_text()
    assert "## Verdict against the history" in markdown
    assert "**REGRESSED**: 1 regressed, 0 improved, 7 unchanged, 0 not judged." in markdown
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| {DROPPED_SLUG} ")]
    verdict = json.loads((run_dir / "verdict.json").read_text())
    (judged,) = [p for p in verdict["points"] if p["slug"] == DROPPED_SLUG]
    assert "| **regressed** |" in row
    assert f"| {judged['change_pct']:.1f}% |" in row
    assert f"| {100 * judged['confidence']:.1f}% |" in row
    assert f"](charts/trend/trend_{DROPPED_SLUG}.png)" in markdown
    html = (run_dir / "report.html").read_text()
    assert 'id="verdict"' in html
    assert html.count("data:image/png;base64,") >= 8 + 1


def test_a_report_without_a_verdict_has_no_verdict_section(tmp_path):
    run_dir = add_run(tmp_path / "results", 0, noisy_values(random.Random(7), 0.02))
    build_report(run_dir)
    assert "Verdict against the history" not in (run_dir / "report.md").read_text()
    assert not (run_dir / "charts" / "trend").exists()


def test_every_finished_servelab_run_joins_the_history_and_is_judged(tmp_path, capsys):
    """The run's own finish registers and judges; the lab is a fake (test_lab runs it)."""
    import time

    from servelab.controller.bookkeeping import RunBook
    from servelab.controller.run import execute
    from tests.controller.fake_phases import PROJECT, FakeLab, smoke_plan

    levels = [100.0, 102.0, 99.0, 101.0, 80.0]  # the fifth run drops 20%
    plan = smoke_plan(tmp_path, servers=["ref-openvino"], baseline="ref-openvino", batches=[1])
    results = tmp_path / "results"
    for level in levels:
        book = RunBook.start(
            plan, results, inventory=PROJECT / "inventory" / "local.yml", progress=None
        )
        lab = FakeLab(fps=lambda point, level=level: level)
        assert execute(book, lab) == 0, book.failures  # a regression leaves the exit status alone
        time.sleep(1.1)  # run ids are stamped to the second
    records = read_history(results)
    assert [r.points[0].throughput_fps for r in records] == [100.0, 102.0, 99.0, 101.0, 80.0]
    verdicts = [json.loads((results / r.path / "verdict.json").read_text()) for r in records]
    assert [v["status"] for v in verdicts] == ["not judged"] * 3 + ["no regression", "regressed"]
    assert verdicts[-1]["regressed"] == ["ref-openvino-tiny-b1-c2"]
    out = capsys.readouterr().out
    assert f"ref-openvino-tiny-b1-c2: REGRESSED {100 * (80 / 100.5 - 1):+.1f}%" in out
    assert (
        "## Verdict against the history" in (results / records[-1].path / "report.md").read_text()
    )


def test_a_damaged_index_costs_the_trend_charts_not_the_report(tmp_path):
    results = tmp_path / "results"
    run_dir = _judged_history(results)
    build_report(run_dir)
    assert len(list((run_dir / "charts" / "trend").glob("*.png"))) == 8
    with (results / HISTORY_FILE).open("a") as index:
        index.write("not json\n")
    build_report(run_dir)
    assert list((run_dir / "charts" / "trend").glob("*.png")) == []  # none left stale
    markdown = (run_dir / "report.md").read_text()
    assert "**REGRESSED**: 1 regressed" in markdown
    assert "### Trend per point" not in markdown


def test_a_plan_that_writes_out_its_defaults_measures_the_same_way():
    from servelab.controller.history import method_hash

    terse = {"name": "q", "window": {"warmup_s": 3, "duration_s": 10, "cooldown_s": 1}}
    spelled = {
        **terse,
        "description": "another description, more models",
        "models": ["resnet_v1_50", "resnet_v2_50"],
        "repeats": 1,
        "window": {"warmup_s": 3.0, "duration_s": 10.0, "cooldown_s": 1},
        "validity": {"max_client_cpu": 0.5, "stability_intervals": 4},
    }
    assert method_hash(terse) == method_hash(spelled)
    assert method_hash(terse) != method_hash({**terse, "repeats": 3})
    assert method_hash(terse) != method_hash({**terse, "validity": {"max_spread": 0.3}})


def test_a_plans_method_hash_is_the_one_earlier_versions_gave_it():
    """Histories kept before a validity bound was added still compare with runs after it."""
    from servelab.controller.history import method_hash

    plan = {
        "name": "quick",
        "servers": ["ref-openvino", "ref-tensorflow"],
        "baseline": "ref-tensorflow",
        "models": ["resnet_v1_50"],
        "batches": [1, 8],
        "concurrency": [2],
        "window": {"duration_s": 10},
    }
    # The digest commit 7640b42 (before min_scrape_coverage) gave this plan.
    assert method_hash(plan) == "f412c31f8e924b76"
    assert method_hash(plan) != method_hash({**plan, "validity": {"min_scrape_coverage": 0.5}})
