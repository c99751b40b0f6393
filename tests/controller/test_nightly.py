"""`servelab nightly` and playbooks/nightly.yml: the lock, the log, the verdict's delivery
and exit status, and the schedule installed and removed on this machine.

The thing under the lock is a stand-in for lab.yml (support/fake_lab.py) that writes a
prepared run; the lock, the history, the verdict, the webhook (a real HTTP server on
127.0.0.1) and the crontab are the real ones.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from servelab.controller.history import read_history, register
from servelab.controller.nightly import (
    EXIT_BAD_INPUT,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_REGRESSED,
    EXIT_RUN_PROBLEM,
    default_lab_command,
)
from tests.support.history import add_run, noisy_values, run_id
from tests.support.lab import BIN, PROJECT, command
from tests.support.results import PLAN

FAKE_LAB = Path(__file__).resolve().parents[1] / "support" / "fake_lab.py"
DROPPED = ("ref-openvino", "resnet_v2_50", 8)
DROPPED_SLUG = "ref-openvino-resnet_v2_50-b8-c4"


class Lab:
    """A results directory with a registered history, a plan file and a state directory."""

    def __init__(self, root: Path, history_runs: int = 10) -> None:
        self.root = root
        self.results = root / "results"
        self.state = root / "state"
        self.prepared = root / "prepared"
        self.marks = root / "marks.txt"
        self.plan = root / "plan.yml"
        self.plan.write_text(yaml.safe_dump(PLAN))
        self.rng = random.Random(11)
        for day in range(history_runs):
            register(add_run(self.results, day, noisy_values(self.rng, 0.02)), self.results)

    def prepare(self, *, drop: bool) -> Path:
        """The run the fake lab will 'measure' next (day 10), written outside results/."""
        values = noisy_values(self.rng, 0.02)
        if drop:
            values[DROPPED] *= 0.9
        return add_run(self.prepared, 10, values)

    def command(self, mark: str, *extra: str, lab: list[str] | None = None) -> list[str]:
        fake = [sys.executable, str(FAKE_LAB), "--mark", mark, "--marks", str(self.marks)]
        return [
            sys.executable,
            "-m",
            "servelab.controller",
            "nightly",
            "--plan",
            str(self.plan),
            "--results",
            str(self.results),
            "--state-dir",
            str(self.state),
            "--lab-command",
            shlex.join(fake + (lab or [])),
            *extra,
        ]

    def run(self, mark: str, *extra: str, lab: list[str] | None = None):
        return subprocess.run(
            self.command(mark, *extra, lab=lab),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def marks_seen(self) -> list[str]:
        return self.marks.read_text().split() if self.marks.exists() else []


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# The lock


def test_a_second_nightly_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    lab = Lab(tmp_path, history_runs=0)
    release = tmp_path / "release"
    first = subprocess.Popen(
        lab.command("first", lab=["--wait-for", str(release)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: lab.marks_seen() == ["first"])
        second = lab.run("second")
        assert second.returncode == EXIT_LOCKED
        assert "another nightly run holds" in second.stderr
        assert f"pid {first.pid}," in second.stderr  # the holder, named
        assert "refused" in second.stderr
        assert lab.marks_seen() == ["first"]  # the refused run ran nothing
    finally:
        release.touch()
        _, err = first.communicate(timeout=60)
    assert first.returncode == EXIT_RUN_PROBLEM, err  # the fake wrote no run
    third = lab.run("third")  # the lock went with its holder
    assert third.returncode != EXIT_LOCKED, third.stderr
    assert lab.marks_seen() == ["first", "third"]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    lab = Lab(tmp_path, history_runs=0)
    holder = subprocess.Popen(
        lab.command("killed", lab=["--wait-for", str(tmp_path / "never")]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: lab.marks_seen() == ["killed"])
        assert lab.run("refused").returncode == EXIT_LOCKED
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # the nightly and its lab command, no cleanup
        holder.wait(timeout=30)
    after = lab.run("after")
    assert after.returncode == EXIT_RUN_PROBLEM, after.stderr
    assert lab.marks_seen() == ["killed", "after"]


# ---------------------------------------------------------------------------
# The verdict: exit status, log, webhook, command


class _Hook(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.bodies.append((self.path, self.headers["Content-Type"], self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    _Hook.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/servelab", _Hook.bodies
    server.shutdown()
    server.server_close()


def test_a_regression_exits_1_and_the_webhook_and_command_get_the_verdict(tmp_path, webhook):
    url, bodies = webhook
    lab = Lab(tmp_path)
    prepared = lab.prepare(drop=True)
    received = tmp_path / "received.json"
    notify = shlex.join(
        [
            sys.executable,
            "-c",
            f"import sys; open({str(received)!r}, 'wb').write(sys.stdin.buffer.read())",
        ]
    )
    done = lab.run(
        "night", "--webhook", url, "--notify-command", notify, lab=["--copy", str(prepared)]
    )
    assert done.returncode == EXIT_REGRESSED, done.stdout + done.stderr
    ((path, content_type, body),) = bodies
    assert (path, content_type) == ("/servelab", "application/json")
    payload = json.loads(body)
    assert payload["status"] == "regressed"
    assert payload["regressed"] == [DROPPED_SLUG]
    assert payload["exit_status"] == EXIT_REGRESSED
    assert payload["run_id"] == run_id(10)
    (point,) = [p for p in payload["points"] if p["slug"] == DROPPED_SLUG]
    assert point["status"] == "regressed" and point["confidence"] >= 0.99
    assert point["change_pct"] < -5
    assert json.loads(received.read_bytes()) == payload  # the command got the same JSON
    # the run joined the history; its verdict.json says the same
    run_dir = lab.results / run_id(10)
    assert [r.run_id for r in read_history(lab.results)][-1] == run_id(10)
    assert json.loads((run_dir / "verdict.json").read_text())["regressed"] == [DROPPED_SLUG]
    assert "## Verdict against the history" in (run_dir / "report.md").read_text()
    # a log of its own, holding the lab command's output and the verdict
    log = Path(payload["log"])
    assert log.parent == lab.state / "nightly" / "logs"
    text = log.read_text()
    assert "fake lab night: plan" in text
    assert f"{DROPPED_SLUG}: REGRESSED" in text
    assert "nightly finished: exit status 1" in text


def test_no_regression_exits_0_with_a_log_per_run(tmp_path, webhook):
    url, bodies = webhook
    lab = Lab(tmp_path)
    prepared = lab.prepare(drop=False)
    done = lab.run("night", "--webhook", url, lab=["--copy", str(prepared)])
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    assert json.loads(bodies[0][2])["status"] == "no regression"
    again = lab.run("again", "--webhook", url)  # writes no run
    assert again.returncode == EXIT_RUN_PROBLEM
    assert json.loads(bodies[1][2])["status"] == "run failed"
    logs = sorted((lab.state / "nightly" / "logs").glob("*.log"))
    assert len(logs) == 2
    assert "fake lab night" in logs[0].read_text() or "fake lab night" in logs[1].read_text()


def test_a_failed_lab_run_without_regression_exits_3(tmp_path):
    lab = Lab(tmp_path)
    prepared = lab.prepare(drop=False)
    done = lab.run("night", lab=["--copy", str(prepared), "--exit", "2"])
    assert done.returncode == EXIT_RUN_PROBLEM
    assert "lab command exited 2" in done.stdout
    assert "verdict of 20261111T030000Z-synthetic: NO REGRESSION" in done.stdout


def test_an_unreachable_webhook_is_reported_and_leaves_the_verdict_alone(tmp_path):
    lab = Lab(tmp_path)
    prepared = lab.prepare(drop=True)
    done = lab.run("night", "--webhook", "http://127.0.0.1:9/none", lab=["--copy", str(prepared)])
    assert done.returncode == EXIT_REGRESSED
    assert "verdict not delivered: webhook http://127.0.0.1:9/none" in done.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--confidence", "1.5"], "confidence 1.5"),
        (["--webhook", "ftp://x"], "--webhook ftp://x"),
        (["--history-runs", "2"], "history_runs 2 is below min_history 3"),
    ],
)
def test_bad_input_exits_2_before_anything_runs(tmp_path, extra, message):
    lab = Lab(tmp_path, history_runs=0)
    done = lab.run("bad", *extra)
    assert done.returncode == EXIT_BAD_INPUT
    assert message in done.stderr
    assert lab.marks_seen() == []


def test_a_missing_plan_exits_2(tmp_path):
    lab = Lab(tmp_path, history_runs=0)
    lab.plan.unlink()
    assert lab.run("bad").returncode == EXIT_BAD_INPUT
    assert lab.marks_seen() == []


def test_the_default_lab_command_runs_lab_yml_with_the_plan_and_results(tmp_path):
    argv = default_lab_command(tmp_path / "p.yml", tmp_path / "r", {"servelab_state_dir": "/x"})
    assert argv[0] == str(BIN / "ansible-playbook")
    assert argv[1:] == [
        "lab.yml",
        "-e",
        f"servelab_plan_file={tmp_path / 'p.yml'}",
        "-e",
        f"servelab_results_dir={tmp_path / 'r'}",
        "-e",
        '{"servelab_state_dir": "/x"}',
    ]


# ---------------------------------------------------------------------------
# The schedule (playbooks/nightly.yml) on this machine: no systemd here, so cron

NAME = "servelab-nightly-test"


def _crontab() -> str | None:
    if shutil.which("crontab") is None:
        return None
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return listed.stdout if listed.returncode == 0 else None


def _playbook(**variables) -> tuple[int, str, dict[str, int]]:
    done = command(
        "ansible-playbook",
        "playbooks/nightly.yml",
        "-e",
        json.dumps({"servelab_nightly_name": NAME, **variables}),
        timeout_s=600,
        extra_env={"ANSIBLE_NOCOLOR": "1"},
    )
    match = re.search(r"^localhost\s+:\s+(ok=.*)$", done.stdout, re.MULTILINE)
    recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))} if match else {}
    return done.returncode, done.stdout + done.stderr, recap


@pytest.fixture
def crontab_restored():
    """Whatever root's crontab held before the test, it holds after."""
    original = _crontab()
    yield original
    if _crontab() != original and shutil.which("crontab"):
        if original is None:
            subprocess.run(["crontab", "-r"], capture_output=True, check=False)
        else:
            subprocess.run(["crontab", "-"], input=original, text=True, check=True)


