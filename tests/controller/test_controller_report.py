"""The report of a run: the numbers it states, the files it writes, and how it fails.

Every expected figure is computed here by hand from the synthetic inputs (median of
the valid repeats, the best concurrency, a ratio), never by the code under test.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from servelab.controller import cli
from servelab.controller.report import KIND_COLOURS, ReportError, build_report
from tests.support.chromium import dump_dom, require_chromium, screenshot
from tests.support.results import PLAN, point, run_document, write_run

OV, TF = "ref-openvino", "ref-tensorflow"  # TF is the plan's baseline
V1, V2 = "resnet_v1_50", "resnet_v2_50"
INVALID_REASON = "errors: {'UNAVAILABLE': 3}"
D = "\u2013"  # the en dash the report shows where a number does not exist
FAILED_REASON = "playbooks/phases/serve.yml failed: ref-tensorflow did not come up"

# (kind, model, batch, concurrency) -> frames/s of each repeat; "invalid:<fps>" and
# "failed" mark the repeats that must stay out of every gain.
REPEATS: dict[tuple[str, str, int, int], list[float | str]] = {
    (TF, V1, 1, 4): [20.0, 22.0, 21.0],
    (TF, V1, 8, 4): [30.0, 34.0],
    (OV, V1, 1, 4): [57.0, 59.0, "invalid:1000.0"],
    (OV, V1, 8, 4): [90.0, 94.0],
    (OV, V1, 8, 2): [95.0, 97.0],  # the better concurrency: its median wins
    (TF, V2, 1, 4): [15.0, 16.0],
    (TF, V2, 8, 4): ["failed", "failed"],  # no baseline at V2 batch 8
    (OV, V2, 1, 4): [40.0, 41.0],
    (OV, V2, 8, 4): [70.0, 72.0],
}
IN_PROCESS_FPS = {(V1, 1): 64.0, (V1, 8): 120.0, (V2, 1): 50.0, (V2, 8): 80.0}
PLAN_2C = {**PLAN, "concurrency": [2, 4], "repeats": 3}


def _points() -> list[dict]:
    points = []
    for (kind, model, batch, conc), values in REPEATS.items():
        for repeat, value in enumerate(values):
            ceiling = IN_PROCESS_FPS[(model, batch)] if kind == OV else None
            common = {"concurrency": conc, "repeat": repeat, "in_process_fps": ceiling}
            if value == "failed":
                failed = {"status": "failed", "reasons": [FAILED_REASON]}
                points.append(point(kind, model, batch, fps=None, **common, **failed))
            elif isinstance(value, str):
                fps = float(value.split(":")[1])
                points.append(
                    point(
                        kind,
                        model,
                        batch,
                        fps=fps,
                        valid=False,
                        reasons=[INVALID_REASON],
                        errors={"UNAVAILABLE": 3},
                        **common,
                    )
                )
            else:
                p99 = 50.0 + repeat
                points.append(point(kind, model, batch, fps=value, p99_ms=p99, **common))
    return points


def _document(**kwargs) -> dict:
    return run_document(
        _points(),
        plan=PLAN_2C,
        failures=[f"ref-tensorflow-resnet_v2_50-b8-c4-r0: {FAILED_REASON}"],
        **kwargs,
    )


def _best(kind: str, model: str, batch: int) -> tuple[float, int] | None:
    """By hand: the median of valid repeats per concurrency, the best concurrency's."""
    medians = []
    for (k, m, b, conc), values in REPEATS.items():
        valid = [v for v in values if isinstance(v, float)]
        if (k, m, b) == (kind, model, batch) and valid:
            medians.append((statistics.median(valid), conc))
    return max(medians) if medians else None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    run_dir = write_run(tmp_path_factory.mktemp("report") / "run", _document())
    return run_dir, build_report(run_dir)


def _lines(run_dir: Path) -> list[str]:
    """report.md's lines with each 95% interval left out (their own tests check them)."""
    text = (run_dir / "report.md").read_text()
    return INTERVAL.sub("", text).splitlines()


