"""`servelab models ...`: build, add, list and measure the model repository."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from servelab.server.modelrepo.builder import add_user_model, build_repository
from servelab.server.modelrepo.catalog import KNOWN_MODELS
from servelab.server.modelrepo.manifest import load_manifest


def register(groups: Any) -> None:
    """Add the `models` command group to the top-level subparsers."""
    models = groups.add_parser("models", help="build and inspect the model repository")
    commands = models.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    build = commands.add_parser(
        "build",
        help="build models into the repository (unchanged ones are kept)",
        description=f"Build models. Known models: {', '.join(KNOWN_MODELS)}.",
    )
    _repo_flag(build)
    build.add_argument("--models", nargs="+", required=True, metavar="MODEL")
    build.add_argument("--seed", type=int, default=None, help="weights seed for every named model")
    _json_flag(build)
    build.set_defaults(handler=_build)

    add = commands.add_parser("add", help="add your own SavedModel and/or OpenVINO IR")
    _repo_flag(add)
    add.add_argument("--name", required=True, help="the model name servers will serve")
    add.add_argument("--saved-model", type=Path, metavar="DIR", help="SavedModel directory")
    add.add_argument("--ir", type=Path, metavar="DIR", help="directory holding model.xml/.bin")
    _json_flag(add)
    add.set_defaults(handler=_add)

    listing = commands.add_parser("list", help="list the models in the repository")
    _repo_flag(listing)
    _json_flag(listing)
    listing.set_defaults(handler=_list)

    ceiling = commands.add_parser(
        "ceiling",
        help="measure OpenVINO's in-process throughput per model and batch size",
    )
    _repo_flag(ceiling)
    ceiling.add_argument("--models", nargs="+", required=True, metavar="MODEL")
    ceiling.add_argument("--batches", nargs="+", type=_positive_int, default=[1], metavar="N")
    ceiling.add_argument(
        "--duration", type=_positive_int, default=10, metavar="S", help="seconds per point"
    )
    ceiling.add_argument(
        "--missing-only",
        action="store_true",
        help="measure only (model, batch) pairs not yet in ceiling.json",
    )
    ceiling.add_argument(
        "--cpus",
        default="",
        metavar="CPUSET",
        help="run on exactly these CPUs (the server's set, e.g. 1-7); default: every CPU",
    )
    ceiling.add_argument(
        "--performance-hint",
        default="THROUGHPUT",
        choices=("THROUGHPUT", "LATENCY", "CUMULATIVE_THROUGHPUT"),
        help="OpenVINO's performance hint, the server's (default THROUGHPUT)",
    )
    ceiling.add_argument(
        "--streams",
        type=int,
        default=0,
        metavar="N",
        help="OpenVINO's NUM_STREAMS, the server's; 0 (default) lets the hint choose",
    )
    _json_flag(ceiling)
    ceiling.set_defaults(handler=_ceiling)


def _repo_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, required=True, help="model repository root")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    report = build_repository(args.repo, args.models, seed=args.seed, log=_progress)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for outcome in report.outcomes:
            print(f"{outcome.name:<16} {outcome.status:<14} {outcome.seconds:7.1f} s")
    return 0


def _add(args: argparse.Namespace) -> int:
    outcome = add_user_model(
        args.repo, args.name, saved_model=args.saved_model, ir=args.ir, log=_progress
    )
    if args.json:
        document = {
            "name": outcome.name,
            "status": outcome.status,
            "changed": outcome.changed,
            "spec_hash": outcome.spec_hash,
        }
        print(json.dumps(document, indent=2))
    else:
        print(f"{outcome.name:<16} {outcome.status}")
    return 0


def _list(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.repo)
    if args.json:
        document = {
            name: {
                "source": entry.source,
                "saved_model": entry.saved_model,
                "ir": entry.ir,
                "golden": entry.golden.path,
                "atol": entry.golden.atol,
                "rtol": entry.golden.rtol,
                "size_bytes": sum(f.size_bytes for f in entry.files),
                "spec_hash": entry.spec_hash,
            }
            for name, entry in sorted(manifest.models.items())
        }
        print(json.dumps(document, indent=2))
        return 0
    if not manifest.models:
        print(f"no models in {args.repo}")
        return 0
    print(f"{'model':<16} {'source':<6} {'MiB':>8} {'atol':>8}  formats")
    for name, entry in sorted(manifest.models.items()):
        size = sum(f.size_bytes for f in entry.files) / 2**20
        formats = "+".join(f for f, p in (("tf", entry.saved_model), ("ov", entry.ir)) if p)
        print(f"{name:<16} {entry.source:<6} {size:8.1f} {entry.golden.atol:8.2g}  {formats}")
    return 0


def _ceiling(args: argparse.Namespace) -> int:
    from servelab.server.modelrepo.ceiling import measure_ceiling

    report = measure_ceiling(
        args.repo,
        args.models,
        args.batches,
        duration_s=args.duration,
        missing_only=args.missing_only,
        cpus=args.cpus,
        performance_hint=args.performance_hint,
        streams=args.streams,
        log=_progress,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for record in report.records:
            print(
                f"{record.model:<16} batch {record.batch:<3} {record.throughput_fps:10.1f} fps "
                f"(mean latency {record.latency_mean_ms:.1f} ms, {record.method}, "
                f"{record.nstreams} streams, CPUs {record.cpus or 'all'}, "
                f"{record.iterations} inferences)"
            )
        for model, batch in report.skipped:
            print(f"{model:<16} batch {batch:<3} already measured")
    return 0
