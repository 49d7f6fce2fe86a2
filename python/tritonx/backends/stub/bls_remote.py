"""BLS from a stub process: ``InferenceRequest.exec()`` / ``async_exec()`` in the
stub are sent to the server, which runs them through its scheduler
(``pb.bls.execute_in``) as the stub's instance and sends the answer back.

- A plain call is a round trip on the control socket: ``("bls", fields, None)``
  answered by ``("bls_result", payload)``.
- A decoupled call (``decoupled=True``) or an ``async_exec`` is ``("bls", fields,
  cid, decoupled)`` without an answer: every response, FINAL included, comes back as ``("stream", cid, payload,
  final)`` on a second socket that only carries these (its stub end has a reader
  thread, started on first use), so responses arrive while the model iterates,
  blocking or with ``async for``, and whatever the main socket is doing.
  ``cancel()`` (or cancelling the future of an ``async_exec``) sends
  ``("bls_cancel", cid)``.

Tensors travel in one-off memfds both ways; a payload is ``("ok", descs,
parameters)`` or ``("err", code, message)``.

Model control (``pb_utils.load_model`` & co., pb/model_control.py) is a round trip
too: ``("control", op, args, allowed)`` answered by ``("control_result", ("ok",
value))`` or ``("control_result", ("err", text))``, the text already Triton's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tritonx.backends.pb import bls
from tritonx.backends.stub.channel import (
    Channel,
    ChannelClosed,
    Region,
    Writer,
    array_bytes,
    padded,
    view_tensor,
)


def _encode(response: Any) -> tuple[tuple[Any, ...], Writer | None]:
    """(payload, its region or None) for a pb_utils InferenceResponse."""
    error = response.error()
    if error is not None:
        return ("err", error.code(), error.message()), None
    tensors = [
        (t.name(), *array_bytes(t._output_value())) for t in response.output_tensors()
    ]
    if not tensors:
        return ("ok", [], response.parameters()), None
    total = sum(padded(memoryview(t[3]).nbytes) for t in tensors)
    out = Writer(total, total)
    return ("ok", [out.put(*t) for t in tensors], response.parameters()), out


def _decode(payload: tuple[Any, ...], fds: list[int]) -> Any:
    from tritonx.backends.pb.errors import TritonError
    from tritonx.backends.pb.messages import InferenceResponse
    from tritonx.backends.pb.tensor import Tensor

    if payload[0] == "err":
        return InferenceResponse._from_parts(
            [], TritonError(payload[2], payload[1]), "{}"
        )
    outputs = []
    if fds:
        region = Region.adopt(fds[-1])
        try:
            outputs = [
                Tensor._with_datatype(d[0], view_tensor(region.mm, d, copy=True), d[1])
                for d in payload[1]
            ]
        finally:
            region.close()
    return InferenceResponse._from_parts(outputs, None, payload[2] or "{}")


def _send_response(
    channel: Channel, head: tuple[Any, ...], response: Any, tail: tuple[Any, ...] = ()
) -> None:
    payload, region = _encode(response)
    try:
        channel.send((*head, payload, *tail), region.take_new_fd() if region else [])
    finally:
        if region is not None:
            region.region.close()


# -- server side -------------------------------------------------------------------


class _Forwarder(bls.ResponseIterator):
    """A decoupled call's responses, sent to the stub as the core delivers them."""

    def __init__(self, channel: Channel, cid: int, done: Callable[[int], None]) -> None:
        super().__init__()
        self._channel = channel
        self._cid = cid
        self._done = done

    def _push(self, response: Any, final: bool) -> None:
        with self._cond:
            self._finished = final
        if final:
            self._done(self._cid)
        with contextlib.suppress(ChannelClosed, OSError):  # the stub is gone
            _send_response(self._channel, ("stream", self._cid), response, (final,))