# an interval after a figure, or in its own cell: "(128.0 to 146.1%, n = 3)", an en dash
INTERVAL = re.compile(rf" ?\((?:no interval|[-0-9.]+{D}[-0-9.]+(?: frames/s|%), n = \d+)\)")


def test_the_best_concurrency_and_the_medians_are_what_the_hand_computation_says():
    # Guards the test's own arithmetic: the invalid 1000 frames/s must not be in a median.
    assert _best(OV, V1, 1) == (58.0, 4)
    assert _best(OV, V1, 8) == (96.0, 2)
    assert _best(TF, V2, 8) is None


def test_gains_relative_to_the_baseline_equal_the_hand_computed_ones(built):
    run_dir, _ = built
    lines = _lines(run_dir)
    for model in (V1, V2):
        for batch in (1, 8):
            for kind in (OV, TF):
                best, base = _best(kind, model, batch), _best(TF, model, batch)
                if best is None:
                    continue
                fps, conc = best
                repeats = REPEATS[(kind, model, batch, conc)]
                valid, total = sum(isinstance(v, float) for v in repeats), len(repeats)
                gain = f"{100 * fps / base[0]:.1f}%" if base else D
                cells = (
                    f"{model} | {batch} | {kind} | {conc} | {valid}/{total} | {fps:.1f} | | {gain}"
                )
                row = f"| {cells} |"
                assert row in lines, row
    # The published shape: one matrix per kind against the baseline, models by batch sizes.
    assert f"| {V1} | {100 * 58 / 21:.1f}% | {100 * 96 / 32:.1f}% |" in lines
    assert f"| {V2} | {100 * 40.5 / 15.5:.1f}% | {D} |" in lines
    assert "| resnet_v1_50 | 1 | ref-openvino | 4 | 2/3 | 58.0 | | 276.2% |" in lines
    assert "| resnet_v1_50 | 8 | ref-openvino | 2 | 2/2 | 96.0 | | 300.0% |" in lines


def _fieller_by_hand(num: list[float], den: list[float], t: float) -> tuple[float, float]:
    """Fieller's bounds for mean(num) / mean(den), two repeats a side, at quantile t."""
    a, b = statistics.fmean(num), statistics.fmean(den)
    va, vb = statistics.variance(num) / 2, statistics.variance(den) / 2
    root = ((a * b) ** 2 - (b * b - t * t * vb) * (a * a - t * t * va)) ** 0.5
    return (a * b - root) / (b * b - t * t * vb), (a * b + root) / (b * b - t * t * vb)


def test_gains_carry_fiellers_interval_in_the_report_json_and_csv(built):
    run_dir, _ = built
    text = (run_dir / "report.md").read_text()
    # OV V1 b8 (c2) over TF V1 b8: Welch's df of two 2-repeat sides lies from 1 to 2, so
    # the bounds lie between Fieller's at t(2) = 4.303 and at t(1) = 12.706
    narrow = _fieller_by_hand([95.0, 97.0], [30.0, 34.0], 4.3027)
    wide = _fieller_by_hand([95.0, 97.0], [30.0, 34.0], 12.7062)
    found = re.search(
        rf"\| {V1} \| 276\.2% \([^)]*\) \| 300\.0% \(([0-9.]+){D}([0-9.]+)%, n = 2\) \|", text
    )
    assert found, "the gain matrix's batch-8 cell"
    low, high = float(found[1]) / 100, float(found[2]) / 100
    assert wide[0] - 1e-3 <= low <= narrow[0] + 1e-3 and narrow[1] - 1e-3 <= high <= wide[1] + 1e-3
    # results.json's intervals and results.csv carry the same bounds
    document = json.loads((run_dir / "results.json").read_text())
    gain = next(
        g
        for g in document["intervals"]["gains"]
        if (g["server"], g["model"], g["batch"], g["reference_batch"]) == (OV, V1, 8, 8)
    )
    assert gain["low_percent"] == pytest.approx(100 * low, abs=0.06) and gain["samples"] == 2
    with (run_dir / "results.csv").open(newline="") as f:
        rows = [
            r for r in csv.DictReader(f) if (r["server"], r["model"], r["batch"]) == (OV, V1, "8")
        ]
    best = [r for r in rows if r["concurrency"] == "2"]
    assert float(best[0]["gain_high_percent"]) == pytest.approx(gain["high_percent"])
    assert all(r["gain_percent"] == "" for r in rows if r["concurrency"] == "4")


