"""The `servelab` command. Subcommand groups register themselves here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from servelab.controller import compare as compare_cli
from servelab.controller import nightly as nightly_cli
from servelab.controller import report as report_cli
from servelab.controller import run as run_cli
from servelab.controller import trend as history_cli
from servelab.controller.history import HistoryError
from servelab.controller.nightly import NightlyError
from servelab.controller.plan import PlanError
from servelab.controller.results import ReportError
from servelab.server import readiness
from servelab.server.modelrepo import cli as models_cli
from servelab.server.modelrepo.errors import ModelRepoError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="servelab",
        description="A reproducible lab that benchmarks model servers.",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    models_cli.register(groups)
    run_cli.register(groups)
    report_cli.register(groups)
    compare_cli.register(groups)
    readiness.register(groups)
    history_cli.register_cli(groups)
    nightly_cli.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    # each carries its own exit status
    except (PlanError, ModelRepoError, ReportError, HistoryError, NightlyError) as exc:
        print(f"servelab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("servelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
