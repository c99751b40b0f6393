"""One client-side HTTP/2 connection (RFC 9113): frames, settings, flow control, streams.

Cleartext HTTP/2 with prior knowledge, as gRPC speaks it, and only the client's
half: requests whose header block and body are prepared once (`PreparedRequest`)
and sent on new streams, responses collected whole (headers, DATA, trailers).
The socket is non-blocking; the owner polls it and calls `receive()` and
`flush()`, and takes the streams that ended with `take_finished()`. Nothing here
knows gRPC: clients/h2engine.py maps streams to calls.

HPACK: request header blocks are encoded here as literals without indexing (no
dynamic table on our side); response header blocks are decoded with the `hpack`
package. The connection advertises a header table size of 0, so a compliant
peer's blocks do not depend on earlier ones, and identical blocks (the same
response headers every time) are decoded once and looked up afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Sequence

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5

# Error codes (RFC 9113 section 7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_FRAME_LIMIT = (1 << 24) - 1
MAX_WINDOW = (1 << 31) - 1
MAX_STREAM_ID = (1 << 31) - 1

# What this client advertises: windows and frames large enough that a 19 MB
# request's response side never waits on us, and no server push.
LOCAL_WINDOW = 16 * 1024 * 1024
LOCAL_MAX_FRAME = MAX_FRAME_LIMIT

_FRAME_HEAD = struct.Struct(">BHBBL")  # 24-bit length as 8 + 16 bits, type, flags, stream id
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")
_IOV_MAX = 512  # buffers per sendmsg call (Linux allows 1024)
_RECV_BYTES = 256 * 1024
_BLOCK_CACHE_LIMIT = 64  # distinct response header blocks remembered

# HPACK static table names a request uses (RFC 7541 appendix A), for literal
# representations with an indexed name.
_STATIC_NAME_INDEX = {
    ":authority": 1,
    ":method": 2,
    ":path": 4,
    ":scheme": 6,
    "content-type": 31,
    "user-agent": 58,
}


class H2Error(Exception):
    """A connection error: the peer broke the protocol (code is an HTTP/2 error code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def frame_head(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    return _FRAME_HEAD.pack(length >> 16, length & 0xFFFF, frame_type, flags, stream_id)


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 section 5.1), `first` holding the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_string(text: str) -> bytes:
    raw = text.encode("ascii")
    return _hpack_int(len(raw), 7, 0x00) + raw  # no Huffman: the block is built once


def encode_header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """HPACK literals without indexing (name indexed where the static table has it)."""
    block = bytearray()
    for name, value in headers:
        index = _STATIC_NAME_INDEX.get(name)
        if index is not None:
            block += _hpack_int(index, 4, 0x00)
        else:
            block += b"\x00" + _hpack_string(name)
        block += _hpack_string(value)
    return bytes(block)


class PreparedRequest:
    """A request sent many times: its header block and body, framed once.

    `head` is the HEADERS frame followed by the head of one DATA frame carrying
    the whole body with END_STREAM; a copy with the stream id patched in, then the
    body, is what goes out whenever the body fits one frame and the send windows.
    """

    def __init__(self, header_block: bytes, body: bytes) -> None:
        if not body:
            raise ValueError("a prepared request has a body")
        self.header_block = header_block
        self.body = body
        self.body_view = memoryview(body)
        # Beyond the largest frame HTTP/2 allows (or a header block beyond the
        # smallest a peer may set), a request always takes the framed path.
        self.head: bytearray | None = None
        if len(body) <= MAX_FRAME_LIMIT and len(header_block) <= DEFAULT_MAX_FRAME:
            self.head = bytearray(
                frame_head(len(header_block), HEADERS, END_HEADERS, 0)
                + header_block
                + frame_head(len(body), DATA, END_STREAM, 0)
            )
        self.data_id_offset = 9 + len(header_block) + 5


class StreamFailure:
    """Why a stream ended without a complete response.

    kind: "reset" (the peer's RST_STREAM, `code` its error code), "refused" (the
    peer never processed it: its id above a GOAWAY's last, or REFUSED_STREAM), or
    "connection" (the connection failed or closed under it).
    """

    __slots__ = ("code", "detail", "kind")

    def __init__(self, kind: str, code: int, detail: str) -> None:
        self.kind = kind
        self.code = code
        self.detail = detail


class Stream:
    """One request/response exchange; `tag` is the owner's (a client index, say)."""

    __slots__ = (
        "body",
        "data",
        "failure",
        "headers",
        "local_done",
        "offset",
        "recv_unacked",
        "send_window",
        "stream_id",
        "tag",
        "trailers",
    )

    def __init__(self, stream_id: int, tag: int, send_window: int) -> None:
        self.stream_id = stream_id
        self.tag = tag
        self.send_window = send_window
        self.body: memoryview | None = None  # what is left to send
        self.offset = 0
        self.local_done = False  # END_STREAM sent
        self.recv_unacked = 0
        self.headers: dict[str, str] | None = None
        self.trailers: dict[str, str] | None = None
        self.data: list[bytes] = []
        self.failure: StreamFailure | None = None


class ClientConnection:
    """The client end of one HTTP/2 connection over a non-blocking socket.

    Life: `connect()` starts a TCP connect; once the socket is writable and the
    peer's first SETTINGS has arrived, `ready` is true and streams may be opened
    while `can_open()` says so. The connection stops taking streams after a
    GOAWAY or when stream ids run out (`draining`); `closed` is final, with the
    reason in `close_reason`. Every stream that ends lands in `take_finished()`.
    """

    def __init__(self, sock: socket.socket, *, max_stream_id: int = MAX_STREAM_ID) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.connecting = True
        self.ready = False  # the peer's SETTINGS arrived; false again once closed
        self.answered = 0  # streams that ended with a response
        self.closed = False
        self.close_reason = ""
        self.goaway: tuple[int, int, str] | None = None  # last stream id, code, debug data
        self.max_stream_id = max_stream_id
        self.streams: dict[int, Stream] = {}  # open streams in the order they were opened
        self._finished: list[Stream] = []
        self._next_id = 1
        self._out: list[bytes | bytearray | memoryview] = []
        self._senders: list[Stream] = []  # streams with body left to send, in order
        self._send_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._peer_max_streams = MAX_STREAM_ID  # unlimited until the peer says otherwise
        self._recv_unacked = 0
        self._header_block_sent = False
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, block
        self._decoder = hpack.Decoder()
        self._block_cache: dict[bytes, dict[str, str]] = {}
        self._rbuf = bytearray(_RECV_BYTES)
        self._rview = memoryview(self._rbuf)
        self._pending = bytearray()  # an incomplete frame carried over to the next read
        self._out.append(
            PREFACE
            + _settings_frame(
                (SETTINGS_HEADER_TABLE_SIZE, 0),
                (SETTINGS_ENABLE_PUSH, 0),
                (SETTINGS_INITIAL_WINDOW_SIZE, LOCAL_WINDOW),
                (SETTINGS_MAX_FRAME_SIZE, LOCAL_MAX_FRAME),
            )
            # The connection window only grows by WINDOW_UPDATE.
            + frame_head(4, WINDOW_UPDATE, 0, 0)
            + _U32.pack(LOCAL_WINDOW - DEFAULT_WINDOW)
        )

    @classmethod
    def connect(
        cls, family: int, address: tuple, *, max_stream_id: int = MAX_STREAM_ID
    ) -> ClientConnection:
        """Start a non-blocking connect; the connection is usable once `ready`."""
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = cls(sock, max_stream_id=max_stream_id)
        error = sock.connect_ex(address)
        if error not in (0, errno.EINPROGRESS):
            conn._fail(f"connect to {_show(address)}: {errno.errorcode.get(error, error)}")
        return conn

    # --- state ------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        """No new streams will be taken (GOAWAY, or stream ids used up)."""
        return self.goaway is not None or self._next_id > self.max_stream_id

    def can_open(self) -> bool:
        return (
            self.ready
            and not self.closed
            and self.goaway is None
            and self._next_id <= self.max_stream_id
            and len(self.streams) < self._peer_max_streams
        )

    @property
    def wants_write(self) -> bool:
        return self.connecting or bool(self._out)

    def take_finished(self) -> list[Stream]:
        """The streams that ended since the last call (responses, resets, failures)."""
        finished, self._finished = self._finished, []
        return finished

    # --- sending ----------------------------------------------------------------------

    def open_stream(self, request: PreparedRequest, tag: int) -> Stream:
        """Send `request` on a new stream (only when `can_open()`)."""
        stream_id = self._next_id
        self._next_id += 2
        stream = Stream(stream_id, tag, self._peer_initial_window)
        self.streams[stream_id] = stream
        size = len(request.body)
        head = request.head
        if (
            head is not None
            and self._header_block_sent
            and not self._senders
            and size <= self._peer_max_frame
            and size <= self._send_window
            and size <= stream.send_window
        ):
            head = head.copy()
            _U32.pack_into(head, 5, stream_id)
            _U32.pack_into(head, request.data_id_offset, stream_id)
            self._out.append(head)
            self._out.append(request.body)
            self._send_window -= size
            stream.send_window -= size
            stream.local_done = True
            return stream
        block = request.header_block
        if not self._header_block_sent:
            # Our encoder keeps no dynamic table; say so once, so that no later
            # change of the peer's SETTINGS_HEADER_TABLE_SIZE needs an update.
            block = b"\x20" + block
            self._header_block_sent = True
        self._queue_header_block(stream_id, block)
        stream.body = request.body_view
        self._senders.append(stream)
        self._pump()
        return stream

    def _queue_header_block(self, stream_id: int, block: bytes) -> None:
        limit = self._peer_max_frame
        first, rest = block[:limit], block[limit:]
        self._out.append(
            frame_head(len(first), HEADERS, 0 if rest else END_HEADERS, stream_id) + first
        )
        while rest:
            part, rest = rest[:limit], rest[limit:]
            flags = 0 if rest else END_HEADERS
            self._out.append(frame_head(len(part), CONTINUATION, flags, stream_id) + part)

    def _pump(self) -> None:
        """Send body DATA as far as the connection and stream windows allow."""
        senders = self._senders
        index = 0
        while index < len(senders) and self._send_window > 0:
            stream = senders[index]
            body = stream.body
            total = len(body)
            while stream.offset < total:
                size = min(
                    total - stream.offset,
                    self._send_window,
                    stream.send_window,
                    self._peer_max_frame,
                )
                if size <= 0:
                    break
                end = stream.offset + size
                flags = END_STREAM if end == total else 0
                self._out.append(frame_head(size, DATA, flags, stream.stream_id))
                self._out.append(body[stream.offset : end])
                stream.offset = end
                self._send_window -= size
                stream.send_window -= size
            if stream.offset >= total:
                stream.local_done = True
                stream.body = None
                senders.pop(index)
            else:
                index += 1

    def reset_stream(self, stream: Stream, code: int = CANCEL) -> None:
        """Abandon a stream (the owner's deadline passed); it is not reported as finished."""
        if self.streams.pop(stream.stream_id, None) is None or self.closed:
            return
        self._drop_sender(stream)
        self._out.append(frame_head(4, RST_STREAM, 0, stream.stream_id) + _U32.pack(code))

    def _drop_sender(self, stream: Stream) -> None:
        if stream.body is not None:
            stream.body = None
            self._senders.remove(stream)

    def flush(self) -> None:
        """Write what the socket takes now; the rest waits for the next flush."""
        out = self._out
        if self.connecting or self.closed or not out:
            return
        sock = self.sock
        while out:
            try:
                sent = sock.sendmsg(out[:_IOV_MAX])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._fail(f"send: {error.strerror or error}")
                return
            count = 0
            for buffer in out:
                size = len(buffer)
                if sent < size:
                    break
                sent -= size
                count += 1
            if count:
                del out[:count]
            if sent:
                out[0] = memoryview(out[0])[sent:]
                return  # the socket is full

    def on_writable(self) -> None:
        if self.connecting:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                self._fail(f"connect: {errno.errorcode.get(error, error)} ({os.strerror(error)})")
                return
            self.connecting = False
        self.flush()

    # --- receiving --------------------------------------------------------------------

    def receive(self) -> None:
        """Read what has arrived and act on each complete frame."""
        if self.closed:
            return
        if self.connecting:
            self.on_writable()  # a refused connect shows as readable too
            if self.closed or self.connecting:
                return
        try:
            count = self.sock.recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._fail(f"connection lost: {error.strerror or error}")
            return
        if count == 0:
            self._fail("connection closed by the peer")
            return
        try:
            if self._pending:
                pending = self._pending
                pending += self._rview[:count]
                view = memoryview(pending)
                try:
                    used = self._frames(view, len(pending))
                finally:
                    view.release()
                del pending[:used]
            else:
                used = self._frames(self._rview, count)
                if used < count:
                    self._pending += self._rview[used:count]
        except H2Error as error:
            self._fail(f"protocol error: {error}", code=error.code)
            return
        if self._senders:  # windows may have opened
            self._pump()

    def _frames(self, buf: memoryview, end: int) -> int:
        """Handle the complete frames in buf[:end]; the count of bytes used."""
        pos = 0
        unpack = _FRAME_HEAD.unpack_from
        while end - pos >= 9 and not self.closed:
            high, low, frame_type, flags, stream_id = unpack(buf, pos)
            length = high << 16 | low
            if length > LOCAL_MAX_FRAME:
                raise H2Error(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            start = pos + 9
            if end - start < length:
                break
            pos = start + length
            stream_id &= MAX_STREAM_ID
            if self._continuation is not None and frame_type != CONTINUATION:
                raise H2Error(PROTOCOL_ERROR, "a header block was interrupted")
            if frame_type == DATA:
                self._on_data(buf, start, length, flags, stream_id)
            elif frame_type == HEADERS:
                self._on_headers(buf, start, length, flags, stream_id)
            elif frame_type == WINDOW_UPDATE:
                self._on_window_update(buf, start, length, stream_id)
            elif frame_type == PING:
                if length != 8 or stream_id:
                    raise H2Error(FRAME_SIZE_ERROR, "a malformed PING")
                if not flags & ACK:
                    self._out.append(frame_head(8, PING, ACK, 0) + bytes(buf[start:pos]))
            elif frame_type == SETTINGS:
                self._on_settings(buf, start, length, flags, stream_id)
            elif frame_type == CONTINUATION:
                self._on_continuation(buf, start, length, flags, stream_id)
            elif frame_type == RST_STREAM:
                if length != 4 or not stream_id:
                    raise H2Error(FRAME_SIZE_ERROR, "a malformed RST_STREAM")
                (code,) = _U32.unpack_from(buf, start)
                stream = self.streams.get(stream_id)
                if stream is not None:
                    kind = "refused" if code == REFUSED_STREAM else "reset"
                    self._end(stream, StreamFailure(kind, code, f"stream reset ({code:#x})"))
            elif frame_type == GOAWAY:
                self._on_goaway(buf, start, length)
            elif frame_type == PUSH_PROMISE:
                raise H2Error(PROTOCOL_ERROR, "PUSH_PROMISE with push disabled")
            # PRIORITY and unknown frame types are ignored, as RFC 9113 asks.
        return pos

    def _on_data(self, buf: memoryview, start: int, length: int, flags: int, sid: int) -> None:
        if not sid:
            raise H2Error(PROTOCOL_ERROR, "DATA on stream 0")
        # The whole frame, padding included, counts against the windows.
        self._recv_unacked += length
        if self._recv_unacked >= LOCAL_WINDOW // 2:
            self._out.append(frame_head(4, WINDOW_UPDATE, 0, 0) + _U32.pack(self._recv_unacked))
            self._recv_unacked = 0
        stream = self.streams.get(sid)
        if stream is None:
            return  # a stream we reset or never opened: only the windows care
        start, end = _unpadded(buf, start, length, flags)
        if end > start:
            stream.data.append(bytes(buf[start:end]))
        if flags & END_STREAM:
            self._end(stream, None)
            return
        stream.recv_unacked += length
        if stream.recv_unacked >= LOCAL_WINDOW // 2:
            self._out.append(frame_head(4, WINDOW_UPDATE, 0, sid) + _U32.pack(stream.recv_unacked))
            stream.recv_unacked = 0

    def _on_headers(self, buf: memoryview, start: int, length: int, flags: int, sid: int) -> None:
        if not sid:
            raise H2Error(PROTOCOL_ERROR, "HEADERS on stream 0")
        start, end = _unpadded(buf, start, length, flags)
        if flags & PRIORITY_FLAG:
            start += 5
        if start > end:
            raise H2Error(FRAME_SIZE_ERROR, "a HEADERS frame too short for its flags")
        if flags & END_HEADERS:
            self._header_block(sid, bytes(buf[start:end]), flags & END_STREAM)
        else:
            self._continuation = (sid, flags, bytearray(buf[start:end]))

    def _on_continuation(
        self, buf: memoryview, start: int, length: int, flags: int, sid: int
    ) -> None:
        if self._continuation is None or self._continuation[0] != sid:
            raise H2Error(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        block = self._continuation[2]
        block += buf[start : start + length]
        if flags & END_HEADERS:
            first_flags = self._continuation[1]
            self._continuation = None
            self._header_block(sid, bytes(block), first_flags & END_STREAM)

    def _header_block(self, sid: int, block: bytes, end_stream: int) -> None:
        # Every block is decoded, also a forgotten stream's, to keep HPACK's state.
        headers = self._decode(block)
        stream = self.streams.get(sid)
        if stream is None:
            return
        if stream.headers is None:
            stream.headers = headers
        else:
            stream.trailers = headers
        if end_stream:
            self._end(stream, None)

    def _decode(self, block: bytes) -> dict[str, str]:
        cached = self._block_cache.get(block)
        if cached is not None:
            return cached
        table = self._decoder.header_table
        # A block is a function of its bytes alone when it neither uses nor
        # changes the dynamic table: then it can be remembered.
        cacheable = not table.dynamic_entries and not (block and block[0] & 0xE0 == 0x20)
        try:
            headers = dict(self._decoder.decode(block))
        except (hpack.HPACKError, UnicodeDecodeError) as error:
            raise H2Error(COMPRESSION_ERROR, f"a header block cannot be decoded: {error}") from None
        if cacheable and not table.dynamic_entries:
            if len(self._block_cache) >= _BLOCK_CACHE_LIMIT:
                self._block_cache.clear()
            self._block_cache[block] = headers
        return headers

    def _on_window_update(self, buf: memoryview, start: int, length: int, sid: int) -> None:
        if length != 4:
            raise H2Error(FRAME_SIZE_ERROR, "a malformed WINDOW_UPDATE")
        (increment,) = _U32.unpack_from(buf, start)
        increment &= MAX_WINDOW
        if not sid:
            if not increment:
                raise H2Error(PROTOCOL_ERROR, "a connection WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise H2Error(FLOW_CONTROL_ERROR, "the connection window overflowed")
            return
        stream = self.streams.get(sid)
        if stream is None:
            return
        if not increment or stream.send_window + increment > MAX_WINDOW:
            code = FLOW_CONTROL_ERROR if increment else PROTOCOL_ERROR
            self._out.append(frame_head(4, RST_STREAM, 0, sid) + _U32.pack(code))
            stream.local_done = True  # the RST_STREAM above ends our side
            self._drop_sender(stream)
            self._end(stream, StreamFailure("reset", code, "the peer sent a bad WINDOW_UPDATE"))
            return
        stream.send_window += increment

    def _on_settings(self, buf: memoryview, start: int, length: int, flags: int, sid: int) -> None:
        if sid:
            raise H2Error(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            return
        if length % 6:
            raise H2Error(FRAME_SIZE_ERROR, "a SETTINGS frame of odd length")
        for offset in range(start, start + length, 6):
            key, value = _SETTING.unpack_from(buf, offset)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise H2Error(FLOW_CONTROL_ERROR, f"an initial window of {value}")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= MAX_FRAME_LIMIT:
                    raise H2Error(PROTOCOL_ERROR, f"a max frame size of {value}")
                self._peer_max_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
            # HEADER_TABLE_SIZE needs nothing: our encoder keeps no dynamic table.
        self._out.append(frame_head(0, SETTINGS, ACK, 0))
        self.ready = True

    def _on_goaway(self, buf: memoryview, start: int, length: int) -> None:
        if length < 8:
            raise H2Error(FRAME_SIZE_ERROR, "a malformed GOAWAY")
        last_id, code = _GOAWAY.unpack_from(buf, start)
        last_id &= MAX_STREAM_ID
        debug = bytes(buf[start + 8 : start + length]).decode("utf-8", "replace")
        self.goaway = (last_id, code, debug)
        detail = f"GOAWAY ({code:#x}{': ' + debug if debug else ''})"
        for stream in [s for sid, s in self.streams.items() if sid > last_id]:
            self._end(stream, StreamFailure("refused", code, f"not processed: {detail}"))

    def _end(self, stream: Stream, failure: StreamFailure | None) -> None:
        del self.streams[stream.stream_id]
        stream.failure = failure
        if failure is None:
            self.answered += 1
        if not stream.local_done and not self.closed:
            # The response came before the whole request went out (an early error):
            # stop sending it.
            self._drop_sender(stream)
            self._out.append(frame_head(4, RST_STREAM, 0, stream.stream_id) + _U32.pack(CANCEL))
        self._finished.append(stream)

    # --- closing ----------------------------------------------------------------------

    def _fail(self, reason: str, code: int = NO_ERROR) -> None:
        """The connection is unusable: every open stream fails with `reason`."""
        if self.closed:
            return
        if code != NO_ERROR and not self.connecting:
            # Tell the peer why, if the socket still takes it.
            self._out = [_goaway_frame(code, reason)]
            self._try_flush_once()
        self._close_socket(reason)
        for stream in list(self.streams.values()):
            self._end(stream, StreamFailure("connection", code, reason))

    def close(self, reason: str = "closed by the client") -> None:
        """Close gracefully (GOAWAY); streams still open fail with `reason`."""
        if self.closed:
            return
        if not self.connecting:
            self._out.append(_goaway_frame(NO_ERROR, ""))
            self._try_flush_once()
        self._close_socket(reason)
        for stream in list(self.streams.values()):
            self._end(stream, StreamFailure("connection", CANCEL, reason))

    def _try_flush_once(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendmsg(self._out[:_IOV_MAX])

    def _close_socket(self, reason: str) -> None:
        self.closed = True
        self.ready = False
        self.close_reason = reason
        self._out = []
        self._senders = []
        self.sock.close()


def _settings_frame(*settings: tuple[int, int]) -> bytes:
    payload = b"".join(_SETTING.pack(key, value) for key, value in settings)
    return frame_head(len(payload), SETTINGS, 0, 0) + payload


def _goaway_frame(code: int, debug: str) -> bytes:
    payload = _GOAWAY.pack(0, code) + debug.encode()[:256]
    return frame_head(len(payload), GOAWAY, 0, 0) + payload


def _show(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unpadded(buf: memoryview, start: int, length: int, flags: int) -> tuple[int, int]:
    """Where a DATA or HEADERS frame's content lies, its padding (if PADDED) left out."""
    end = start + length
    if flags & PADDED:
        if not length or buf[start] >= length:
            raise H2Error(PROTOCOL_ERROR, "padding longer than the frame")
        end -= buf[start]
        start += 1
    return start, end
