"""The default engine (`--api servelab`): gRPC Predict calls over servelab's own HTTP/2.

grpcio costs about 200 us of CPU per unary call, more than everything else a
client does. This engine skips it: one HTTP/2 connection per worker process
(clients/h2.py) carries the worker's clients as concurrent streams, and one I/O
thread drives it with poll(). The request never changes, so its header block and
its gRPC-framed body are built once; a call only patches in its stream id. A
response is its header blocks (decoded with `hpack`, identical ones looked up),
its DATA (one gRPC message, parsed with `PredictResponse.FromString` and verified
like every other engine's) and its trailers' grpc-status and grpc-message.

Failures become the gRPC status names the other engines report: a connection
lost or refused, a stream the server never processed (GOAWAY), and HTTP errors
from a proxy are UNAVAILABLE (as gRPC maps them), a deadline passed is
DEADLINE_EXCEEDED, a RST_STREAM maps as in gRPC's HTTP/2 protocol document. After
a failure a client waits the error pause; the next request reconnects if the
connection is gone. A connection that received GOAWAY or used up its stream ids
takes no new streams; it closes when its last stream ends, and the next requests
go to a new one.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import select
import socket
import threading
import time
from collections import deque
from urllib.parse import unquote

import grpc
from google.protobuf.message import DecodeError

from servelab.clients import h2
from servelab.clients.engine import WorkerConfig, build_request
from servelab.clients.stats import NS_PER_S, RequestOutcome, WindowRecorder
from servelab.clients.verify import ResponseVerifier
from servelab.wire import api
from servelab.wire import tfserving_pb2 as pb

USER_AGENT = "servelab-load (h2)"

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# gRPC's mapping of HTTP statuses (a proxy's own answers) and of RST_STREAM codes.
_HTTP_CODES = {
    "400": "INTERNAL",
    "401": "UNAUTHENTICATED",
    "403": "PERMISSION_DENIED",
    "404": "UNIMPLEMENTED",
    "429": "UNAVAILABLE",
    "502": "UNAVAILABLE",
    "503": "UNAVAILABLE",
    "504": "UNAVAILABLE",
}
_RESET_CODES = {
    h2.REFUSED_STREAM: "UNAVAILABLE",
    h2.CANCEL: "CANCELLED",
    0xB: "RESOURCE_EXHAUSTED",  # ENHANCE_YOUR_CALM
    0xC: "PERMISSION_DENIED",  # INADEQUATE_SECURITY
}
_POLL_IN = select.POLLIN | select.POLLERR | select.POLLHUP
_IDLE_POLL_MS = 200  # nothing due: still look at the flags now and then
_CLOSE_WAIT_S = 5.0


class TargetUnreachable(ConnectionError):
    """No HTTP/2 connection to the target within the connect timeout."""


def grpc_timeout(seconds: float) -> str:
    """The grpc-timeout header value: at most 8 digits and a unit."""
    millis = math.ceil(seconds * 1000)
    if millis < 100_000_000:
        return f"{millis}m"
    return f"{min(math.ceil(seconds), 99_999_999)}S"


def grpc_message(payload: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def prepare_predict(authority: str, payload: bytes, timeout_s: float) -> h2.PreparedRequest:
    """The Predict call as HTTP/2: the header block and the framed message, built once."""
    block = h2.encode_header_block(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", api.PREDICT),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", grpc_timeout(timeout_s)),
            ("user-agent", USER_AGENT),
        ]
    )
    return h2.PreparedRequest(block, grpc_message(payload))


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    return unquote(text)


def _resolve(target: str) -> tuple[int, tuple]:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise TargetUnreachable(f"cannot resolve {host}: {error}") from None
    family, _, _, _, address = infos[0]
    return family, address


class H2Engine:
    """Closed-loop clients as streams on one HTTP/2 connection, driven by one I/O thread."""

    def __init__(self, config: WorkerConfig, *, max_stream_id: int = h2.MAX_STREAM_ID) -> None:
        load = config.load
        self._clients = config.clients
        self._verifier = ResponseVerifier(load.workload.output, load.workload.expected)
        payload = build_request(load.workload).SerializeToString()
        self._request = prepare_predict(load.target, payload, load.timeout_s)
        self._family, self._address = _resolve(load.target)
        self._max_stream_id = max_stream_id
        self._timeout_ns = int(load.timeout_s * NS_PER_S)
        self._pause_ns = int(load.error_pause_s * NS_PER_S)
        self._connect_timeout_ns = int(load.connect_timeout_s * NS_PER_S)
        self._sent_at = [0] * config.clients
        self._waiting: deque[int] = deque()  # issued, waiting for a stream (FIFO)
        self._deferred: list[tuple[int, int]] = []  # heap of (due perf_counter_ns, client)
        self._conn: h2.ClientConnection | None = None
        self._conn_started_ns = 0
        self.connections_opened = 0
        self._recorder: WindowRecorder | None = None
        self._active = 0
        self._idle = threading.Event()
        self._idle.set()  # until start()
        # Set by the worker's main thread, acted on by the I/O thread.
        self._start_requested = False
        self._stopping = False
        self._closing = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        self._registered: tuple[int, int] | None = None  # (fd, events) the poller has
        try:
            self._handshake(load.connect_timeout_s, load.target)
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name="servelab-h2", daemon=True)
        self._thread.start()

    # --- the worker's main thread -----------------------------------------------------

    def start(self, recorder: WindowRecorder) -> None:
        self._recorder = recorder
        self._idle.clear()
        self._start_requested = True
        self._wake()

    def run_due(self) -> None:
        pass  # the I/O thread keeps its own timers

    def stop_issuing(self) -> None:
        self._stopping = True
        self._wake()

    def wait_idle(self, timeout_s: float) -> bool:
        return self._idle.wait(timeout_s)

    def close(self) -> None:
        """Cancel what is in flight (recorded as CANCELLED) and end the I/O thread."""
        self._closing = True
        self._wake()
        self._thread.join(_CLOSE_WAIT_S)
        if not self._thread.is_alive():
            self._release()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- connecting -------------------------------------------------------------------

    def _handshake(self, timeout_s: float, target: str) -> None:
        """Connect before the load starts, so that an unreachable target fails the worker."""
        deadline = time.monotonic() + timeout_s
        conn = self._open_connection()
        while not conn.ready:
            if conn.closed:
                raise TargetUnreachable(f"cannot reach {target}: {conn.close_reason}")
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                conn.close()
                raise TargetUnreachable(
                    f"cannot reach {target}: no HTTP/2 SETTINGS within {timeout_s:g} s"
                )
            self._poll_once(max(1, math.ceil(remaining_ms)))
            conn.flush()
            self._update_registration()

    def _open_connection(self) -> h2.ClientConnection:
        conn = h2.ClientConnection.connect(
            self._family, self._address, max_stream_id=self._max_stream_id
        )
        self._conn = conn
        self._conn_started_ns = time.perf_counter_ns()
        self.connections_opened += 1
        self._update_registration()
        return conn

    def _update_registration(self) -> None:
        conn = self._conn
        wanted = None
        if conn is not None and not conn.closed:
            events = _POLL_IN | (select.POLLOUT if conn.wants_write else 0)
            wanted = (conn.fd, events)
        if wanted == self._registered:
            return
        if self._registered is not None and (wanted is None or wanted[0] != self._registered[0]):
            with contextlib.suppress(KeyError):
                self._poller.unregister(self._registered[0])
        if wanted is not None:
            self._poller.register(*wanted)  # register() also modifies
        self._registered = wanted

    def _poll_once(self, timeout_ms: int) -> None:
        conn = self._conn
        for fd, mask in self._poller.poll(timeout_ms):
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif conn is not None and fd == conn.fd:
                if mask & select.POLLOUT:
                    conn.on_writable()
                if mask & _POLL_IN:
                    conn.receive()

    # --- the I/O thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                self._poll_once(self._poll_timeout_ms())
                self._after_io()
        except Exception as error:  # a bug here must end the run visibly, not hang it
            if self._recorder is not None:
                self._recorder.record(
                    time.perf_counter_ns(),
                    RequestOutcome(False, 0.0, "CLIENT_ERROR"),
                    f"the HTTP/2 engine failed: {type(error).__name__}: {error}",
                )
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            conn.close("cancelled: the worker closed its connection")
            if self._recorder is not None:
                for stream in conn.take_finished():
                    self._record_failure(stream.tag, "CANCELLED", conn.close_reason)
        self._active = 0
        self._idle.set()

    def _poll_timeout_ms(self) -> int:
        due: list[int] = []
        if self._deferred:
            due.append(self._deferred[0][0])
        if self._waiting:
            due.append(self._sent_at[self._waiting[0]] + self._timeout_ns)
        conn = self._conn
        if conn is not None:
            for stream in conn.streams.values():  # the oldest has the first deadline
                due.append(self._sent_at[stream.tag] + self._timeout_ns)
                break
            if not conn.ready:
                due.append(self._conn_started_ns + self._connect_timeout_ns)
        if not due:
            return _IDLE_POLL_MS
        wait_ns = min(due) - time.perf_counter_ns()
        return max(0, min(_IDLE_POLL_MS, -(-wait_ns // 1_000_000)))

    def _after_io(self) -> None:
        if self._start_requested and self._recorder is not None and not self._active:
            self._start_requested = False
            self._active = self._clients
            for client in range(self._clients):
                self._issue(client)
        conn = self._conn
        if conn is not None:
            for stream in conn.take_finished():
                self._complete(stream)
        if self._stopping:
            self._retire_waiting()
        now = time.perf_counter_ns()
        while self._deferred and self._deferred[0][0] <= now:  # their error pause is over
            _, client = heapq.heappop(self._deferred)
            self._issue(client)
        self._expire(now)
        conn = self._conn
        if conn is None or not conn.ready or conn.draining or self._waiting:
            self._manage_connection(now)
            conn = self._conn
        if conn is not None:
            conn.flush()
        self._update_registration()
        if self._stopping and self._active <= 0:
            self._idle.set()

    def _manage_connection(self, now: int) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            if not conn.ready and now - self._conn_started_ns > self._connect_timeout_ns:
                conn.close(f"connect timed out after {self._connect_timeout_ns / NS_PER_S:g} s")
            elif conn.draining and not conn.streams:
                conn.close("replaced: GOAWAY received or stream ids used up")
        if conn is not None and conn.closed:
            self._drop_connection(conn)
        if self._conn is None and self._waiting:
            conn = self._open_connection()
            if conn.closed:  # refused at once
                self._drop_connection(conn)
        conn = self._conn
        if conn is not None and conn.ready:
            while self._waiting and conn.can_open():
                client = self._waiting.popleft()
                self._recorder.sent()
                conn.open_stream(self._request, client)

    def _drop_connection(self, conn: h2.ClientConnection) -> None:
        self._conn = None
        self._update_registration()
        if not conn.answered:
            # A connection that failed before it answered anything: the requests
            # waiting for it fail, as gRPC's fail-fast calls do, and wait the error
            # pause. Requests waiting behind a connection that worked and then went
            # (GOAWAY, say) get a new connection at once instead.
            while self._waiting:
                self._record_failure(self._waiting.popleft(), "UNAVAILABLE", conn.close_reason)
        for stream in conn.take_finished():
            self._complete(stream)

    def _expire(self, now: int) -> None:
        timeout_ns = self._timeout_ns
        sent_at = self._sent_at
        while self._waiting and sent_at[self._waiting[0]] + timeout_ns <= now:
            self._record_failure(self._waiting.popleft(), "DEADLINE_EXCEEDED", "deadline exceeded")
        conn = self._conn
        if conn is None:
            return
        expired = []
        for stream in conn.streams.values():  # oldest first: stop at the first in time
            if sent_at[stream.tag] + timeout_ns > now:
                break
            expired.append(stream)
        for stream in expired:
            conn.reset_stream(stream)
            self._record_failure(stream.tag, "DEADLINE_EXCEEDED", "deadline exceeded")

    # --- clients ----------------------------------------------------------------------

    def _issue(self, client: int) -> None:
        if self._stopping:
            self._retire()
            return
        self._sent_at[client] = time.perf_counter_ns()
        conn = self._conn
        if conn is not None and not self._waiting and conn.can_open():
            self._recorder.sent()
            conn.open_stream(self._request, client)
        else:
            self._waiting.append(client)

    def _complete(self, stream: h2.Stream) -> None:
        now = time.perf_counter_ns()
        client = stream.tag
        latency_s = (now - self._sent_at[client]) / NS_PER_S
        outcome, detail = self._outcome(stream, latency_s)
        self._recorder.record(now, outcome, detail)
        if outcome.ok:
            if self._stopping:
                self._retire()
            else:
                self._issue(client)
        else:
            self._defer(client, now)

    def _record_failure(self, client: int, code: str, detail: str) -> None:
        now = time.perf_counter_ns()
        latency_s = (now - self._sent_at[client]) / NS_PER_S
        self._recorder.record(now, RequestOutcome(False, latency_s, code), detail)
        self._defer(client, now)

    def _defer(self, client: int, now: int) -> None:
        if self._stopping or self._closing:
            self._retire()
        else:
            heapq.heappush(self._deferred, (now + self._pause_ns, client))

    def _retire(self) -> None:
        self._active -= 1

    def _retire_waiting(self) -> None:
        # Not sent yet: nothing to wait for.
        for _ in range(len(self._deferred) + len(self._waiting)):
            self._retire()
        self._deferred.clear()
        self._waiting.clear()

    def _outcome(self, stream: h2.Stream, latency_s: float) -> tuple[RequestOutcome, str | None]:
        failure = stream.failure
        if failure is not None:
            if failure.kind == "reset":
                code = _RESET_CODES.get(failure.code, "INTERNAL")
            else:  # refused or connection: the server never answered
                code = "UNAVAILABLE"
            return RequestOutcome(False, latency_s, code), failure.detail
        headers = stream.headers or {}
        # Trailers, or a trailers-only response (its status in the headers).
        status_block = stream.trailers if stream.trailers is not None else headers
        status = status_block.get("grpc-status")
        if status is None:
            http_status = headers.get(":status")
            if http_status != "200":
                code = _HTTP_CODES.get(http_status or "", "UNKNOWN")
                return RequestOutcome(False, latency_s, code), f"HTTP status {http_status}"
            return RequestOutcome(False, latency_s, "INTERNAL"), "the response has no grpc-status"
        if status != "0":
            code = _CODE_NAMES.get(int(status), "UNKNOWN") if status.isdigit() else "UNKNOWN"
            return RequestOutcome(False, latency_s, code), _unquote(
                status_block.get("grpc-message", "")
            )
        data = stream.data
        message = data[0] if len(data) == 1 else b"".join(data)
        if (
            len(message) < 5
            or message[0] != 0
            or int.from_bytes(message[1:5], "big") != len(message) - 5
        ):
            detail = "the response is not one uncompressed gRPC message"
            return RequestOutcome(False, latency_s, "INTERNAL"), detail
        try:
            response = pb.PredictResponse.FromString(memoryview(message)[5:])
        except DecodeError as error:
            return RequestOutcome(False, latency_s, "INTERNAL"), f"cannot parse: {error}"
        try:
            failure_text = self._verifier.check(response.outputs)
        except Exception as error:  # a verifier bug must not silence a client
            failure_text = f"verification raised {type(error).__name__}: {error}"
        return RequestOutcome(True, latency_s, None, failure_text), None