def test_the_report_leads_with_the_gains_then_the_chart(built):
    text = (built[0] / "report.md").read_text()
    gains = text.index("## Throughput relative to the baseline")
    chart = text.index("## Throughput per model, with 95% intervals")
    assert gains < chart < text.index("## Each configuration relative to the baseline at batch 1")
    # every configuration here has two repeats: t(1) makes each interval wider than 5%
    assert "**Intervals wider than ±5.0%**" in text
    assert f"- {OV} {V1} batch 8 concurrency 2: ±" in text


def test_what_100_percent_means_is_stated(built):
    text = (built[0] / "report.md").read_text()
    assert "100% = the same throughput as `ref-tensorflow`" in text
    assert "100% = `ref-tensorflow` at batch 1" in text


def test_each_configuration_relative_to_the_baseline_at_batch_1(built):
    lines = _lines(built[0])
    for model in (V1, V2):
        reference = _best(TF, model, 1)[0]
        for kind in (OV, TF):
            cells = []
            for batch in (1, 8):
                best = _best(kind, model, batch)
                cells.append(f"{100 * best[0] / reference:.1f}%" if best else D)
            row = f"| {model} | {kind} | {cells[0]} | {cells[1]} |"
            assert row in lines, row
    assert f"| {V1} | {OV} | 276.2% | 457.1% |" in lines  # 58/21 and 96/21


def test_a_cell_without_valid_data_is_a_dash_with_a_footnote(built):
    text = (built[0] / "report.md").read_text()
    assert f"| resnet_v2_50 | 8 | ref-tensorflow | {D} | {D} | {D} | {D} |" in text
    assert f"- {D} baseline ref-tensorflow resnet_v2_50 batch 8: no valid point (2 failed)" in text
    assert f"- {D} ref-tensorflow resnet_v2_50 batch 8: no valid point (2 failed)" in text


def test_invalid_and_failed_points_are_listed_with_their_reasons(built):
    text = (built[0] / "report.md").read_text()
    values = [v for vs in REPEATS.values() for v in vs]
    valid = sum(isinstance(v, float) for v in values)
    assert (valid, len(values)) == (17, 20)
    assert f"**Points:** 20 in all: {valid} valid, 1 invalid, 2 failed; 1 phase failure(s)" in text
    section = text.split("## Invalid and failed points")[1].split("## Provenance")[0]
    assert (
        f"- **ref-openvino resnet_v1_50 batch 1 concurrency 4 repeat 2**: INVALID: {INVALID_REASON}"
        in section
    )
    for repeat in (0, 1):
        assert (
            f"- **ref-tensorflow resnet_v2_50 batch 8 concurrency 4 repeat {repeat}**: "
            f"FAILED: {FAILED_REASON}" in section
        )
    assert f"- ref-tensorflow-resnet_v2_50-b8-c4-r0: {FAILED_REASON}" in section
    # The invalid point is in the table of every point, marked, with its own numbers.
    row = next(line for line in text.splitlines() if "| 1000.0 |" in line)
    assert row.endswith(f"| INVALID: {INVALID_REASON} |")


