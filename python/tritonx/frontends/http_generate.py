"""Triton's generate extension on the Python HTTP engine: ``POST .../generate`` (one
JSON reply) and ``.../generate_stream`` (Server-Sent Events, one ``data: {...}``
event per response).

The request is read by the walk the native engine uses (``core/generate_json.h``
through ``_native.native_decode_generate`` or ``decode_generate_json``, off the loop
for bodies past ``OFFLOAD_BYTES``, as ``/infer``'s), so its rules and messages exist
once; the
response objects are written here as ``csrc/http/http_generate.cc`` writes them:
keys in byte order, the first of a repeated key winning (id, model_name and
model_version, then the response's parameters, then its outputs, as Triton fills a
std::map), an output of one element as a scalar, otherwise as the flat list of its
elements.

A stream's head waits for the first response, whose status it carries (an error
first: the error's status, as Triton does); FINAL ends it. A client that goes away
cancels the request, as for ``/infer``; a client that reads slower than the model
writes is cut once ``MAX_STREAM_BUFFER`` bytes wait in the connection's output
buffer (the native engine's bound), and its request cancelled, so one connection
never holds much more than that. Everything here runs on the engine's loop thread.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tritonx import _native
from tritonx.frontends import codec, http_infer, request_json
from tritonx.frontends.http_access import forwarded_headers
from tritonx.frontends.http_message import HttpMessage, Slot
from tritonx.frontends.http_offload import OFFLOAD_BYTES, JsonOffload
from tritonx.frontends.http_responses import (
    JSON,
    Buffer,
    exception_response,
    exception_status,
    response,
    status_line,
)
from tritonx.frontends.http_routes import Route

# The most a stream may queue for a slow reader before it is cut (as the native
# engine's HttpServer::Options::max_stream_buffer).
MAX_STREAM_BUFFER = 32 * 1024 * 1024
_EVENT_STREAM = b"Content-Type: text/event-stream; charset=utf-8\r\n"


def error_body(message: str) -> bytes:
    """Triton's ``{"error": ...}`` as its RapidJSON writer writes it."""
    return b'{"error":' + codec.json_value(message) + b"}"


def error_json(exc: BaseException) -> tuple[int, bytes]:
    """(HTTP status, error body) of an exception."""
    status, message = exception_status(exc)
    return status, error_body(message)


# An output as render takes it: (name, datatype, shape, wire bytes).
OutputItem = tuple[str, str, list[int], Buffer]


def render(
    rid: str,
    model_name: str,
    model_version: str,
    parameters: dict[str, Any] | None,
    outputs: Sequence[OutputItem],
) -> bytes:
    """One response as its generate JSON object (see the module docstring); a pure
    function, so that large outputs can be rendered in a helper."""
    value = codec.json_value
    entries: dict[bytes, bytes | OutputItem] = {}
    if rid:
        entries[b"id"] = value(rid)
    entries[b"model_name"] = value(model_name)
    entries[b"model_version"] = value(model_version)
    for name, parameter in (parameters or {}).items():
        entries.setdefault(name.encode("utf-8", "surrogatepass"), value(parameter))
    for out in outputs:
        entries.setdefault(out[0].encode("utf-8", "surrogatepass"), out)
    parts = []
    for key in sorted(entries):
        item = entries[key]
        if not isinstance(item, bytes):
            _, datatype, shape, raw = item
            data = codec.wire_to_json(datatype, shape, raw)
            item = data[1:-1] if codec.element_count(shape) == 1 else data
        parts.append(codec.json_string(key) + b":" + item)
    return b"{" + b",".join(parts) + b"}"


class _Rendering:
    """A response a helper renders: its future and the wire bytes it was given."""

    __slots__ = ("future", "size")

    def __init__(self, future: asyncio.Future[bytes], size: int) -> None:
        self.future = future
        self.size = size


