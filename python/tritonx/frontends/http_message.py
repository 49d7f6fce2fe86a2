"""One HTTP request as the Python engine's handlers see it (``HttpMessage``) and
where its response goes (``Slot``), kept by ``http_protocol.HttpConnection`` in
request order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from tritonx.frontends.http_responses import Buffer

if TYPE_CHECKING:
    from tritonx.frontends.http_protocol import HttpConnection


class HttpMessage:
    """One complete request as the handler sees it."""

    __slots__ = (
        "body",
        "headers",
        "http11",
        "keep_alive",
        "method",
        "raw_headers",
        "url",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        # Lower-cased names; the first of repeated headers wins, as in libevhtp.
        self.headers: dict[bytes, bytes] = {}
        # Names as sent, in order; kept only for header forwarding.
        self.raw_headers: list[tuple[bytes, bytes]] | None = None
        self.body: bytes | bytearray = b""
        self.keep_alive = True
        self.http11 = True  # False for HTTP/1.0, which has no chunked replies


class SendTrace(Protocol):
    """What a traced request's slot stamps around the write of its response."""

    def sending(self) -> None: ...
    def sent(self) -> None: ...


class Slot:
    """Where the response to one request goes: filled exactly once (``done``), or
    streamed in parts (``send_part``) and then ended with ``done``. Responses are
    written in request order: parts wait until the answers before them are out."""

    __slots__ = (
        "_conn",
        "data",
        "keep_alive",
        "on_done",
        "on_lost",
        "parts",
        "parts_size",
        "streaming",
        "trace",
    )

    def __init__(self, conn: HttpConnection, keep_alive: bool) -> None:
        self._conn = conn
        self.keep_alive = keep_alive
        self.data: Sequence[Buffer] | None = None
        # Streamed parts not yet written (their bytes: parts_size).
        self.parts: list[Buffer] | None = None
        self.parts_size = 0
        self.streaming = False  # a part was sent
        # Called once the response is handed to the connection (optional).
        self.on_done: Callable[[], None] | None = None
        # Called if the client goes away before the response is ready (optional):
        # the handler cancels the work it started for this request.
        self.on_lost: Callable[[], None] | None = None
        # Stamps the write of the response for a request trace (optional).
        self.trace: SendTrace | None = None

    def done(self, data: Sequence[Buffer]) -> None:
        if self.data is None:
            self.data = data
            self.on_lost = None  # answered: nothing left to cancel
            trace = self.trace
            if trace is None:
                self._conn.flush()
            else:
                self.trace = None
                trace.sending()
                self._conn.flush()
                trace.sent()
            if self.on_done is not None:
                self.on_done()

    def send_part(self, parts: Sequence[Buffer]) -> None:
        """Queues part of a streamed response and writes what may be written."""
        self.streaming = True
        if self.parts is None:
            self.parts = list(parts)
        else:
            self.parts.extend(parts)
        self.parts_size += sum(len(p) for p in parts)
        self._conn.flush()

    def unsent_bytes(self) -> int:
        """Bytes of this connection not yet sent: the transport's buffer and this
        response's parts still waiting behind earlier answers."""
        return self._conn.unsent_bytes() + self.parts_size

    def connected(self) -> bool:
        """False once the client is gone: work not started for it can be skipped."""
        return self._conn.connected()

    def abandon(self) -> None:
        """Gives up on a streamed response: the connection is dropped at once (what
        it had queued is lost) and the request's work cancelled."""
        if self.data is not None:
            return
        on_lost = self.on_lost
        self.on_lost = None
        self.data = ()
        self.parts = None
        self._conn.drop()
        if on_lost is not None:
            on_lost()
