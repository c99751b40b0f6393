"""One worker process of the pool: a few closed-loop clients against one target.

Each client keeps exactly one request in flight and sends the next one when its
response has arrived and been verified. Three engines drive the clients:

- `H2Engine` (default, `--api servelab`, clients/h2engine.py): servelab's own
  gRPC-over-HTTP/2 client, one connection per worker with the clients as
  concurrent streams, the request framed once. It spends a fraction of grpcio's
  CPU per call, so the clients stay out of what is measured.
- `CallbackEngine` (`--api servelab-grpcio`): grpcio with the same pre-serialized
  request: one channel, every client a chain of `future()` calls whose
  done-callback records the outcome and issues the next request (the cheapest of
  the grpcio designs tried: blocking calls in threads, grpc.aio tasks, callbacks).
- `StubEngine` (`--api tensorflow-serving-api`): what the published clients did, one
  thread per client building a request with `tf.make_tensor_proto`, calling the
  official stub's blocking `Predict`, and decoding with `tf.make_ndarray`.

The worker's main thread keeps the schedule: it sleeps until the agreed start,
samples its CPU time at the window's edges, stops issuing after the cool-down,
waits for the requests in flight, and sends a `WorkerReport` to the parent. It
ignores SIGINT; the parent tells it to stop through the pipe.
"""

from __future__ import annotations

import functools
import heapq
import os
import resource
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import grpc

from servelab.clients.engine import Engine, LoadSettings, WorkerConfig, build_request
from servelab.clients.h2engine import H2Engine
from servelab.clients.stats import NS_PER_S, RequestOutcome, WindowRecorder, WorkerReport
from servelab.clients.verify import ResponseVerifier
from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb

# The pool and the tests build a worker's settings through this module.
__all__ = ["APIS", "Engine", "LoadSettings", "WorkerConfig", "build_request", "worker_main"]

API_SERVELAB = "servelab"  # servelab's messages over servelab's HTTP/2 client
API_SERVELAB_GRPCIO = "servelab-grpcio"  # servelab's messages over grpcio
API_TFSERVING = "tensorflow-serving-api"  # the official stubs and TensorFlow
APIS = (API_SERVELAB, API_SERVELAB_GRPCIO, API_TFSERVING)

# Retries buffer every request for a possible replay; a benchmark client never retries.
_CHANNEL_OPTIONS = (*api.CHANNEL_OPTIONS, ("grpc.enable_retries", 0))
_TICK_S = 0.01  # the main thread's longest sleep while deferred requests may be due
_INTERRUPT_DRAIN_S = 2.0  # how long an interrupted worker waits for requests in flight


def _transport_outcome(error: Exception, latency_s: float) -> tuple[RequestOutcome, str]:
    if isinstance(error, grpc.RpcError) and isinstance(error, grpc.Call):
        return RequestOutcome(False, latency_s, error.code().name), str(error.details())
    if isinstance(error, grpc.FutureCancelledError):
        return RequestOutcome(False, latency_s, "CANCELLED"), "cancelled by the client"
    return RequestOutcome(False, latency_s, "CLIENT_ERROR"), f"{type(error).__name__}: {error}"