class _Call:
    """One generate request: what it has answered so far. Events are handled in
    the order their responses came, also when one waits for a helper to render
    it. Loop thread only."""

    __slots__ = (
        "chunked",
        "count",
        "first",
        "head_sent",
        "id",
        "offload",
        "pending",
        "rendering_bytes",
        "slot",
        "stamps",
        "stream",
    )

    def __init__(
        self, slot: Slot, stream: bool, chunked: bool, offload: JsonOffload
    ) -> None:
        self.slot = slot
        self.stream = stream
        self.chunked = chunked
        self.offload = offload
        self.head_sent = False
        self.count = 0  # responses so far (/generate)
        self.first: tuple[int, bytes] = (200, b"")
        self.id = ""
        self.stamps: http_infer.SendStamps | None = None
        # Events not yet handled: (status, JSON), a helper's rendering, or None for
        # FINAL; the bytes the renderings hold count against the stream's bound.
        self.pending: deque[tuple[int, bytes] | _Rendering | None] = deque()
        self.rendering_bytes = 0

    def on_response(self, value: Any, final: bool) -> None:
        if self.slot.data is not None:  # answered (cut, or the connection is gone)
            return
        if value is not None:
            self.count += 1
            if self.stream or self.count == 1:
                self.pending.append(self._event(value))
        if final:
            self.pending.append(None)
        self._drain()
        if self.stream and self.unsent() > MAX_STREAM_BUFFER:
            self.slot.abandon()  # too far behind: cut the stream, cancel the request

    def unsent(self) -> int:
        """Bytes this stream holds that the client has not read yet."""
        return self.slot.unsent_bytes() + self.rendering_bytes

    def _event(self, value: Any) -> tuple[int, bytes] | _Rendering:
        if isinstance(value, BaseException):
            return error_json(value)
        try:
            outputs = value.outputs
            args = (value.id or self.id, value.model_name, value.model_version)
            if sum(out.byte_size for out in outputs) <= OFFLOAD_BYTES:
                items = [(o.name, o.datatype, list(o.shape), o.raw()) for o in outputs]
                return 200, render(*args, value.parameters, items)
            # Millions of numbers as text hold the GIL for seconds: a helper gets
            # a copy of the wire bytes.
            items = [
                (o.name, o.datatype, list(o.shape), bytes(o.raw())) for o in outputs
            ]
            job = self.offload.run(render, *args, value.parameters, items)
            job.add_done_callback(lambda _: self._drain())
            size = sum(len(item[3]) for item in items)
            self.rendering_bytes += size
            return _Rendering(job, size)
        except Exception as exc:
            return error_json(exc)

    def _drain(self) -> None:
        pending = self.pending
        while pending and self.slot.data is None:
            item = pending[0]
            if isinstance(item, _Rendering):
                if not item.future.done():
                    return
                self.rendering_bytes -= item.size
                try:
                    item = (200, self.offload.result(item.future))
                except Exception as exc:
                    item = error_json(exc)
            pending.popleft()
            if item is None:
                if self.stream:
                    _finish_stream(self)
                else:
                    _answer_once(self)
            elif not self.stream:
                self.first = item
            else:
                if not self.head_sent:
                    _start_stream(self, item[0])
                _write_event(self, item[1])


Decoded = tuple[str, list[Any], list[tuple[str, Any]]]


def decode(body: Buffer, spec: Any) -> Decoded:
    """(id, inputs, parameters) of a generate body for the model ``spec``
    (``_native.generate_spec``); a pure function, so that it can run in a helper."""
    if _native.native_decode_generate is not None:
        return _native.native_decode_generate(body, spec)
    return _native.decode_generate_json(request_json.loads(body), body, spec)