def _entry(crontab: str | None) -> list[str]:
    lines = (crontab or "").splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line == f"#Ansible: {NAME}"]


def _others(crontab: str | None) -> list[str]:
    """Every line but this test's entry (its comment and the line after it)."""
    lines = (crontab or "").splitlines()
    ours = {i for i, line in enumerate(lines) if line == f"#Ansible: {NAME}"}
    return [line for i, line in enumerate(lines) if i not in ours and i - 1 not in ours]


@pytest.mark.skipif(os.path.isdir("/run/systemd/system"), reason="systemd here: a timer, not cron")
def test_the_schedule_is_installed_and_removed_idempotently(crontab_restored):
    variables = {
        "servelab_nightly_time": "04:17",
        "servelab_nightly_plan": "plans/smoke.yml",
        "servelab_nightly_webhook": "http://127.0.0.1:8080/hook?x=100%",
        "servelab_nightly_notify_command": "/usr/bin/logger -t servelab",
    }
    # the first run also installs cron where a fresh machine lacks it
    rc, output, recap = _playbook(**variables)
    assert rc == 0, output
    # a line of someone else's, which the schedule must leave where it is
    mine = (_crontab() or "") + "# kept: not servelab's\n"
    subprocess.run(["crontab", "-"], input=mine, text=True, check=True)
    others = _others(_crontab())
    assert "# kept: not servelab's" in others
    (entry,) = _entry(_crontab())
    timing, job = entry[: len("17 4 * * * ")], entry[len("17 4 * * * ") :]
    assert timing == "17 4 * * * "
    # the job, read back as cron's shell reads it (cron's \% is a literal %)
    words = shlex.split(job.replace("\\%", "%"))
    assert words[:3] == ["cd", str(PROJECT), "&&"]
    argv = words[3 : words.index(">>" + str(Path.home() / ".servelab" / "nightly" / "cron.log"))]
    assert argv[:2] == [str(PROJECT / ".venv" / "bin" / "servelab"), "nightly"]
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options["--plan"] == str(PROJECT / "plans" / "smoke.yml")
    assert options["--webhook"] == "http://127.0.0.1:8080/hook?x=100%"
    assert options["--notify-command"] == "/usr/bin/logger -t servelab"
    assert options["--history-runs"] == "10" and options["--confidence"] == "0.99"
    assert "\\%" in job  # unescaped, cron would cut the command at the %

    rc, output, recap = _playbook(**variables)
    assert rc == 0 and recap["changed"] == 0, output
    assert _others(_crontab()) == others  # what else the crontab held is kept

    rc, output, recap = _playbook(servelab_nightly_state="absent")
    assert rc == 0 and recap["changed"] == 1, output
    assert _entry(_crontab()) == []
    assert _others(_crontab()) == others
    rc, output, recap = _playbook(servelab_nightly_state="absent")
    assert rc == 0 and recap["changed"] == 0, output


