"""HTTP/1.1 server connection: httptools' C parser under an asyncio Protocol.

One ``HttpConnection`` per socket. It frames requests (Content-Length or chunked),
bounds bodies as ``--http-max-input-size`` says (``_native.http_messages``: the JSON or
raw part, a decompressed body, and every body by the cap), undoes
``Content-Encoding: gzip|deflate``, and hands each complete message to the frontend's
handler together with a ``Slot``. The handler fills the slot now or later (inference
completes on the event loop via the core's future); responses are written strictly
in request order, so pipelined requests on one connection are answered in order
while still being processed concurrently.

The request head is bounded before httptools buffers it: a URL, header name or header
value of 8 KiB or more closes the connection without an answer, as Triton's HTTP
server does; a head over ``max_header_size`` bytes or with more than
``max_header_count`` fields (limits Triton does not have) is answered 431 and closed.
"""

from __future__ import annotations

import asyncio
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable

import httptools

from tritonx import _native
from tritonx.errors import TritonXError
from tritonx.frontends.http_message import HttpMessage, Slot
from tritonx.frontends.http_responses import TEXT, error_response
from tritonx.frontends.http_routes import log_request

# Pipelined requests beyond this many unanswered ones stop the reads until the
# connection catches up, so one client cannot queue unbounded work.
_MAX_PIPELINE = 128
_RESUME_PIPELINE = 32
# One read can hold hundreds of pipelined requests. Their handlers run for at most
# this long per loop iteration; the rest wait for the next one, so that other
# connections (health probes) are served in between.
_HANDLER_SLICE_S = 0.002
# uvloop (libuv) reads a readable socket up to 32 times in one go; while a large
# body arrives each read costs ~0.25 ms (parse, copy, fresh pages), so one upload
# held the loop for ~8 ms at a time. After this many bytes a connection stops
# reading until the loop has gone round once (other connections served).
_READ_SLICE_BYTES = 256 * 1024

# Triton (libevhtp) drops the connection, without answering, when a URL, header
# name or header value reaches 8 KiB; checked with tritonserver 2.51.
MAX_FIELD_SIZE = 8191
DEFAULT_MAX_HEADER_SIZE = 64 * 1024
# Two fields of the largest allowed size plus separators and the request line's.
_MAX_UNREPORTED = 2 * (MAX_FIELD_SIZE + 4) + 32
DEFAULT_MAX_HEADER_COUNT = 1000


Handler = Callable[[HttpMessage, Slot], None]


class _TooLarge(Exception):
    pass


# A body's JSON size from its head and size: -1 the whole body, 0 a raw body, None
# when the head's framing does not parse (the request's parser refuses it then).
JsonSize = Callable[[dict[bytes, bytes], int], int | None]