class CallbackEngine:
    """Closed-loop clients as chains of grpcio futures on one channel."""

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config
        self._verifier = ResponseVerifier(
            config.load.workload.output, config.load.workload.expected
        )
        self._payload = build_request(config.load.workload).SerializeToString()
        self._channel = grpc.insecure_channel(config.load.target, options=_CHANNEL_OPTIONS)
        self._call = self._channel.unary_unary(
            api.PREDICT,
            request_serializer=None,  # the payload is serialized once, above
            response_deserializer=pb.PredictResponse.FromString,
        )
        self._timeout_s = config.load.timeout_s
        self._pause_ns = int(config.load.error_pause_s * NS_PER_S)
        self._sent_at = [0] * config.clients
        self._done_callbacks = [functools.partial(self._done, i) for i in range(config.clients)]
        self._deferred: list[tuple[int, int]] = []  # heap of (due perf_counter_ns, client)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stopping = False
        self._active = 0
        self._idle = threading.Event()
        self._idle.set()  # until start()
        self._recorder: WindowRecorder | None = None
        grpc.channel_ready_future(self._channel).result(timeout=config.load.connect_timeout_s)

    def start(self, recorder: WindowRecorder) -> None:
        self._recorder = recorder
        self._active = self._config.clients
        self._idle.clear()
        for client in range(self._config.clients):
            self._issue_guarded(client)

    def _issue_guarded(self, client: int) -> None:
        # A future that is already done runs its callback inside add_done_callback;
        # the depth marks that case so the callback defers instead of recursing.
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            self._issue(client)
        finally:
            self._local.depth -= 1

    def _issue(self, client: int) -> None:
        recorder = self._recorder
        recorder.sent()
        self._sent_at[client] = sent = time.perf_counter_ns()
        try:
            future = self._call.future(self._payload, timeout=self._timeout_s)
        except Exception as error:  # a closed channel, say: data, not a crash
            now = time.perf_counter_ns()
            outcome, detail = _transport_outcome(error, (now - sent) / NS_PER_S)
            recorder.record(now, outcome, detail)
            self._next(client, failed=True)
            return
        future.add_done_callback(self._done_callbacks[client])

    def _done(self, client: int, future: grpc.Future) -> None:
        now = time.perf_counter_ns()
        latency_s = (now - self._sent_at[client]) / NS_PER_S
        try:
            response = future.result()
        except Exception as error:
            outcome, detail = _transport_outcome(error, latency_s)
        else:
            try:
                failure = self._verifier.check(response.outputs)
            except Exception as error:  # a verifier bug must not silence a client
                failure = f"verification raised {type(error).__name__}: {error}"
            outcome, detail = RequestOutcome(True, latency_s, None, failure), None
        self._recorder.record(now, outcome, detail)
        self._next(client, failed=not outcome.ok)

    def _next(self, client: int, failed: bool) -> None:
        if failed or getattr(self._local, "depth", 0) > 0:
            due = time.perf_counter_ns() + (self._pause_ns if failed else 0)
            with self._lock:
                if not self._stopping:
                    heapq.heappush(self._deferred, (due, client))
                    return
            self._retire()
        elif self._stopping:
            self._retire()
        else:
            self._issue_guarded(client)

    def run_due(self) -> None:
        """Issue the deferred requests whose time has come (main thread)."""
        now = time.perf_counter_ns()
        while True:
            with self._lock:
                if not self._deferred or self._deferred[0][0] > now:
                    return
                _, client = heapq.heappop(self._deferred)
            if self._stopping:
                self._retire()
            else:
                self._issue_guarded(client)

    def _retire(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active <= 0:
                self._idle.set()

    def stop_issuing(self) -> None:
        with self._lock:
            self._stopping = True
            waiting, self._deferred = len(self._deferred), []
        for _ in range(waiting):
            self._retire()
        if self._active <= 0:
            self._idle.set()

    def wait_idle(self, timeout_s: float) -> bool:
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        self._channel.close()  # cancels whatever is still in flight


class StubEngine:
    """The published clients: a thread per client, official stubs, TensorFlow's codecs."""

    def __init__(self, config: WorkerConfig) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # TensorFlow costs seconds and hundreds of MB: only this engine loads it.
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self._tf = tf
        self._predict_pb2 = predict_pb2
        self._config = config
        self._verifier = ResponseVerifier(
            config.load.workload.output, config.load.workload.expected
        )
        self._channel = grpc.insecure_channel(config.load.target, options=api.CHANNEL_OPTIONS)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        grpc.channel_ready_future(self._channel).result(timeout=config.load.connect_timeout_s)

    def start(self, recorder: WindowRecorder) -> None:
        self._threads = [
            threading.Thread(target=self._client, args=(recorder,), daemon=True)
            for _ in range(self._config.clients)
        ]
        for thread in self._threads:
            thread.start()

    def _client(self, recorder: WindowRecorder) -> None:
        tf, workload = self._tf, self._config.load.workload
        name = workload.output.name
        while not self._stopping.is_set():
            request = self._predict_pb2.PredictRequest()
            request.model_spec.name = workload.model
            if workload.version is not None:
                request.model_spec.version.value = workload.version
            request.model_spec.signature_name = workload.signature_name
            request.inputs[workload.input_name].CopyFrom(
                tf.make_tensor_proto(workload.batch, shape=workload.batch.shape)
            )
            recorder.sent()
            sent = time.perf_counter_ns()
            try:
                response = self._stub.Predict(request, self._config.load.timeout_s)
            except Exception as error:
                now = time.perf_counter_ns()
                outcome, detail = _transport_outcome(error, (now - sent) / NS_PER_S)
                recorder.record(now, outcome, detail)
                self._stopping.wait(self._config.load.error_pause_s)
                continue
            now = time.perf_counter_ns()
            try:
                if name not in response.outputs:
                    failure = f"output {name!r} missing (got {sorted(response.outputs)})"
                else:
                    failure = self._verifier.check_array(
                        name, tf.make_ndarray(response.outputs[name])
                    )
            except Exception as error:
                failure = f"output {name!r} cannot be decoded: {error}"
            recorder.record(now, RequestOutcome(True, (now - sent) / NS_PER_S, None, failure))

    def run_due(self) -> None:
        pass

    def stop_issuing(self) -> None:
        self._stopping.set()

    def wait_idle(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def close(self) -> None:
        self._channel.close()


def make_engine(config: WorkerConfig) -> Engine:
    if config.load.api == API_TFSERVING:
        return StubEngine(config)
    if config.load.api == API_SERVELAB_GRPCIO:
        return CallbackEngine(config)
    return H2Engine(config)


class _Schedule:
    """The run's phases on this process's perf_counter_ns clock."""

    def __init__(self, start_epoch: float, config: WorkerConfig) -> None:
        # Read both clocks back to back; keep the closest pair of a few tries.
        best = None
        for _ in range(5):
            before = time.perf_counter_ns()
            wall = time.time()
            after = time.perf_counter_ns()
            if best is None or after - before < best[0]:
                best = (after - before, wall, (before + after) // 2)
        _, self.wall0, self.pc0 = best
        self.start_ns = self.to_pc(start_epoch)
        self.window_start_ns = self.to_pc(start_epoch + config.load.warmup_s)
        self.window_end_ns = self.window_start_ns + int(config.load.duration_s * NS_PER_S)
        self.end_ns = self.window_end_ns + int(config.load.cooldown_s * NS_PER_S)

    def to_pc(self, epoch: float) -> int:
        return self.pc0 + int((epoch - self.wall0) * NS_PER_S)

    def to_epoch(self, pc_ns: int) -> float:
        return self.wall0 + (pc_ns - self.pc0) / NS_PER_S


def _stop_requested(conn: Connection) -> bool:
    """True when the parent has asked this worker to stop (or has gone away)."""
    try:
        while conn.poll():
            if conn.recv()[0] == "stop":
                return True
    except (EOFError, OSError):
        return True
    return False


def _wait_until(deadline_ns: int, conn: Connection, engine: Engine | None) -> bool:
    """Sleep until `deadline_ns`, issuing deferred requests; False if told to stop."""
    while True:
        if engine is not None:
            engine.run_due()
        remaining_s = (deadline_ns - time.perf_counter_ns()) / NS_PER_S
        if remaining_s <= 0:
            return not _stop_requested(conn)
        if remaining_s < 0.002:  # the last stretch: a plain sleep is the most precise
            time.sleep(remaining_s)
            continue
        try:
            has_message = conn.poll(min(remaining_s - 0.001, _TICK_S))
        except (EOFError, OSError):
            return False
        if has_message and _stop_requested(conn):
            return False


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_load(engine: Engine, config: WorkerConfig, start_epoch: float, conn: Connection) -> Any:
    """Run the phases against `engine` and return this worker's report."""
    schedule = _Schedule(start_epoch, config)
    recorder = WindowRecorder(schedule.window_start_ns, schedule.window_end_ns)
    cpu_at_window: list[float] = []
    load_start_ns: int | None = None
    interrupted = False

    if not _wait_until(schedule.start_ns, conn, None):
        interrupted = True
        recorder.close_window(schedule.window_start_ns)
    else:
        load_start_ns = time.perf_counter_ns()
        engine.start(recorder)
        for edge in (schedule.window_start_ns, schedule.window_end_ns):
            if not _wait_until(edge, conn, engine):
                interrupted = True
                recorder.close_window(time.perf_counter_ns())
                break
            cpu_at_window.append(time.process_time())
        if not interrupted and not _wait_until(schedule.end_ns, conn, engine):
            interrupted = True
        engine.stop_issuing()
        if interrupted and len(cpu_at_window) == 1:
            cpu_at_window.append(time.process_time())
        drain_s = _INTERRUPT_DRAIN_S if interrupted else config.load.timeout_s + 1.0
        engine.wait_idle(drain_s)
    engine.close()
    engine.wait_idle(1.0)  # the callbacks of cancelled requests

    recorder.freeze()
    window_cpu_s = cpu_at_window[1] - cpu_at_window[0] if len(cpu_at_window) == 2 else 0.0
    return WorkerReport(
        worker=config.index,
        pid=os.getpid(),
        clients=config.clients,
        load_start_epoch=None if load_start_ns is None else schedule.to_epoch(load_start_ns),
        window_start_epoch=schedule.to_epoch(recorder.window_start_ns),
        window_end_epoch=schedule.to_epoch(recorder.window_end_ns),
        window=recorder.window,
        all_phases=recorder.all_phases,
        sent_total=recorder.sent_total,
        latency=recorder.histogram.to_dict(),
        timeline=list(recorder.timeline),
        first_error=recorder.first_error,
        first_verification_failure=recorder.first_verification_failure,
        window_cpu_s=window_cpu_s,
        cpu_s=time.process_time(),
        peak_rss_mb=_peak_rss_mb(),
        interrupted=interrupted,
    )


def worker_main(conn: Connection, config: WorkerConfig) -> None:
    """Entry point of a worker process (multiprocessing, spawn start method)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        engine = make_engine(config)
    except grpc.FutureTimeoutError:
        conn.send(("error", f"cannot reach {config.load.target} from worker {config.index}"))
        return
    except ConnectionError as error:  # the HTTP/2 engine's TargetUnreachable
        conn.send(("error", f"worker {config.index}: {error}"))
        return
    except Exception as error:
        conn.send(("error", f"worker {config.index} cannot start: {type(error).__name__}: {error}"))
        return
    conn.send(("ready", os.getpid()))
    try:
        message = conn.recv()
    except EOFError:
        engine.close()
        return
    if message[0] != "start":
        engine.close()
        return
    report = run_load(engine, config, float(message[1]), conn)
    conn.send(("report", report))
    conn.close()