def test_a_bad_time_fails_naming_the_variable(crontab_restored):
    rc, output, _ = _playbook(servelab_nightly_time="25:00")
    assert rc != 0
    assert "servelab_nightly_time HH:MM on a 24-hour clock (is 25:00)" in output
    assert _entry(_crontab()) == []


def test_a_missing_plan_fails_naming_the_variable(crontab_restored):
    rc, output, _ = _playbook(servelab_nightly_plan="plans/nope.yml")
    assert rc != 0
    assert f"servelab_nightly_plan: {PROJECT}/plans/nope.yml does not exist" in output
    assert _entry(_crontab()) == []


def test_the_systemd_units_carry_the_same_command_quoted_for_systemd(tmp_path):
    """No systemd here: render the play's unit templates with its own variables and read
    them back (systemd unquotes "..." like a shell, and reads %% as %)."""
    play = yaml.safe_load((PROJECT / "playbooks" / "nightly.yml").read_text())[0]
    variables = {
        **play["vars"],
        "servelab_nightly_time": "04:07",
        "servelab_nightly_webhook": "http://127.0.0.1:8080/hook?x=100%",
        "servelab_nightly_notify_command": 'logger -t "my tag"',
    }
    render = tmp_path / "render.yml"
    render.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render the nightly units",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": variables,
                    "tasks": [
                        {
                            "name": f"Render the {unit}",
                            "ansible.builtin.template": {
                                "src": str(
                                    PROJECT / "playbooks" / "templates" / f"nightly.{unit}.j2"
                                ),
                                "dest": str(tmp_path / f"nightly.{unit}"),
                                "mode": "0644",
                            },
                        }
                        for unit in ("service", "timer")
                    ],
                }
            ]
        )
    )
    done = command("ansible-playbook", str(render), timeout_s=300)
    assert done.returncode == 0, done.stdout + done.stderr
    service = (tmp_path / "nightly.service").read_text()
    (exec_start,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("%%", "%"))
    assert argv[:4] == [
        str(PROJECT / ".venv" / "bin" / "servelab"),
        "nightly",
        "--plan",
        str(PROJECT / "plans" / "quick.yml"),
    ]
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options["--webhook"] == "http://127.0.0.1:8080/hook?x=100%"
    assert options["--notify-command"] == 'logger -t "my tag"'
    assert "100%%" in exec_start  # a lone % would be a systemd specifier
    assert f"WorkingDirectory={PROJECT}" in service
    timer = (tmp_path / "nightly.timer").read_text()
    assert "OnCalendar=*-*-* 04:07:00" in timer
    assert "Unit=servelab-nightly.service" in timer