def kserve_json_size(headers: dict[bytes, bytes], body_size: int) -> int | None:
    """The KServe binary extension's ``Inference-Header-Content-Length``."""
    value = headers.get(b"inference-header-content-length")
    if value is None:
        return -1
    try:
        return int(_native.parse_header_length(value.decode("latin-1"), body_size))
    except TritonXError:
        return None


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head over the limits."""


_CLOSE = -1  # _refused: drop the connection without answering (Triton's way)
# First look for a reset after a client's FIN (then backing off to 1 s).
_PEER_CHECK_S = 0.05
# Between requests; replaced by a fresh message when the next one begins.
_NO_MESSAGE = HttpMessage()


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_cap",
        "_body_size",
        "_closing",
        "_connections",
        "_deferred",
        "_handler",
        "_head_bytes",
        "_head_fields",
        "_head_seen",
        "_in_head",
        "_inflate",
        "_json_size",
        "_keep_raw",
        "_max_header_count",
        "_max_header_size",
        "_max_input",
        "_message",
        "_parser",
        "_pipeline_paused",
        "_queue",
        "_read_bytes",
        "_read_yield",
        "_refusal",
        "_refusal_status",
        "_refused",
        "_slice_end",
        "_transport",
        "_write_paused",
    )

    def __init__(
        self,
        handler: Handler,
        max_input_size: int,
        connections: set[HttpConnection],
        *,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
        keep_raw_headers: bool = False,
        decompress: bool = True,
        json_size: JsonSize = kserve_json_size,
    ) -> None:
        """``decompress``: undo ``Content-Encoding`` before the handler sees the
        body (the SageMaker endpoint reads bodies as they come, as Triton's does).
        ``json_size``: where a body's JSON ends (cloud endpoints frame it in the
        content type)."""
        self._handler = handler
        self._inflate = decompress
        self._json_size = json_size
        self._max_input = max_input_size
        self._body_cap = _native.http_messages.body_cap(max_input_size)
        self._max_header_size = max_header_size
        self._max_header_count = max_header_count
        self._keep_raw = keep_raw_headers
        self._connections = connections
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[Slot] = deque()
        self._message = _NO_MESSAGE
        # The first chunk is kept as is (no copy for one-chunk bodies); later chunks
        # go into one growing bytearray, so a large body is never held twice.
        self._body: bytes | bytearray = b""
        self._body_size = 0
        # The answer to a body refused while it arrives (its bytes are dropped).
        self._refusal: str | None = None
        self._refusal_status = 400
        self._pipeline_paused = False
        self._write_paused = False
        # Bytes read since this connection last let the loop go round, and whether
        # it is doing so now (see _READ_SLICE_BYTES).
        self._read_bytes = 0
        self._read_yield = False
        self._closing = False
        # Head accounting: bytes received while a head is incomplete, bytes of the
        # URL and fields httptools has reported, and the field count.
        self._in_head = True
        self._head_bytes = 0
        self._head_seen = 0
        self._head_fields = 0
        self._refused = 0  # 0, _CLOSE or the status answered
        # Complete requests whose handlers wait for a later loop iteration, in
        # order (as _handle takes them), and when this iteration's handler time ends.
        self._deferred: deque[tuple[HttpMessage, Slot, str | None, int]] = deque()
        self._slice_end = 0.0

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        # Nobody will read these answers: cancel what is still being worked on.
        abandoned = [slot for slot in self._queue if slot.data is None]
        self._queue.clear()
        self._deferred.clear()  # never handled: nobody is there to answer
        for slot in abandoned:
            if slot.on_lost is not None:
                slot.on_lost()
        # The parser and this protocol reference each other, so this object
        # lives until a full GC; it must not keep a request body that long.
        self._message = _NO_MESSAGE
        self._body = b""

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the connection is being closed; what follows is not read
        self._slice_end = time.perf_counter() + _HANDLER_SLICE_S
        self._read_bytes += len(data)
        if self._read_bytes >= _READ_SLICE_BYTES and not self._read_yield:
            self._read_yield = True
            self._update_reading()
            asyncio.get_running_loop().call_soon(self._end_read_yield)
        if self._in_head:
            # httptools buffers a partial URL or header field internally and
            # reports it only once complete, so the head is bounded here, per
            # chunk, before an endless header line can grow that buffer.
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Bad Request")
            return
        except httptools.HttpParserError:
            if self._refused:
                self._refuse_head()
            else:
                self._fail(400, "Bad Request")
            return
        if not self._in_head:
            return
        # Bytes httptools holds but has not reported: the field being read and,
        # at most, the complete one before it (reported when the next begins).
        if self._head_bytes - self._head_seen > _MAX_UNREPORTED:
            self._refused = _CLOSE  # a field over Triton's limit
            self._refuse_head()
        elif self._head_bytes > self._max_header_size:
            self._refused = 431
            self._refuse_head()

    def eof_received(self) -> bool | None:
        """The client half-closed after its requests (``nc -N``, some proxies):
        answer what is owed, then close, as Triton does. A TLS transport cannot
        stay half-open, so it closes at once."""
        transport = self._transport
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return None
        if self._queue and self._queue[0].streaming:
            # Mid-stream, an interim response cannot be sent: a client that
            # half-closes a stream counts as gone (the native engine's rule).
            self._queue[0].abandon()
            return None
        if any(slot.data is None for slot in self._queue):
            # A FIN means either "done sending" or "gone". An interim response
            # (every HTTP/1.1 client must skip 1xx answers it did not ask for)
            # tells them apart: a client that is gone answers it with a reset,
            # and then its requests are cancelled at once instead of after the
            # model has run them.
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            asyncio.get_running_loop().call_later(
                _PEER_CHECK_S, self._check_peer, _PEER_CHECK_S
            )
        self.shutdown()
        return True

    def _check_peer(self, delay: float) -> None:
        """After a FIN: a reset from the peer leaves an error on the socket (nothing
        reads it while the connection is half-closed); end the connection on it."""
        transport = self._transport
        if transport is None or not any(s.data is None for s in self._queue):
            return
        sock = transport.get_extra_info("socket")
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if sock else 0
        if error:
            transport.abort()  # connection_lost cancels what is owed
            return
        delay = min(delay * 2, 1.0)
        asyncio.get_running_loop().call_later(delay, self._check_peer, delay)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    # -- httptools callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        self._message = HttpMessage()
        if self._keep_raw:
            self._message.raw_headers = []
        self._body = b""
        self._body_size = 0
        self._refusal = None
        self._refusal_status = 400
        self._head_seen = 0
        self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        message = self._message
        if len(message.url) + len(url) > MAX_FIELD_SIZE:
            self._refused = _CLOSE
            raise _HeadRefused
        message.url += url
        self._head_seen += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) > MAX_FIELD_SIZE or len(value) > MAX_FIELD_SIZE:
            self._refused = _CLOSE
            raise _HeadRefused
        self._head_fields += 1
        if self._head_fields > self._max_header_count:
            self._refused = 431
            raise _HeadRefused
        self._head_seen += len(name) + len(value) + 4
        message = self._message
        message.headers.setdefault(name.lower(), value)
        if message.raw_headers is not None:
            message.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        # data_received bounds a head still arriving; one that ends in the same
        # chunk as the bytes that take it over the limit is caught here, before
        # its request is handled.
        if self._head_seen > self._max_header_size:
            self._refused = 431
            raise _HeadRefused
        self._in_head = False
        message = self._message
        message.method = self._parser.get_method()
        length = message.headers.get(b"content-length")
        if length is not None and length.isdigit():
            # Decided before reading: a refused body is dropped as it arrives.
            self._refusal = self._size_refusal(message.headers, int(length))

    def on_body(self, body: bytes) -> None:
        if self._refusal is not None:
            return
        self._body_size += len(body)
        if self._body_size > self._body_cap:
            self._refusal = _native.http_messages.body_too_large(self._body_cap)
            self._body = b""
            return
        current = self._body
        try:
            if not current:
                self._body = body
            elif isinstance(current, bytearray):
                current += body
            else:
                grown = bytearray(current)
                grown += body
                self._body = grown
        except MemoryError:  # the server's memory, not the request: 503, as native
            length = self._message.headers.get(b"content-length", b"")
            size = int(length) if length.isdigit() else self._body_size
            self._refusal = _native.http_messages.body_out_of_memory(size)
            self._refusal_status = 503
            self._body = b""

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        message = self._message
        # The handler owns the message now; an idle keep-alive connection must
        # not hold on to the last (maybe huge) body.
        self._message = _NO_MESSAGE
        message.keep_alive = self._parser.should_keep_alive()
        if message.url[:1] != b"/":  # an absolute-form target: routed by its path
            message.url = _native.http_messages.origin_form(message.url)
        message.http11 = self._parser.get_http_version() == "1.1"
        log_request(message.method, message.url)
        slot = Slot(self, message.keep_alive)
        self._queue.append(slot)
        if len(self._queue) > _MAX_PIPELINE:
            self._pipeline_paused = True
            self._update_reading()
        if self._refusal is None and b"content-length" not in message.headers:
            # a chunked body: its size is known only now
            self._refusal = self._size_refusal(message.headers, self._body_size)
        refusal, status = self._refusal, self._refusal_status
        if refusal is None:
            message.body = self._body
        self._body = b""
        if self._deferred or time.perf_counter() > self._slice_end:
            self._deferred.append((message, slot, refusal, status))
            if len(self._deferred) == 1:
                asyncio.get_running_loop().call_soon(self._handle_deferred)
        else:
            self._handle(message, slot, refusal, status)

    def _handle_deferred(self) -> None:
        """Runs deferred handlers for one time slice; reschedules itself for the rest."""
        deferred = self._deferred
        if not deferred:
            return  # the connection was lost
        self._slice_end = time.perf_counter() + _HANDLER_SLICE_S
        self._handle(*deferred.popleft())
        while deferred and time.perf_counter() <= self._slice_end:
            self._handle(*deferred.popleft())
        if deferred:
            asyncio.get_running_loop().call_soon(self._handle_deferred)

    def _handle_all_deferred(self) -> None:
        while self._deferred:
            self._handle(*self._deferred.popleft())

    def _handle(
        self, message: HttpMessage, slot: Slot, refusal: str | None, status: int
    ) -> None:
        """Answers a complete request: ``refusal`` (with ``status``) when its body
        was refused while it arrived, else through the handler."""
        if refusal is not None:
            slot.done(error_response(status, refusal))
            return
        encoding = message.headers.get(b"content-encoding")
        if encoding is not None and message.body and self._inflate:
            try:
                message.body = self._decompress(encoding, message.body)
            except _TooLarge:
                refusal = _native.http_messages.body_too_large(self._max_input)
                slot.done(error_response(400, refusal))
                return
            except _Unsupported:
                # text/plain: Triton answers it only for an infer request, before
                # its handler sets a content type.
                slot.done(
                    error_response(
                        501,
                        _native.http_messages.unsupported_compression(),
                        b"Accept-Encoding: gzip, deflate\r\n",
                        TEXT,
                    )
                )
                return
            except zlib.error as exc:
                slot.done(
                    error_response(
                        400, _native.http_messages.decompress_failed(str(exc))
                    )
                )
                return
        try:
            self._handler(message, slot)
        except Exception as exc:  # a handler bug must not kill the connection
            slot.done(error_response(500, str(exc) or type(exc).__name__))

    # -- helpers ------------------------------------------------------------------

    def _size_refusal(self, headers: dict[bytes, bytes], size: int) -> str | None:
        """Why a body of ``size`` bytes is refused (None: it is not, or not before
        it is decompressed, which bounds it whole)."""
        if size <= self._max_input:  # within every bound (most requests)
            return None
        if size > self._body_cap:
            return _native.http_messages.body_too_large(self._body_cap)
        encoding = headers.get(b"content-encoding", b"").strip().lower()
        if self._inflate and encoding not in (b"", b"identity"):
            return None
        json_size = self._json_size(headers, size)
        if json_size is None:
            return None
        refusal = _native.http_messages.input_size_error(
            json_size, size, self._max_input
        )
        return refusal or None

    def _decompress(
        self, encoding: bytes, body: bytes | bytearray
    ) -> bytes | bytearray:
        encoding = encoding.strip().lower()
        if encoding in (b"", b"identity"):
            return body
        if encoding == b"gzip":
            wbits = 16 + zlib.MAX_WBITS
        elif encoding == b"deflate":
            # zlib-wrapped, as tritonclient sends; the +32 also takes gzip headers.
            wbits = 32 + zlib.MAX_WBITS
        else:
            raise _Unsupported
        inflater = zlib.decompressobj(wbits)
        # Inflate at most one byte past the limit so a small bomb costs little.
        out = inflater.decompress(body, self._max_input + 1)
        if len(out) > self._max_input or inflater.unconsumed_tail:
            raise _TooLarge
        return out

    def flush(self) -> None:
        """Write every finished response at the head of the queue, and the parts of
        a streamed one that has reached the head."""
        transport = self._transport
        queue = self._queue
        while queue:
            slot = queue[0]
            parts = slot.parts
            if parts is not None:
                slot.parts = None
                slot.parts_size = 0
                if transport is not None:
                    transport.writelines(parts)
            data = slot.data
            if data is None:
                break
            queue.popleft()
            if transport is None:
                continue
            if len(data) == 1:
                transport.write(data[0])
            elif data:
                transport.writelines(data)
            if not slot.keep_alive:
                transport.close()
                self._transport = transport = None
        if self._pipeline_paused and len(queue) <= _RESUME_PIPELINE:
            self._pipeline_paused = False
            self._update_reading()
        if self._closing and not queue and transport is not None:
            transport.close()

    def connected(self) -> bool:
        return self._transport is not None

    def unsent_bytes(self) -> int:
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def drop(self) -> None:
        """Abort the connection now; nothing more is written to it."""
        transport = self._transport
        self._transport = None
        if transport is not None:
            transport.abort()

    def _end_read_yield(self) -> None:
        self._read_bytes = 0
        self._read_yield = False
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if (
            self._pipeline_paused
            or self._write_paused
            or self._refused
            or self._read_yield
        ):
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _refuse_head(self) -> None:
        """Stop reading and close once the answers owed are written; a 431 is
        queued behind them so that pipelined answers keep their order."""
        transport = self._transport
        if transport is None:
            return
        transport.pause_reading()
        if self._refused != _CLOSE:
            slot = Slot(self, keep_alive=False)
            self._queue.append(slot)
            slot.done(
                error_response(
                    431,
                    _native.http_messages.head_too_large(
                        self._max_header_size, self._max_header_count
                    ),
                    b"Connection: close\r\n",
                )
            )
        else:
            self.shutdown()

    def _fail(self, status: int, message: str) -> None:
        # The requests before the bad one are handled first, as if handled inline.
        self._handle_all_deferred()
        transport = self._transport
        if transport is not None:
            data = error_response(status, message, b"Connection: close\r\n")
            transport.writelines(data)
            transport.close()
            self._transport = None

    def busy(self) -> bool:
        return bool(self._queue)

    def shutdown(self) -> None:
        """Close once the responses already owed have been written."""
        self._closing = True
        if not self._queue and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class _Unsupported(Exception):
    pass