class GenerateRoutes:
    """``/generate`` and ``/generate_stream`` for the Python engine's
    ``HttpFrontend``: its registry, header forwarding (--http-header-forward-pattern),
    JSON offload (bodies past ``OFFLOAD_BYTES`` are decoded off the loop, so a large
    body does not stall it) and loop."""

    def __init__(
        self,
        registry: Any,
        forward: re.Pattern[str] | None,
        offload: JsonOffload,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self._registry = registry
        self._forward = forward
        self._offload = offload
        self._loop = loop

    def handle(self, message: HttpMessage, slot: Slot, route: Route) -> None:
        try:
            model = self._registry.find(route.model, route.version)
            received = time.monotonic_ns() if model.tracing else 0
            spec = _native.generate_spec(model)
            body = message.body
            if len(body) > OFFLOAD_BYTES:
                call = self._call(message, slot, route)
                parsing = self._offload.run_decode(decode, body, spec)
                parsing.add_done_callback(
                    lambda f: self._decoded(f, call, message, model, received)
                )
                return
            decoded = decode(body, spec)
        except Exception as exc:
            slot.done(exception_response(exc))
            return
        call = self._call(message, slot, route)
        self._submit(call, message, model, decoded, received)

    def _call(self, message: HttpMessage, slot: Slot, route: Route) -> _Call:
        return _Call(slot, route.action == "stream", message.http11, self._offload)

    def _decoded(
        self,
        parsing: asyncio.Future[Decoded],
        call: _Call,
        message: HttpMessage,
        model: Any,
        received: int,
    ) -> None:
        try:
            decoded = self._offload.result(parsing)
        except Exception as exc:
            call.slot.done(exception_response(exc))
            return
        self._submit(call, message, model, decoded, received)

    def _submit(
        self,
        call: _Call,
        message: HttpMessage,
        model: Any,
        decoded: Decoded,
        received: int,
    ) -> None:
        """``received``: HTTP_RECV_START while tracing is on, else 0."""
        slot = call.slot
        if not slot.connected():  # gone while a helper decoded its body
            return
        rid, inputs, parameters = decoded
        try:
            if self._forward is not None and message.raw_headers:
                forwarded = forwarded_headers(self._forward, message.raw_headers)
                parameters.extend(forwarded.items())
            request, _ = _native.build_request(
                model.name, rid, inputs, (), None, None, parameters
            )
            call.id = rid
            if received:
                call.stamps = http_infer.trace_received(
                    request, received, message.headers
                )
            if call.stream and not call.chunked:
                # HTTP/1.0 has no chunked encoding: the end of the connection ends it.
                slot.keep_alive = False
            model.submit(
                request,
                call.on_response,
                self._loop(),
            )
        except Exception as exc:
            slot.done(exception_response(exc))
            return
        slot.on_lost = lambda: model.cancel(request)


def _answer_once(call: _Call) -> None:
    """/generate at FINAL: the one response, or Triton's error for another count
    (with the first response's status: Triton starts its reply with it)."""
    status, body = call.first
    if call.count != 1:
        status = 200 if call.count == 0 else status
        body = error_body(_native.GENERATE_ONE_RESPONSE)
    slot = call.slot
    if call.stamps is not None:
        slot.trace = call.stamps
    slot.done(response(status, body, JSON))


def _start_stream(call: _Call, status: int) -> None:
    head = status_line(status) + _EVENT_STREAM
    if call.chunked:
        head += b"Transfer-Encoding: chunked\r\n\r\n"
    else:
        head += b"Connection: close\r\n\r\n"
    call.head_sent = True
    call.slot.send_part([head])


def _write_event(call: _Call, data: bytes) -> None:
    event = b"data: " + data + b"\n\n"
    parts: Sequence[Buffer] = (
        [b"%x\r\n" % len(event), event, b"\r\n"] if call.chunked else [event]
    )
    stamps = call.stamps
    if stamps is not None:
        stamps.sending()
    call.slot.send_part(parts)
    if stamps is not None:
        stamps.sent()
    if call.unsent() > MAX_STREAM_BUFFER:
        # Too far behind: cut the stream and cancel the request.
        call.slot.abandon()


def _finish_stream(call: _Call) -> None:
    if not call.head_sent:  # Triton answers a stream without responses with 200
        _start_stream(call, 200)
    call.slot.done([b"0\r\n\r\n"] if call.chunked else [])
