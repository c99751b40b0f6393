"""refserver's lifecycle: bind, load the models, serve, drain on SIGTERM.

The ports are bound before the models load, so GetModelStatus and the REST
status route show each version go START -> LOADING -> AVAILABLE as it happens.
On SIGTERM (or SIGINT) the gRPC server stops accepting RPCs, lets the ones in
flight finish, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from concurrent import futures

import grpc

from servelab.refserver.config import ModelConfig, ServerConfig
from servelab.refserver.metrics import ServerMetrics
from servelab.refserver.models import ModelRegistry, State
from servelab.refserver.rest import start_rest_server
from servelab.refserver.runtime import Runtime
from servelab.refserver.service import Servicer
from servelab.wire.api import CHANNEL_OPTIONS

log = logging.getLogger("refserver")


def load_runtime(kind: str, model: ModelConfig, performance_hint: str) -> Runtime:
    """Load `model` on the runtime `kind`, importing that runtime's framework now: an
    OpenVINO server never imports TensorFlow (seconds, hundreds of MB), nor the reverse."""
    if kind == "openvino":
        from servelab.refserver.openvino_runtime import OpenVINORuntime

        return OpenVINORuntime(model, performance_hint)
    if kind == "tensorflow":
        from servelab.refserver.tensorflow_runtime import TensorFlowRuntime

        return TensorFlowRuntime(model)
    raise ValueError(f"unknown runtime {kind!r}")


# gRPC sets SO_REUSEPORT by default on Linux, which lets a second server bind a
# port that is in use and silently share its traffic; refserver wants the error.
GRPC_SERVER_OPTIONS = (*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0))


class BindError(OSError):
    """A port refserver cannot bind; the message names the flag."""


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _check_free(address: str, port: int, flag: str) -> None:
    """BindError naming `flag` if `port` is taken (gRPC would only log it to stderr)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            where = _host_port(address, port)
            raise BindError(f"{flag} {port}: cannot bind {where} ({exc.strerror or exc})") from None


class RefServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(config.models)
        self.metrics = ServerMetrics()
        self.servicer = Servicer(self.registry, self.metrics)
        self._stop = threading.Event()
        self._load_failed = False
        self._grpc: grpc.Server | None = None
        self._rest = None
        self.grpc_port = 0
        self.rest_port = 0

    def bind(self) -> None:
        """Bind both ports and start serving (models still loading); BindError if taken."""
        config = self.config
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.grpc_workers, thread_name_prefix="grpc"),
            handlers=self.servicer.handlers(),
            options=GRPC_SERVER_OPTIONS,
        )
        address = _host_port(config.bind_address, config.grpc_port)
        _check_free(config.bind_address, config.grpc_port, "--port")
        try:
            self.grpc_port = self._grpc.add_insecure_port(address)
        except RuntimeError:
            self.grpc_port = 0
        if self.grpc_port == 0:
            raise BindError(f"--port {config.grpc_port}: cannot bind {address} (in use?)")
        if config.rest_port:
            try:
                self._rest = start_rest_server(
                    config.bind_address, config.rest_port, self.registry, self.metrics
                )
            except OSError as exc:
                rest = _host_port(config.bind_address, config.rest_port)
                raise BindError(
                    f"--rest_port {config.rest_port}: cannot bind {rest} ({exc.strerror or exc})"
                ) from None
            self.rest_port = self._rest.server_address[1]
        self._grpc.start()

    def describe(self) -> str:
        config = self.config
        models = ", ".join(
            f"{m.name} version {m.version} ({m.version_path})" for m in config.models
        )
        rest = _host_port(config.bind_address, self.rest_port) if self.rest_port else "off"
        return (
            f"runtime={config.runtime} grpc={_host_port(config.bind_address, self.grpc_port)} "
            f"rest={rest} models: {models}"
        )

    def load_models(self) -> None:
        """Load every model in turn; a failure leaves the version END and stops the server."""
        for model in self.registry:
            if self._stop.is_set():
                return
            self.registry.set_state(model, State.LOADING)
            started = time.perf_counter()
            try:
                runtime = load_runtime(
                    self.config.runtime, model.config, self.config.performance_hint
                )
            except Exception as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                self.registry.set_state(model, State.END, error=message)
                log.error(
                    "model %s version %d failed to load from %s: %s",
                    model.name,
                    model.version,
                    model.config.version_path,
                    message,
                )
                self._load_failed = True
                self._stop.set()
                return
            self.registry.set_state(model, State.AVAILABLE, runtime=runtime)
            log.info(
                "model %s version %d AVAILABLE in %.1f s (%s; inputs %s; outputs %s)",
                model.name,
                model.version,
                time.perf_counter() - started,
                runtime.description,
                ", ".join(f"{s.name}{list(s.shape)}" for s in runtime.inputs),
                ", ".join(f"{s.name}{list(s.shape)}" for s in runtime.outputs),
            )

    def request_stop(self, signum: int | None = None, frame=None) -> None:
        self._stop.set()

    def serve(self, drain_timeout_s: float) -> int:
        """Serve until SIGTERM/SIGINT or a load failure; the process's exit code."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        loader = threading.Thread(target=self.load_models, name="loader", daemon=True)
        loader.start()
        self._stop.wait()
        return self.shutdown(drain_timeout_s)

    def shutdown(self, drain_timeout_s: float) -> int:
        if not self._load_failed:
            log.info(
                "stopping: no new requests; draining in-flight ones (up to %g s)", drain_timeout_s
            )
        for model in self.registry:
            if model.state is State.AVAILABLE:  # in-flight requests finish; no new ones
                self.registry.set_state(model, State.UNLOADING)
        if self._grpc is not None:
            self._grpc.stop(grace=drain_timeout_s).wait()
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
        for model in self.registry:
            if model.runtime is not None:
                model.runtime.close()
                self.registry.set_state(model, State.END)
        if self._load_failed:
            return 2
        log.info("stopped")
        return 0
