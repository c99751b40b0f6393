"""`servelab compare RUN_A RUN_B`: the change of every common point, and what cannot be compared.

Run B differs from run A by known amounts: one point +10%, one -5%, one invalid in B,
one only in A, one only in B. The medians are of the valid repeats only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servelab.controller import cli
from tests.support.results import point, run_document, write_run

OV, TF = "ref-openvino", "ref-tensorflow"
V1 = "resnet_v1_50"
CPU_REASON = "client CPU 0.95 above the plan's 0.8"


def _runs(tmp_path: Path) -> tuple[Path, Path]:
    a = [
        # +10%: A's median of its valid repeats is 51 (the invalid 500 stays out).
        point(OV, V1, 1, fps=50.0, repeat=0, p99_ms=20.0),
        point(OV, V1, 1, fps=52.0, repeat=1, p99_ms=22.0),
        point(OV, V1, 1, fps=500.0, repeat=2, valid=False, reasons=["errors: {'INTERNAL': 1}"]),
        point(TF, V1, 1, fps=20.0, p99_ms=90.0),  # -5%
        point(OV, V1, 8, fps=80.0, p99_ms=120.0),  # invalid in B
        point(TF, V1, 8, fps=30.0),  # only in A
    ]
    b = [
        point(OV, V1, 1, fps=56.1, p99_ms=19.0),
        point(TF, V1, 1, fps=19.0, p99_ms=95.0),
        point(OV, V1, 8, fps=90.0, p99_ms=100.0, valid=False, reasons=[CPU_REASON]),
        point(OV, V1, 16, fps=99.0),  # only in B
    ]
    return (
        write_run(tmp_path / "a", run_document(a, run_id="20261120T080000Z-quick")),
        write_run(tmp_path / "b", run_document(b, run_id="20261123T101500Z-quick")),
    )


def _json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    run_a, run_b = _runs(tmp_path)
    assert cli.main(["compare", str(run_a), str(run_b), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _find(document: dict, server: str, batch: int) -> dict:
    (found,) = [p for p in document["points"] if (p["server"], p["batch"]) == (server, batch)]
    return found


def test_json_gives_each_change_as_b_relative_to_a(tmp_path, capsys):
    document = _json(tmp_path, capsys)
    assert document["a"]["id"] == "20261120T080000Z-quick"
    assert document["b"]["id"] == "20261123T101500Z-quick"
    up = _find(document, OV, 1)
    assert up["in"] == "both"
    assert up["a"]["throughput_fps"] == 51.0  # median of 50 and 52; 500 was invalid
    assert (up["a"]["valid_repeats"], up["a"]["repeats"]) == (2, 3)
    assert up["b"]["throughput_fps"] == 56.1
    assert up["change_pct"] == pytest.approx(10.0)
    assert (up["a"]["p99_ms"], up["b"]["p99_ms"]) == (21.0, 19.0)
    down = _find(document, TF, 1)
    assert down["change_pct"] == pytest.approx(-5.0)
    assert (down["a"]["p99_ms"], down["b"]["p99_ms"]) == (90.0, 95.0)


def test_a_point_invalid_in_either_run_has_no_change_and_says_why(tmp_path, capsys):
    invalid = _find(_json(tmp_path, capsys), OV, 8)
    assert invalid["change_pct"] is None
    assert invalid["b"]["valid"] is False
    assert invalid["b"]["reasons"] == [CPU_REASON]
    assert invalid["note"] == f"INVALID in B: {CPU_REASON}"


def test_points_in_one_run_only_are_listed_as_such(tmp_path, capsys):
    document = _json(tmp_path, capsys)
    only_a, only_b = _find(document, TF, 8), _find(document, OV, 16)
    assert (only_a["in"], only_a["b"], only_a["change_pct"]) == ("a", None, None)
    assert only_a["note"] == "only in A"
    assert (only_b["in"], only_b["a"], only_b["note"]) == ("b", None, "only in B")
    assert len(document["points"]) == 5


def test_the_table_shows_the_same_figures(tmp_path, capsys):
    run_a, run_b = _runs(tmp_path)
    assert cli.main(["compare", str(run_a), str(run_b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("A: 20261120T080000Z-quick (plan synthetic)")
    assert lines[1].startswith("B: 20261123T101500Z-quick (plan synthetic)")
    rows = {tuple(line.split()[:3]): line for line in lines if line.startswith("ref-")}
    assert rows[(OV, V1, "1")].split()[3:9] == ["4", "51.0", "56.1", "+10.0%", "21.0", "19.0"]
    assert rows[(OV, V1, "1")].endswith("A: 1 of 3 repeats left out (errors: {'INTERNAL': 1})")
    assert rows[(TF, V1, "1")].split()[3:9] == ["4", "20.0", "19.0", "-5.0%", "90.0", "95.0"]
    assert rows[(OV, V1, "8")].split()[3:9] == ["4", "80.0", "(90.0)", "\u2013", "120.0", "(100.0)"]
    assert rows[(OV, V1, "8")].endswith(f"INVALID in B: {CPU_REASON}")
    assert rows[(TF, V1, "8")].endswith("only in A")
    assert rows[(OV, V1, "16")].endswith("only in B")
    # Fixed width: every row's change column ends at the same place as the header's.
    header = next(line for line in lines if line.startswith("server"))
    end = header.index("change") + len("change")
    assert all(rows[key][end - 1] in "%\u2013" for key in rows), rows


def test_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    run_a, _ = _runs(tmp_path)
    broken = write_run(tmp_path / "broken", "{not json")
    assert cli.main(["compare", str(run_a), str(broken)]) == 2
    assert f"servelab: error: {broken / 'results.json'}: not JSON" in capsys.readouterr().err
    missing = tmp_path / "missing"
    assert cli.main(["compare", str(missing), str(run_a)]) == 2
    assert f"servelab: error: {missing}: no such run directory or file" in capsys.readouterr().err


def _repeats(fps: list[float], server: str = OV) -> list[dict]:
    return [point(server, V1, 1, fps=v, repeat=r) for r, v in enumerate(fps)]


def test_a_change_inside_the_noise_is_said_to_be_so(tmp_path, capsys):
    # +4% in the medians, but the repeats scatter by +-8%: the interval holds 0
    a = write_run(tmp_path / "a", run_document(_repeats([92.0, 100.0, 108.0])))
    b = write_run(tmp_path / "b", run_document(_repeats([96.0, 104.0, 112.0])))
    assert cli.main(["compare", str(a), str(b), "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)["points"]
    assert found["change_pct"] == pytest.approx(4.0)
    assert found["change_low_pct"] < 0 < found["change_high_pct"]
    assert found["noise"] == "within the noise"


def test_a_change_beyond_the_noise_is_marked_in_the_table(tmp_path, capsys):
    a = write_run(tmp_path / "a", run_document(_repeats([99.0, 100.0, 101.0])))
    b = write_run(tmp_path / "b", run_document(_repeats([109.0, 110.0, 111.0])))
    assert cli.main(["compare", str(a), str(b)]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(OV)]
    cells = row.split()
    assert cells[6] == "+10.0%"
    low, high = (float(x.rstrip("%")) for x in cells[9].split("\u2013"))
    assert 0 < low < 10 < high
    assert cells[10:12] == ["3", "BEYOND"]


def test_an_older_run_without_timelines_has_no_interval_and_says_why(tmp_path, capsys):
    a = write_run(tmp_path / "a", run_document(_repeats([100.0])))
    b = write_run(tmp_path / "b", run_document(_repeats([120.0])))
    assert cli.main(["compare", str(a), str(b), "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)["points"]
    assert found["change_low_pct"] is None
    assert found["noise"].startswith("no interval in A: one repeat")