class ServerBls:
    """The server's half for one stub: runs its calls, owns its open streams.
    Thread-safety: ``run``/``cancel`` come from the thread reading the stub's socket;
    ``_open`` is also touched by delivering threads, under ``_lock``."""

    def __init__(self, scope: bls.BlsScope) -> None:
        self.scope = scope
        self.streams: Channel | None = None  # set when the stub is up
        self._lock = threading.Lock()
        self._open: dict[int, _Forwarder] = {}
        self._worker: ThreadPoolExecutor | None = None

    def run(self, channel: Channel, msg: tuple[Any, ...], fds: list[int]) -> None:
        from tritonx.backends.pb.messages import InferenceRequest, InferenceTrace
        from tritonx.backends.pb.tensor import Tensor

        descs, rid, corr, outputs, name, version, flags, timeout, params, tid = msg[1]
        cid = msg[2]
        region = Region.adopt(fds[-1]) if fds else Region.create(0)
        try:
            inputs = [
                Tensor._with_datatype(d[0], view_tensor(region.mm, d, copy=True), d[1])
                for d in descs
            ]
        finally:
            region.close()
        request = InferenceRequest(
            request_id=rid,
            correlation_id=corr,
            inputs=inputs,
            requested_output_names=outputs,
            model_name=name,
            model_version=version,
            flags=flags,
            timeout=timeout,
            parameters=params,
            trace=InferenceTrace(tid),  # the stub request's trace id, or 0
        )
        executing = msg[4]
        if cid is not None:
            self._stream(cid, request, msg[3], executing)
            return
        try:
            response = bls.execute_in(self.scope, executing, request, False)
        except Exception as exc:
            channel.send(("bls_result", ("err", 1, f"{type(exc).__name__}: {exc}")))
            return
        _send_response(channel, ("bls_result",), response)

    def _stream(self, cid: int, request: Any, decoupled: bool, executing: bool) -> None:
        streams = self.streams
        if streams is None:
            return
        forwarder = _Forwarder(streams, cid, self._finished)
        with self._lock:
            self._open[cid] = forwarder
        bls.ResponseIterator._start(
            self.scope, executing, request, into=forwarder, decoupled=decoupled
        )

    def control(self, channel: Channel, msg: tuple[Any, ...]) -> None:
        """A stub's model control call, run for its instance on this server."""
        from tritonx.backends.pb import model_control
        from tritonx.backends.pb.errors import TritonModelException

        _, op, args, allowed = msg
        try:
            value = model_control.run(self.scope, op, tuple(args), allowed=allowed)
        except TritonModelException as exc:
            channel.send(("control_result", ("err", str(exc))))
            return
        except Exception as exc:
            channel.send(("control_result", ("err", f"{type(exc).__name__}: {exc}")))
            return
        channel.send(("control_result", ("ok", value)))

    def control_later(self, channel: Channel, msg: tuple[Any, ...]) -> None:
        """``control`` for the reader thread, which must keep reading: on this
        stub's one BLS thread (a load can take seconds)."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="stub-bls")
        self._worker.submit(self._control_quietly, channel, msg)

    def _control_quietly(self, channel: Channel, msg: tuple[Any, ...]) -> None:
        with contextlib.suppress(ChannelClosed, OSError):  # the stub is gone
            self.control(channel, msg)

    def run_later(self, channel: Channel, msg: tuple[Any, ...], fds: list[int]) -> None:
        """``run`` for a decoupled stub's reader thread, which must keep reading: a
        plain call (it blocks) runs on this stub's one BLS thread (the stub asks one
        question at a time), a streamed one starts here."""
        if msg[2] is not None:
            self.run(channel, msg, fds)
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="stub-bls")
        self._worker.submit(self._run_quietly, channel, msg, fds)

    def _run_quietly(
        self, channel: Channel, msg: tuple[Any, ...], fds: list[int]
    ) -> None:
        with contextlib.suppress(ChannelClosed, OSError):  # the stub is gone
            self.run(channel, msg, fds)

    def _finished(self, cid: int) -> None:
        with self._lock:
            self._open.pop(cid, None)

    def cancel(self, cid: int) -> None:
        with self._lock:
            forwarder = self._open.get(cid)
        if forwarder is not None:
            forwarder.cancel()

    def close(self) -> None:
        """The stub is gone: cancel what it was still reading."""
        with self._lock:
            open_calls, self._open = list(self._open.values()), {}
        for forwarder in open_calls:
            with contextlib.suppress(Exception):
                forwarder.cancel()
        if self.streams is not None:
            with contextlib.suppress(OSError):  # wakes the server's reader of it
                self.streams.sock.shutdown(socket.SHUT_RDWR)
            self.streams.sock.close()
            self.streams = None
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None


# -- stub side ---------------------------------------------------------------------


class StubBls:
    """``bls.remote`` in a stub. ``ask`` is the stub's round trip to the server,
    ``send`` a one-way message, ``state()`` (BLS allowed now, inside execute). Thread-safety: calls may come from any thread of the
    model; ``_open`` is guarded by ``_lock``."""

    def __init__(
        self,
        ask: Callable[[tuple[Any, ...], list[int]], tuple[Any, ...]],
        send: Callable[[tuple[Any, ...], list[int]], None],
        state: Callable[[], tuple[bool, bool]],
        streams: Channel,
    ) -> None:
        self._ask = ask
        self._send = send
        self._state = state
        self._streams = streams
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._open: dict[int, Any] = {}  # cid -> ResponseIterator or _FutureSink
        self._reader: threading.Thread | None = None

    def __call__(self, request: Any, decoupled: bool = False) -> Any:
        """``exec()`` (and ``async_exec(decoupled=True)``)."""
        return self._call(request, decoupled, None)

    def control(self, op: str, args: tuple[Any, ...]) -> Any:
        """``model_control.remote``: the call runs on the server."""
        from tritonx.backends.pb.errors import TritonModelException

        allowed, _ = self._state()
        reply = self._ask(("control", op, args, allowed), [])
        status, value = reply[1]
        if status == "err":
            raise TritonModelException(value)
        return value

    def submit(self, request: Any, future: asyncio.Future[Any]) -> None:
        """``async_exec()``: ``future`` (on the caller's loop) gets the response."""
        self._call(request, False, _FutureSink(future))

    def _call(self, request: Any, decoupled: bool, sink: Any) -> Any:
        from tritonx.backends.pb.errors import TritonModelException

        allowed, executing = self._state()
        if not allowed:
            raise TritonModelException(
                "BLS is only supported during the 'execute' function."
            )
        tensors = [
            (t.name(), *array_bytes(t._output_value())) for t in request.inputs()
        ]
        total = sum(padded(memoryview(t[3]).nbytes) for t in tensors)
        region = Writer(total, total)
        try:
            fields = (
                [region.put(*t) for t in tensors],
                request.request_id(),
                request.correlation_id(),
                sorted(request.requested_output_names()),
                request.model_name(),
                request.model_version(),
                request.flags(),
                request.timeout(),
                request.parameters(),
                request.trace().triton_trace,
            )
            if decoupled or sink is not None:
                sink = sink or bls.ResponseIterator()
                return self._start_stream(
                    (fields, decoupled, executing), region.take_new_fd(), sink
                )
            msg = ("bls", fields, None, False, executing)
            reply = self._ask(msg, region.take_new_fd())
        finally:
            region.region.close()
        return _decode(reply[1], reply[2])

    def _start_stream(self, call: tuple[Any, ...], fds: list[int], sink: Any) -> Any:
        cid = next(self._ids)
        sink._cancel = lambda: self._send(("bls_cancel", cid), [])
        with self._lock:
            self._open[cid] = sink
            if self._reader is None:
                self._reader = threading.Thread(
                    target=self._read, name="bls-streams", daemon=True
                )
                self._reader.start()
        fields, decoupled, executing = call
        self._send(("bls", fields, cid, decoupled, executing), fds)
        return sink

    def _read(self) -> None:
        while True:
            try:
                msg, fds = self._streams.recv()
            except (ChannelClosed, OSError):
                return
            _kind, cid, payload, final = msg
            with self._lock:
                iterator = self._open.pop(cid) if final else self._open.get(cid)
            if iterator is not None:
                iterator._push(_decode(payload, fds), final)


class _FutureSink:
    """Where the one response of a stub's ``async_exec`` goes: the caller's future,
    completed on its loop. Cancelling the future cancels the call."""

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future = future
        self._loop = future.get_loop()
        self._cancel: Callable[[], Any] | None = None
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() and self._cancel is not None:
            self._cancel()

    def _push(self, response: Any, final: bool) -> None:
        if final or response.has_error():
            # A closed loop (RuntimeError) has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._set, response)

    def _set(self, response: Any) -> None:
        if not self._future.done():
            self._future.set_result(response)
