"""Run a plan: the loop that asks the scheduler for a point, measures it, writes it.

The parts: `scheduler.py` decides which point comes next (the plan's order or the
concurrency sweep), `cycle.py` measures one (serve, load, Prometheus over exactly
the window, the validity rules), `bookkeeping.py` keeps the run directory (every
point written at once, so `--resume` measures nothing twice), and `lab.py` is the
lab they act on: the phase playbooks and Prometheus, or a fake in tests.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from servelab.controller.argtypes import json_object
from servelab.controller.bookkeeping import PLAN_COPY, RunBook
from servelab.controller.cycle import PointCycle
from servelab.controller.lab import AnsibleLab, Lab, server_link
from servelab.controller.phases import PROJECT_DIR
from servelab.controller.plan import PlanError, load_plan
from servelab.controller.prometheus import PrometheusAPI
from servelab.controller.scheduler import Scheduler, listed_points, scheduler_for

# How often a point the lab's own daemons spoiled is measured again at once.
LAB_FAULT_RETRIES = 1


def execute(
    book: RunBook, lab: Lab, *, keep_up: bool = False, scheduler: Scheduler | None = None
) -> int:
    """Measure every point not yet measured; a failed phase is recorded, the run goes on.

    0 when every point is valid and nothing failed in this attempt (a resumed run
    answers for itself, not for the failures of the attempt before), else 1.
    """
    book.open_progress()
    failures_before = len(book.failures)
    order = scheduler or scheduler_for(book.plan)
    measured = book.measured_before()
    done = 0
    try:
        book.record_provenance(lab)
        if book.clocks_agree(lab):
            cycle = PointCycle(lab, book.plan, book.dir, server_link(book.meta.get("hosts")))
            while (step := order.next()) is not None:
                done += 1
                if step.skipped is not None:
                    book.skipped(step.point, step.skipped, done, order.total)
                    continue
                result = measured.get(step.point)
                if result is None:
                    began = time.monotonic()
                    result = cycle.measure(step.point)
                    book.record(result, done, order.total, time.monotonic() - began)
                    # once more after a lab fault, with the daemons back (--resume
                    # measures it again too: it is recorded as failed)
                    for _ in range(LAB_FAULT_RETRIES):
                        if not result.lab_fault:
                            break
                        began = time.monotonic()
                        result = cycle.measure(step.point)
                        book.record(result, done, order.total, time.monotonic() - began)
                else:
                    book.kept(result, done, order.total)
                order.record(result)
    finally:
        book.finish(lab, keep_up=keep_up)
    ok = len(book.failures) == failures_before and all(p.valid for p in book.points)
    return 0 if ok else 1


def register(groups: Any) -> None:
    """The `servelab run` subcommand."""
    parser = groups.add_parser("run", help="run a benchmark plan through the lab's phases")
    parser.add_argument("--plan", type=Path, help="plan file (plans/*.yml)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run (results/<run-id>): measured points are kept",
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        default=PROJECT_DIR / "inventory" / "local.yml",
        help="Ansible inventory of the lab (default: the embedded inventory/local.yml)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=PROJECT_DIR / "results",
        help="where results/<run-id>/ is written (default: results/ in the project)",
    )
    parser.add_argument(
        "--extra-vars",
        type=json_object,
        default={},
        metavar="JSON",
        help="variables (a JSON object) handed to every phase playbook, like ansible's -e",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="the lab's Prometheus (http://host:port) for HAProxy's counts, server metrics, CPU",
    )
    parser.add_argument(
        "--progress", type=Path, help="also append each finished point's line to this file"
    )
    parser.add_argument(
        "--keep-up",
        action="store_true",
        help="leave the lab running after the run (playbooks/teardown.yml stops it later)",
    )
    parser.add_argument(
        "--list-points",
        action="store_true",
        help="print the plan's points (a JSON list of slugs) and exit",
    )
    parser.set_defaults(handler=_run_command)


def _run_command(args: Any) -> int:
    if (args.plan is None) == (args.resume is None):
        raise PlanError("give either --plan PLAN (a new run) or --resume RUN_DIR")
    if args.list_points:
        plan = load_plan(args.plan or args.resume / PLAN_COPY)
        print(json.dumps([p.slug for p in listed_points(plan)]))
        return 0
    if not args.inventory.is_file():
        raise PlanError(f"inventory {args.inventory} does not exist; name an inventory file")
    try:
        if args.resume:
            book = RunBook.resume(args.resume, progress=args.progress)
        else:
            plan = load_plan(args.plan)
            book = RunBook.start(
                plan, args.results, inventory=args.inventory, progress=args.progress
            )
    except (PlanError, OSError) as exc:
        if args.progress:  # benchmark.yml follows this file: tell it the run is over
            args.progress.parent.mkdir(parents=True, exist_ok=True)
            with args.progress.open("a") as out:
                out.write(f"run finished: did not start: {exc}\n")
        raise PlanError(str(exc)) from None
    lab = AnsibleLab(
        inventory=args.inventory,
        extravars=args.extra_vars,
        plan_file=book.plan_file,
        prometheus=PrometheusAPI(args.prometheus) if args.prometheus else None,
    )
    try:
        return execute(book, lab, keep_up=args.keep_up)
    except KeyboardInterrupt:
        print(f"interrupted: continue with servelab run --resume {book.dir}", file=sys.stderr)
        return 130
