"""`servelab-refserver`: the TF Serving gRPC API on the OpenVINO or TensorFlow runtime.

Flags carry OpenVINO Model Server's names where they mean the same thing
(`--model_name`, `--model_path`, `--port`, `--rest_port`, `--nireq`,
`--plugin_config`, `--config_path`); each also answers to its kebab-case
spelling. Bad flags end the process with exit code 2 and one line naming the flag.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import sys

# OpenVINO forks a helper process while it loads a model; gRPC's fork handlers would
# only log that other threads are busy in gRPC. The child never touches gRPC.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from servelab.refserver.config import (
    DEFAULT_PORTS,
    PERFORMANCE_HINTS,
    RUNTIMES,
    ConfigError,
    ServerConfig,
    load_config_file,
    parse_plugin_config,
    resolve_model,
)
from servelab.refserver.server import BindError, RefServer

log = logging.getLogger("refserver")

DEFAULT_GRPC_WORKERS = 16


def _flag(*names: str) -> list[str]:
    """An OVMS-style flag and its kebab-case alias."""
    spellings = []
    for name in names:
        spellings.append(name)
        if "_" in name:
            spellings.append(name.replace("_", "-"))
    return spellings


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_port.__name__ = "port (0-65535)"
_positive.__name__ = "positive integer"
_non_negative.__name__ = "non-negative integer"


def _servelab_version() -> str:
    """The installed servelab distribution's version (provenance: results.json records it)."""
    try:
        return importlib.metadata.version("servelab")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without install
        return "unknown"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="servelab-refserver",
        description=(
            "Serve models in the OVMS/TF Serving repository layout over TF Serving's gRPC API, "
            "with Prometheus /metrics and /v1/models/<name> on the REST port."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"servelab-refserver {_servelab_version()}"
    )
    parser.add_argument("--runtime", required=True, choices=RUNTIMES)
    parser.add_argument(*_flag("--model_name"), dest="model_name", help="the served model's name")
    parser.add_argument(
        *_flag("--model_path"),
        dest="model_path",
        help="the model's base path, holding numeric version directories",
    )
    parser.add_argument(
        *_flag("--config_path"),
        dest="config_path",
        help='an OVMS-style {"model_config_list": [...]} file (instead of --model_name/path)',
    )
    parser.add_argument(
        "--port", type=_port, help="gRPC port (default 9001 openvino, 8502 tensorflow)"
    )
    parser.add_argument(
        *_flag("--rest_port"),
        dest="rest_port",
        type=_port,
        help="REST port for /metrics and /v1/models (default 8001 openvino, 8503 tensorflow; "
        "0 turns REST off)",
    )
    parser.add_argument(
        *_flag("--bind_address"),
        dest="bind_address",
        default="127.0.0.1",
        help="address both ports bind to (default 127.0.0.1; 0.0.0.0 only when asked)",
    )
    parser.add_argument(
        "--nireq",
        type=_non_negative,
        default=0,
        help="OpenVINO infer requests per model (default 0: the device's optimal number)",
    )
    parser.add_argument(
        *_flag("--plugin_config"),
        dest="plugin_config",
        default=None,
        help='JSON object passed to OpenVINO compile_model, e.g. {"NUM_STREAMS": 2}',
    )
    parser.add_argument(
        *_flag("--performance_hint"),
        dest="performance_hint",
        choices=PERFORMANCE_HINTS,
        default=None,
        help="OpenVINO PERFORMANCE_HINT (default THROUGHPUT; plugin_config may set it instead)",
    )
    parser.add_argument(
        *_flag("--target_device"),
        dest="target_device",
        default="CPU",
        help="OpenVINO device for --model_name/--model_path (default CPU)",
    )
    parser.add_argument(
        *_flag("--grpc_workers"),
        dest="grpc_workers",
        type=_positive,
        default=DEFAULT_GRPC_WORKERS,
        help=f"gRPC handler threads (default {DEFAULT_GRPC_WORKERS})",
    )
    parser.add_argument(
        *_flag("--drain_timeout"),
        dest="drain_timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests get to finish after SIGTERM (default 30)",
    )
    parser.add_argument(
        *_flag("--log_level"),
        dest="log_level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default="INFO",
    )
    return parser


def server_config(args: argparse.Namespace) -> ServerConfig:
    """Check the flags and the model paths; ConfigError naming the flag otherwise."""
    plugin_config = {}
    if args.plugin_config is not None:
        plugin_config = parse_plugin_config(args.plugin_config)
    if args.config_path:
        if args.model_name or args.model_path:
            raise ConfigError("--config_path excludes --model_name and --model_path")
        models = load_config_file(args.runtime, args.config_path, args.nireq, plugin_config)
    else:
        if not args.model_name:
            raise ConfigError("--model_name is required (or --config_path)")
        if not args.model_path:
            raise ConfigError("--model_path is required (or --config_path)")
        models = (
            resolve_model(
                args.runtime,
                args.model_name,
                args.model_path,
                origin=f"--model_path {args.model_path}",
                nireq=args.nireq,
                plugin_config=plugin_config,
                target_device=args.target_device,
            ),
        )
    hint = args.performance_hint or "THROUGHPUT"
    if args.performance_hint:
        for model in models:
            configured = model.plugin_config.get("PERFORMANCE_HINT")
            if configured is not None and configured != args.performance_hint:
                raise ConfigError(
                    f"--performance_hint {args.performance_hint} contradicts "
                    f"PERFORMANCE_HINT {configured} in model '{model.name}'s plugin_config"
                )
    grpc_default, rest_default = DEFAULT_PORTS[args.runtime]
    grpc_port = grpc_default if args.port is None else args.port
    rest_port = rest_default if args.rest_port is None else args.rest_port
    if grpc_port == 0:
        raise ConfigError("--port 0: the gRPC server needs a port")
    if rest_port == grpc_port:
        raise ConfigError(f"--rest_port {rest_port} is the same as --port")
    if not args.bind_address:
        raise ConfigError("--bind_address is empty")
    if args.drain_timeout < 0:
        raise ConfigError(f"--drain_timeout {args.drain_timeout} is negative")
    return ServerConfig(
        runtime=args.runtime,
        models=models,
        bind_address=args.bind_address,
        grpc_port=grpc_port,
        rest_port=rest_port,
        grpc_workers=args.grpc_workers,
        performance_hint=hint,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s refserver: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = server_config(args)
    except ConfigError as exc:
        print(f"servelab-refserver: error: {exc}", file=sys.stderr)
        return 2
    server = RefServer(config)
    try:
        server.bind()
    except BindError as exc:
        print(f"servelab-refserver: error: {exc}", file=sys.stderr)
        return 2
    log.info("serving %s", server.describe())
    code = server.serve(args.drain_timeout)
    # Requests are drained and the runtimes closed: leave without interpreter
    # finalization, where destroying OpenVINO's objects can deadlock with a completion
    # callback still waiting for the GIL (seen as a hang at exit under load).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
