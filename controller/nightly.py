"""`servelab nightly`: one scheduled run of the lab, under a lock, with a log and a verdict.

What playbooks/nightly.yml schedules. In order: take the lock (a second nightly
run while one is going is refused, naming the holder's pid), run `ansible-playbook
lab.yml` with the plan, its whole output in a log file of its own, find the run
it wrote, register it in the history and judge it (`servelab run` has already
done both when it finished; doing it again changes nothing), rebuild the report
with this verdict, send the verdict to the webhook or command, and exit with a
status that says whether a point regressed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from servelab.controller.argtypes import json_object
from servelab.controller.history import HistoryError
from servelab.controller.phases import PROJECT_DIR
from servelab.controller.plan import load_plan
from servelab.controller.results import ReportError
from servelab.controller.verdict import REGRESSED, Settings, Verdict, register_and_judge

EXIT_OK = 0  # the run finished cleanly and no point regressed
EXIT_REGRESSED = 1  # at least one point regressed
EXIT_BAD_INPUT = 2  # a bad plan, option or inventory: nothing was run
EXIT_RUN_PROBLEM = 3  # no regression found, but the lab run failed, or a point was invalid
EXIT_LOCKED = 4  # another nightly run holds the lock: this one did nothing
LOCK_FILE = "nightly.lock"
NOTIFY_TIMEOUT_S = 30.0
# cron's PATH is /usr/bin:/bin; the lab's roles call start-stop-daemon and friends.
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class NightlyError(ValueError):
    """Bad input to `servelab nightly`."""

    exit_code = EXIT_BAD_INPUT


class LockHeld(RuntimeError):
    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"another nightly run holds {path} ({holder}); this run is refused and does nothing"
        )


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """flock(2) on path, not waiting: LockHeld names the holder. The kernel drops the lock
    when its holder exits, however it exits, so a crashed run never blocks the next."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "pid unknown: it is just starting"
            raise LockHeld(path, holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {datetime.now(UTC).isoformat()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def lab_environment() -> dict[str, str]:
    """The environment of the lab command: the venv's tools first, the system's sbin dirs."""
    path = [str(Path(sys.executable).parent), *os.environ.get("PATH", "").split(os.pathsep)]
    path += [d for d in SYSTEM_PATH if d not in path]
    return {**os.environ, "PATH": os.pathsep.join(p for p in path if p), "ANSIBLE_NOCOLOR": "1"}


def default_lab_command(plan: Path, results: Path, extra_vars: dict[str, Any]) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "lab.yml",
        "-e",
        f"servelab_plan_file={plan}",
        "-e",
        f"servelab_results_dir={results}",
    ]
    return command + (["-e", json.dumps(extra_vars)] if extra_vars else [])


def _run_dirs(results: Path) -> set[Path]:
    if not results.is_dir():
        return set()
    return {p for p in results.iterdir() if p.is_dir() and not p.is_symlink()}


def find_new_run(results: Path, before: set[Path], plan_name: str) -> Path | None:
    """The run directory the lab command wrote: new since it started, of this plan."""
    found = []
    for run_dir in _run_dirs(results) - before:
        try:
            document = json.loads((run_dir / "results.json").read_text())
            name = document["run"]["plan"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if name == plan_name:
            found.append(run_dir)
    return max(found, default=None, key=lambda p: p.name)  # run ids start with their time


def notify(payload: dict[str, Any], webhook: str | None, command: list[str] | None) -> list[str]:
    """Send the verdict; what went wrong, in words (delivery never changes the exit status)."""
    problems = []
    body = json.dumps(payload, indent=2).encode()
    if webhook:
        request = urllib.request.Request(
            webhook, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT_S) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            problems.append(f"webhook {webhook}: {exc}")
    if command:
        try:
            done = subprocess.run(
                command, input=body, capture_output=True, timeout=NOTIFY_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                problems.append(
                    f"notify command exited {done.returncode}: "
                    f"{done.stderr.decode(errors='replace').strip()[:300]}"
                )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"notify command {command[0]}: {exc}")
    return problems


def exit_status(verdict: Verdict | None, lab_rc: int) -> int:
    """A regression first: it is what the night is for; then whether the run went well."""
    if verdict is not None and verdict.status == REGRESSED:
        return EXIT_REGRESSED
    if verdict is None or lab_rc != 0:
        return EXIT_RUN_PROBLEM
    return EXIT_OK


class Nightly:
    """One nightly run; every line it says goes to the terminal and to the run's log."""

    def __init__(self, args: argparse.Namespace, log: IO[str]) -> None:
        self.args = args
        self.log = log

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def run(self, plan_name: str, settings: Settings, command: list[str]) -> int:
        args = self.args
        results = args.results.resolve()
        before = _run_dirs(results)
        self.say(f"lab command: {shlex.join(command)}")
        lab = subprocess.run(
            command,
            cwd=PROJECT_DIR,
            env={
                **lab_environment(),
                "SERVELAB_NIGHTLY_PLAN": str(args.plan.resolve()),
                "SERVELAB_NIGHTLY_RESULTS": str(results),
            },
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            check=False,
        )
        self.say(f"lab command exited {lab.returncode}")
        run_dir = find_new_run(results, before, plan_name)
        verdict = None
        if run_dir is None:
            self.say(f"no run of plan {plan_name} was written to {results}: nothing to judge")
        else:
            try:
                verdict = register_and_judge(run_dir, results, settings)
            except (HistoryError, ReportError, OSError) as exc:
                self.say(f"{run_dir}: not judged: {exc}")
            else:
                self._rebuild_report(run_dir)
                for line in verdict.lines():
                    self.say(line)
        status = exit_status(verdict, lab.returncode)
        payload: dict[str, Any] = {
            **(verdict.to_json() if verdict else {"status": "run failed", "plan": plan_name}),
            "exit_status": status,
            "lab_exit_status": lab.returncode,
            "run_dir": str(run_dir) if run_dir else None,
            "log": self.log.name,
            "host": socket.gethostname(),
        }
        for problem in notify(payload, args.webhook, args.notify_command):
            self.say(f"verdict not delivered: {problem}")
        self.say(f"nightly finished: exit status {status}")
        return status

    def _rebuild_report(self, run_dir: Path) -> None:
        """The report shows the verdict of this run's settings (servelab run used defaults)."""
        try:
            from servelab.controller.report import build_report

            build_report(run_dir)
        except Exception as exc:  # the verdict stands; `servelab report` can rebuild it
            self.say(f"report not rebuilt: {exc}")


def register(groups: Any) -> None:
    """The `servelab nightly` subcommand."""
    parser = groups.add_parser(
        "nightly",
        help="run the lab once under the nightly lock, judge the run against its history",
    )
    parser.add_argument("--plan", type=Path, required=True, help="plan file (plans/*.yml)")
    parser.add_argument(
        "--results",
        type=Path,
        default=PROJECT_DIR / "results",
        help="results directory with history.jsonl (default: results/ in the project)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path.home() / ".servelab",
        help="the lab's state directory: nightly/nightly.lock and nightly/logs/ (~/.servelab)",
    )
    parser.add_argument("--webhook", metavar="URL", help="POST the verdict here as JSON")
    parser.add_argument(
        "--notify-command",
        type=shlex.split,
        metavar="CMD",
        help="run this command (no shell) with the verdict as JSON on its stdin",
    )
    defaults = Settings()
    parser.add_argument(
        "--history-runs",
        type=int,
        metavar="N",
        default=defaults.history_runs,
        help=f"earlier valid runs a point is judged against (default {defaults.history_runs})",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        metavar="P",
        default=defaults.confidence,
        help=f"confidence a change must reach to count (default {defaults.confidence})",
    )
    parser.add_argument(
        "--min-change",
        type=float,
        metavar="FRACTION",
        default=defaults.min_change,
        help=f"smallest change that counts, a fraction (default {defaults.min_change})",
    )
    parser.add_argument(
        "--extra-vars",
        type=json_object,
        default={},
        metavar="JSON",
        help="variables for lab.yml, a JSON object (ansible-playbook -e)",
    )
    parser.add_argument(
        "--lab-command",
        type=shlex.split,
        metavar="CMD",
        help="what runs under the lock instead of ansible-playbook lab.yml (it finds the plan "
        "and results directory in SERVELAB_NIGHTLY_PLAN and SERVELAB_NIGHTLY_RESULTS)",
    )
    parser.set_defaults(handler=_command)


def _command(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)  # PlanError: exit 2 before anything runs
    settings = Settings(
        history_runs=args.history_runs, confidence=args.confidence, min_change=args.min_change
    )
    try:
        settings.check()
    except ValueError as exc:
        raise NightlyError(str(exc)) from None
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise NightlyError(f"--webhook {args.webhook}: an http:// or https:// URL")
    command = args.lab_command or default_lab_command(
        args.plan.resolve(), args.results.resolve(), args.extra_vars
    )
    nightly_dir = args.state_dir / "nightly"
    try:
        with exclusive_lock(nightly_dir / LOCK_FILE):
            logs = nightly_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            log_path = logs / f"{stamp}-{plan.name}.log"
            for n in range(2, 1000):  # a second run within the second gets a log of its own
                if not log_path.exists():
                    break
                log_path = logs / f"{stamp}-{plan.name}-{n}.log"
            with log_path.open("a") as log:
                print(f"log: {log_path}", flush=True)
                return Nightly(args, log).run(plan.name, settings, command)
    except LockHeld as exc:
        print(f"servelab nightly: {exc}", file=sys.stderr)
        return EXIT_LOCKED