def test_the_csv_has_a_row_per_point_with_the_inputs_numbers(built):
    run_dir, _ = built
    with (run_dir / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    document = json.loads((run_dir / "results.json").read_text())
    assert len(rows) == len(document["points"]) == sum(len(v) for v in REPEATS.values())
    for column in ("throughput_fps", "latency_p99_ms", "cpu_server_fraction", "window_duration_s"):
        assert column in rows[0]
    by_key = {(r["server"], r["model"], r["batch"], r["concurrency"], r["repeat"]): r for r in rows}
    for p in document["points"]:
        row = by_key[
            (p["server"], p["model"], str(p["batch"]), str(p["concurrency"]), str(p["repeat"]))
        ]
        assert row["status"] == p["status"]
        assert row["valid"] == ("true" if p["valid"] else "false")
        assert row["reasons"] == "; ".join(p["reasons"])
        if p["throughput_fps"] is None:
            assert (
                row["throughput_fps"] == row["latency_p99_ms"] == row["cpu_server_fraction"] == ""
            )
            continue
        assert float(row["throughput_fps"]) == p["throughput_fps"]
        assert float(row["latency_p99_ms"]) == p["latency_ms"]["p99"]
        assert float(row["proxy_requests_per_s"]) == p["proxy"]["requests_per_s"]
        assert int(row["errors_total"]) == sum(p["errors"].values())
        if p["in_process_fps"]:
            expected = p["throughput_fps"] / p["in_process_fps"]
            assert float(row["served_fraction_of_in_process"]) == pytest.approx(expected)
        else:
            assert row["served_fraction_of_in_process"] == ""


def test_served_fraction_and_cpu_are_shown_per_point(built):
    lines = _lines(built[0])
    # ref-openvino resnet_v1_50 batch 8 c2 repeat 1: 97 / 120 frames/s in-process.
    row = next(
        line for line in lines if line.startswith("| ref-openvino | resnet_v1_50 | 8 | 2 | 1 |")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "97.0"
    assert cells[12] == f"{100 * 97 / 120:.1f}%"
    assert cells[13:15] == ["90%", "20%"]  # CPU of the server and client platforms
    assert cells[11] == f"{97 / 8 * 1.01:.1f}"  # the proxy's requests/s


def test_files_and_charts_are_written(built):
    run_dir, paths = built
    names = {p.relative_to(run_dir).as_posix() for p in paths}
    assert {"results.csv", "report.md", "report.html"} <= names
    charts = sorted(n for n in names if n.startswith("charts/"))
    assert charts == sorted(
        [
            "charts/throughput_batch_1.png",
            "charts/throughput_batch_8.png",
            f"charts/throughput_vs_batch_{V1}.png",
            f"charts/throughput_vs_batch_{V2}.png",
            f"charts/latency_{V1}.png",
            f"charts/latency_{V2}.png",
        ]
    )
    for name in charts:
        path = run_dir / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000
        with Image.open(path) as image:
            assert image.width >= 600 and image.height >= 300
            colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
        assert KIND_COLOURS[OV] in {"#{:02x}{:02x}{:02x}".format(*c) for c in colours}, name
        assert f"({name})" in (run_dir / "report.md").read_text()


def test_the_report_is_deterministic(built, tmp_path):
    run_dir, paths = built
    again = write_run(tmp_path / "again", (run_dir / "results.json").read_text())
    second = build_report(again)
    assert [p.relative_to(again) for p in second] == [p.relative_to(run_dir) for p in paths]
    for first, other in zip(paths, second, strict=True):
        assert first.read_bytes() == other.read_bytes(), first.name
    # Rebuilding in place gives the same bytes too.
    before = {p: p.read_bytes() for p in second}
    build_report(again)
    assert {p: p.read_bytes() for p in second} == before


def test_the_html_is_self_contained(built):
    html = (built[0] / "report.html").read_text()
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html
    sources, links = [], []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if "src" in attrs:
                sources.append(attrs["src"])
            if "href" in attrs:
                links.append(attrs["href"])

    Collect().feed(html)
    assert len(sources) == 6
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(link.startswith("#") for link in links)
    # The same numbers as the Markdown.
    assert '<td class="num">300.0% (' in html
    assert "INVALID: errors: {&#39;UNAVAILABLE&#39;: 3}" in html


def test_kinds_are_named_as_they_are(built):
    for name in ("report.md", "report.html"):
        text = (built[0] / name).read_text()
        assert "ref-openvino" in text
        for other in ("OVMS", "OpenVINO Model Server", "TF Serving", "TensorFlow Serving"):
            assert other not in text, (name, other)


def test_a_sparse_or_unfinished_run_is_reported_with_dashes(tmp_path):
    sparse = {"server": OV, "model": V1, "batch": 1, "concurrency": 2, "repeat": 0}
    sparse.update(throughput_fps=12.5, valid=True, reasons=[])
    null = {**sparse, "repeat": 1, "throughput_fps": None, "valid": False}
    null.update(latency_ms=None, proxy=None, cpu=None, errors=None, reasons=["nothing completed"])
    document = run_document([sparse, null], finished=None)
    del document["run"]["versions"]
    # Ansible's templated facts may arrive as strings of digits; other host fields missing.
    host = {"name": "server", "cores": "8", "memory_bytes": str(32 * 2**30)}
    document["run"]["hosts"] = {"server": [host], "client": None}
    paths = build_report(write_run(tmp_path / "run", document))
    text = (tmp_path / "run" / "report.md").read_text()
    assert "**Finished:** unfinished" in text
    assert (
        "| ref-openvino | resnet_v1_50 | 1 | 2 | 0 | 12.5 | " + " | ".join([D] * 10) + " | valid |"
        in text
    )
    assert (
        f"- {D} baseline ref-tensorflow resnet_v1_50 batch 1: no valid point (not measured)" in text
    )
    assert f"| server | server | {D} | {D} | 8 | 32.0 GiB | {D} | {D} |" in text
    assert "results.json records no versions." in text
    assert any(p.name == "report.html" for p in paths)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"run": {"id": "x", "plan": {}}}), "has no 'points'"),
        (json.dumps({"points": []}), "has no 'run'"),
        (json.dumps([1, 2]), "the document is a list; expected an object"),
        (json.dumps({"run": {"id": "x", "plan": {}}, "points": {}}), "'points' is an object"),
        (json.dumps({"run": {"id": "x"}, "points": []}), "run.plan is missing"),
        (
            json.dumps({"run": {"id": "x", "plan": {}}, "points": [{"server": "a", "model": "m"}]}),
            "points[0] has no 'batch'",
        ),
        (
            json.dumps(
                {
                    "run": {"id": "x", "plan": {}},
                    "points": [
                        {"server": "a", "model": "m", "batch": 1, "concurrency": 1},
                        {
                            "server": "a",
                            "model": "m",
                            "batch": 1,
                            "concurrency": 1,
                            "throughput_fps": "fast",
                        },
                    ],
                }
            ),
            "points[1].throughput_fps is a string",
        ),
    ],
)
def test_a_malformed_results_json_is_an_error_naming_the_file(tmp_path, text, message):
    run_dir = write_run(tmp_path / "run", text)
    with pytest.raises(ReportError) as caught:
        build_report(run_dir)
    assert str(run_dir / "results.json") in str(caught.value)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_servelab_report_prints_the_files_and_exits_0(built, tmp_path, capsys):
    run_dir = write_run(tmp_path / "run", (built[0] / "results.json").read_text())
    assert cli.main(["report", str(run_dir)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[:3] == [str(run_dir / n) for n in ("results.csv", "report.md", "report.html")]
    assert all(Path(p).is_file() for p in printed)


def test_servelab_report_defaults_to_the_latest_run():
    from servelab.controller.phases import PROJECT_DIR

    args = cli.build_parser().parse_args(["report"])
    assert args.run_dir == PROJECT_DIR / "results" / "latest"


def test_free_text_cannot_break_a_markdown_table(tmp_path):
    reason = "proxy | clients disagree <by 3%>\nsecond line"
    document = run_document([point(OV, V1, 1, fps=10.0, valid=False, reasons=[reason])])
    build_report(write_run(tmp_path / "run", document))
    row = next(
        line
        for line in (tmp_path / "run" / "report.md").read_text().splitlines()
        if line.startswith("| ref-openvino | resnet_v1_50 | 1 |")
    )
    assert row.endswith("| INVALID: proxy \\| clients disagree \\<by 3%> second line |")
    html = (tmp_path / "run" / "report.html").read_text()
    assert "INVALID: proxy | clients disagree &lt;by 3%&gt;" in html


def test_servelab_report_exits_2_with_one_line_for_bad_input(tmp_path):
    bad = write_run(tmp_path / "bad", json.dumps({"run": {}}))
    for target, message in (
        (tmp_path / "missing", f"{tmp_path / 'missing'}: no such run directory"),
        (tmp_path, f"{tmp_path / 'results.json'}: no such file"),
        (bad, f"{bad / 'results.json'}: has no 'points'"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "servelab.controller", "report", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"servelab: error: {message}")
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# ---------------------------------------------------------------------------
# The HTML as a browser shows it


def _pixels_near(image: Image.Image, hex_colour: str, tolerance: int = 8) -> int:
    target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        count
        for count, colour in image.getcolors(1 << 24)
        if all(abs(a - b) <= tolerance for a, b in zip(colour, target, strict=True))
    )


PAGE_HEIGHT = 5000


def test_chromium_renders_the_report_with_its_charts(built, tmp_path):
    chromium = require_chromium()
    page = built[0] / "report.html"
    shot = tmp_path / "report.png"
    # tall enough to hold every section down to the charts
    run = screenshot(chromium, page, shot, window=(1280, PAGE_HEIGHT))
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.is_file(), run.stderr[-2000:]
    assert run.load_failures == []
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
    assert rgb.size == (1280, PAGE_HEIGHT)
    colours = rgb.getcolors(1 << 24)
    white = sum(n for n, c in colours if min(c) >= 250)
    assert len(colours) > 100 and white < 0.97 * 1280 * PAGE_HEIGHT, "the page looks blank"
    # The charts' bars are drawn in the kinds' colours: many pixels of each, not a legend's few.
    for kind in (OV, TF):
        count = _pixels_near(rgb, KIND_COLOURS[kind])
        print(f"{kind}: {count} pixels of {KIND_COLOURS[kind]}")
        assert count > 5_000, f"the charts' {kind} bars are not on the screenshot"

    dom = dump_dom(chromium, page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.load_failures == []
    assert "servelab report: 20261123T101500Z-synthetic" in dom.stdout
    images = []

    class Images(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                images.append(dict(attrs).get("src") or "")

    Images().feed(dom.stdout)
    assert len(images) == 6
    assert all(src.startswith("data:image/png;base64,") for src in images)


def test_chromium_missing_skips_here_and_fails_in_ci(monkeypatch, tmp_path):
    import tests.support.chromium as chromium

    monkeypatch.setattr(chromium, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("SERVELAB_REQUIRE_DOCKER", raising=False)
    with pytest.raises(pytest.skip.Exception):
        chromium.require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Chromium is required in CI"):
        chromium.require_chromium()


def test_the_cpu_sets_stand_next_to_the_ceiling(tmp_path):
    pinned = {**point(OV, V1, 1, fps=60.0, in_process_fps=64.0), "in_process_cpus": "1"}
    pinned["cpu"] = {**pinned["cpu"], "lab_set": 0.42, "lab_set_cpus": 1}
    document = run_document([pinned])
    host = {"name": "server", "cores": "2", "cpus": {"server": "1", "lab": "0"}}
    shared = {"name": "client", "cpus": {"server": "0-1", "lab": "1", "may_overlap": True}}
    document["run"]["hosts"] = {"server": [host], "client": [shared]}
    build_report(write_run(tmp_path / "run", document))
    text = (tmp_path / "run" / "report.md").read_text()
    assert "The in-process ceiling ran on CPUs 1." in text
    assert "The lab set was at most 42% busy over 1 points (1 CPUs" in text
    assert "| server | server | 1 | 0 | none |" in text
    assert (
        "| client | client | 0-1 | 1 | allowed by the inventory: the lab may take the server's "
        "time |"
    ) in text
    html = (tmp_path / "run" / "report.html").read_text()
    assert "The\nin-process ceiling ran on CPUs 1." in html


def test_a_run_before_cpu_sets_shows_no_cpu_sets(built):
    assert "### CPU sets" not in (built[0] / "report.md").read_text()
