"""BLS from a stub process: ``InferenceRequest.exec()`` / ``async_exec()`` in the
stub are sent to the server, which runs them through its scheduler
(``pb.bls.execute_in``) as the stub's instance and sends the answer back.

- A plain call is a round trip on a socket of its own, ``("bls", fields, None,
  False, executing, key)`` answered by ``("bls_result", payload)``; the server runs
  it on that socket's reader thread (``ServerBls.serve_calls``).
- A decoupled call (``decoupled=True``) or an ``async_exec`` is ``("bls", fields,
  cid, decoupled)`` without an answer: every response, FINAL included, comes back as ``("stream", cid, payload,
  final)`` on a second socket that only carries these (its stub end has a reader
  thread, started on first use), so responses arrive while the model iterates,
  blocking or with ``async for``, and whatever the main socket is doing.
  ``cancel()`` (or cancelling the future of an ``async_exec``) sends
  ``("bls_cancel", cid)``.

A call's input tensors travel in a region the stub reuses for its later calls (a
pool, one region per call in flight, named by a key; its memfd goes with the first
message that uses it), and the output tensors of a plain call or an ``async_exec``
come back in that same region when they fit: the stub lends the region until that
one response and reads it before the region serves another call. So a small call
passes no descriptor and maps nothing on either side (memfd creation, mapping and
descriptor passing were most of a call's cost). Regions over ``POOLED_REGION_MAX``
serve one call, and outputs that do not fit, or a decoupled call's responses (the
region comes back with the first), travel in one-off memfds. A payload is ``("ok", descs, parameters,
in_call_region)`` or ``("err", code, message)``.

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

# Both sides apply this rule to a call region after each call, so a rare huge call
# leaves no memory behind in either process.
POOLED_REGION_MAX = 16 << 20


def _encode(
    response: Any, into: Region | None = None
) -> tuple[tuple[Any, ...], Writer | None]:
    """(payload, its one-off region or None) for a pb_utils InferenceResponse;
    the tensors go into ``into`` (the call's region) when they fit."""
    error = response.error()
    if error is not None:
        return ("err", error.code(), error.message()), None
    tensors = [
        (t.name(), *array_bytes(t._output_value())) for t in response.output_tensors()
    ]
    if not tensors:
        return ("ok", [], response.parameters(), False), None
    total = sum(padded(memoryview(t[3]).nbytes) for t in tensors)
    if into is not None and total <= into.size:
        writer = Writer(0, 0, region=into)
        return (
            "ok",
            [writer.put(*t) for t in tensors],
            response.parameters(),
            True,
        ), None
    out = Writer(total, total)
    return ("ok", [out.put(*t) for t in tensors], response.parameters(), False), out


def _decode(payload: tuple[Any, ...], fds: list[int], own: Region | None = None) -> Any:
    """The pb_utils InferenceResponse of a payload; its tensors are copied out of
    ``own`` (the call's region) or of the one-off region in ``fds``."""
    from tritonx.backends.pb.errors import TritonError
    from tritonx.backends.pb.messages import InferenceResponse
    from tritonx.backends.pb.tensor import Tensor

    if payload[0] == "err":
        return InferenceResponse._from_parts(
            [], TritonError._with_code(payload[2], payload[1]), "{}"
        )
    in_own = payload[3]
    if (in_own and own is None) or (payload[1] and not in_own and not fds):
        # Never an answer without the tensors it names.
        slip = "a BLS answer arrived without its tensors' region"
        return InferenceResponse._from_parts([], TritonError(slip), "{}")
    region = own if in_own else (Region.adopt(fds[-1]) if fds else None)
    outputs = []
    if region is not None:
        try:
            outputs = [
                Tensor._with_datatype(d[0], view_tensor(region.mm, d, copy=True), d[1])
                for d in payload[1]
            ]
        finally:
            if not in_own:
                region.close()
    return InferenceResponse._from_parts(outputs, None, payload[2] or "{}")


def _send_response(
    channel: Channel,
    head: tuple[Any, ...],
    response: Any,
    tail: tuple[Any, ...] = (),
    into: Region | None = None,
) -> None:
    payload, region = _encode(response, into)
    try:
        channel.send((*head, payload, *tail), region.take_new_fd() if region else [])
    finally:
        if region is not None:
            region.region.close()


# -- server side -------------------------------------------------------------------


class _Forwarder(bls.ResponseIterator):
    """A streamed call's responses, sent to the stub as the core delivers them.
    ``last`` (when given) sends the final one instead: into the call's region."""

    def __init__(
        self,
        channel: Channel,
        cid: int,
        done: Callable[[int], None],
        last: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__()
        self._channel = channel
        self._cid = cid
        self._done = done
        self._last = last

    def _push(self, response: Any, final: bool) -> None:
        with self._cond:
            self._finished = final
        if final:
            self._done(self._cid)
        with contextlib.suppress(ChannelClosed, OSError):  # the stub is gone
            if final and self._last is not None:
                self._last(response)
            else:
                head = ("stream", self._cid)
                _send_response(self._channel, head, response, (final,))


class ServerBls:
    """The server's half for one stub: runs its calls, owns its open streams and its
    mappings of the stub's call regions.

    Thread-safety: ``run``/``cancel`` come from the thread reading the stub's socket
    and from this stub's BLS thread; ``_open`` is also touched by delivering threads;
    both tables are guarded by ``_lock``. A region serves one call at a time (the stub
    lends it to one call), so its bytes need no lock, except against ``close``: an
    answer is written into its region under ``_lock``.
    """

    def __init__(self, scope: bls.BlsScope) -> None:
        self.scope = scope
        self.streams: Channel | None = None  # set when the stub is up
        self.calls: Channel | None = None  # the plain calls' socket (serve_calls)
        self._lock = threading.Lock()
        self._open: dict[int, _Forwarder] = {}
        self._regions: dict[int, Region] = {}  # the stub's call regions, by key
        # Counts the stubs that have ended: a call of an ended stub must not write
        # into the region of the same key of the stub that replaced it.
        self._generation = 0
        self._worker: ThreadPoolExecutor | None = None

    def _call_region(self, key: int | None, fds: list[int]) -> Region | None:
        """The region a call's inputs are in: the stub's call region ``key`` (mapped
        on first use or growth, when its descriptor comes along), or a one-off one."""
        if key is None:
            return Region.adopt(fds[-1]) if fds else None
        old = None
        with self._lock:
            if fds:
                old = self._regions.get(key)
                self._regions[key] = Region.adopt(fds[-1])
            region = self._regions.get(key)
        if old is not None:
            old.close()
        return region

    def _after_call(self, key: int, region: Region) -> None:
        """The stub's rule for its pool: regions over the limit serve one call."""
        if region.size > POOLED_REGION_MAX:
            with self._lock:
                if self._regions.get(key) is region:
                    del self._regions[key]
            region.close()

    def _answer(
        self,
        channel: Channel,
        key: int | None,
        generation: int,
        response: Any,
        head: tuple[Any, ...] = ("bls_result",),
        tail: tuple[Any, ...] = (),
    ) -> None:
        """Sends a call's last response, its tensors in the call's region ``key``
        when they fit; then the region follows the pool's rule."""
        if key is None:
            _send_response(channel, head, response, tail)
            return
        with self._lock:  # not while ``close`` unmaps it
            same_stub = generation == self._generation
            region = self._regions.get(key) if same_stub else None
            payload, one_off = _encode(response, region)
        try:
            fds = one_off.take_new_fd() if one_off else []
            channel.send((*head, payload, *tail), fds)
        finally:
            if one_off is not None:
                one_off.region.close()
            if region is not None:
                self._after_call(key, region)

    def serve_calls(self, calls: Channel) -> None:
        """Runs the stub's plain calls, which it sends on a socket of their own one at
        a time (it waits for each answer), on this thread, the socket's reader: a
        call then costs no hand-off between threads. Returns when the stub's end
        closes (or ``close`` shuts the socket)."""
        while True:
            try:
                msg, fds = calls.recv()
            except (ChannelClosed, OSError):
                break
            with contextlib.suppress(ChannelClosed, OSError):  # the stub is gone
                self.run(calls, msg, fds)
        calls.sock.close()

    def run(self, channel: Channel, msg: tuple[Any, ...], fds: list[int]) -> None:
        """One call of the stub: a plain one (run here, answered on ``channel``) or a
        streamed one (started; its responses go to the stream socket)."""
        cid = msg[2]
        key = msg[5] if len(msg) > 5 else None
        generation = self._generation
        try:
            request, region = self._request_of(msg[1], key, fds)
        except (
            Exception
        ) as exc:  # not what a stub sends: refuse, never leave it waiting
            self._refuse(channel, cid, f"{type(exc).__name__}: {exc}")
            return
        executing, decoupled = msg[4], msg[3]
        if cid is not None:
            held = not decoupled and key is not None and region is not None
            if not held and key is not None and region is not None:
                self._after_call(key, region)  # the inputs are copied out
            self._stream(cid, request, decoupled, executing, key if held else None)
            return
        try:
            response = bls.execute_in(self.scope, executing, request, False)
        except Exception as exc:
            self._refuse(channel, None, f"{type(exc).__name__}: {exc}")
            return
        self._answer(channel, key, generation, response)

    def _request_of(
        self, fields: tuple[Any, ...], key: int | None, fds: list[int]
    ) -> tuple[Any, Region | None]:
        """The pb_utils InferenceRequest of a call's fields (its inputs copied out
        of their region) and the call region, when the call has one."""
        from tritonx.backends.pb.messages import InferenceRequest, InferenceTrace
        from tritonx.backends.pb.tensor import Tensor

        descs, rid, corr, outputs, name, version, flags, timeout, params, tid = fields
        region = self._call_region(key, fds)
        inputs = []
        if region is not None:
            try:
                inputs = [
                    Tensor._with_datatype(
                        d[0], view_tensor(region.mm, d, copy=True), d[1]
                    )
                    for d in descs
                ]
            finally:
                if key is None:
                    region.close()
        elif descs:
            raise ValueError("the call names tensors in an unknown region")
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
        return request, (region if key is not None else None)

    def _refuse(self, channel: Channel, cid: int | None, message: str) -> None:
        payload = ("err", 1, message)
        if cid is None:
            channel.send(("bls_result", payload))
        elif self.streams is not None:
            self.streams.send(("stream", cid, payload, True))

    def _stream(
        self,
        cid: int,
        request: Any,
        decoupled: bool,
        executing: bool,
        held_key: int | None,
    ) -> None:
        """Starts a streamed call. An ``async_exec`` (one response) keeps its call
        region ``held_key``: the stub lends it until that response, which comes
        back in it."""
        streams = self.streams
        if streams is None:
            return
        last = None
        if held_key is not None:
            generation = self._generation
            head = ("stream", cid)

            def last(response: Any) -> None:
                self._answer(streams, held_key, generation, response, head, (True,))

        forwarder = _Forwarder(streams, cid, self._finished, last)
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

    def _finished(self, cid: int) -> None:
        with self._lock:
            self._open.pop(cid, None)

    def cancel(self, cid: int) -> None:
        with self._lock:
            forwarder = self._open.get(cid)
        if forwarder is not None:
            forwarder.cancel()

    def close(self) -> None:
        """The stub is gone: cancel what it was still reading, unmap its regions."""
        with self._lock:
            open_calls, self._open = list(self._open.values()), {}
            regions, self._regions = list(self._regions.values()), {}
            self._generation += 1
        for region in regions:
            region.close()
        for forwarder in open_calls:
            with contextlib.suppress(Exception):
                forwarder.cancel()
        if self.streams is not None:
            with contextlib.suppress(OSError):  # wakes the server's reader of it
                self.streams.sock.shutdown(socket.SHUT_RDWR)
            self.streams.sock.close()
            self.streams = None
        if self.calls is not None:
            with contextlib.suppress(OSError):  # ends serve_calls, which closes it
                self.calls.sock.shutdown(socket.SHUT_RDWR)
            self.calls = None
        if self._worker is not None:
            self._worker.shutdown(wait=False)
            self._worker = None


# -- stub side ---------------------------------------------------------------------


class _CallRegion:
    """A region the stub lends to one call at a time; the server knows it by
    ``key``. Not thread-safe: its borrower alone uses it."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.writer = Writer(0, 0)


class StubBls:
    """``bls.remote`` in a stub. ``ask`` is the stub's round trip to the server,
    ``send`` a one-way message, ``state()`` (BLS allowed now, inside execute).

    Thread-safety: calls may come from any thread of the model; ``_open``, the pool
    of call regions and the regions lent to streams are guarded by ``_lock``."""

    def __init__(
        self,
        ask: Callable[[tuple[Any, ...], list[int]], tuple[Any, ...]],
        send: Callable[[tuple[Any, ...], list[int]], None],
        state: Callable[[], tuple[bool, bool]],
        streams: Channel,
        calls: Channel,
    ) -> None:
        self._ask = ask
        self._send = send
        self._state = state
        self._streams = streams
        self._calls = calls  # plain calls, one round trip at a time
        self._calls_lock = threading.Lock()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._open: dict[int, Any] = {}  # cid -> ResponseIterator or _FutureSink
        self._reader: threading.Thread | None = None
        self._pool: list[_CallRegion] = []
        self._region_keys = itertools.count()
        # A stream's region comes back when its first message arrives: the server
        # copies the inputs out before it starts the call.
        self._lent: dict[int, _CallRegion] = {}
        # ... except an async_exec's, which its response comes back in.
        self._held: set[int] = set()

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
        lent = self._borrow()
        region = lent.writer
        region.begin()
        region.reserve(total)
        streamed = False
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
                streamed = True
                return self._start_stream(
                    (fields, decoupled, executing), lent, region.take_new_fd(), sink
                )
            msg = ("bls", fields, None, False, executing, lent.key)
            with self._calls_lock:
                self._calls.send(msg, region.take_new_fd())
                reply, fds = self._calls.recv()
            return _decode(reply[1], fds, region.region)
        finally:
            if not streamed:
                self._give_back(lent)

    def _borrow(self) -> _CallRegion:
        with self._lock:
            if self._pool:
                return self._pool.pop()
        return _CallRegion(next(self._region_keys))

    def _give_back(self, lent: _CallRegion) -> None:
        if lent.writer.region.size > POOLED_REGION_MAX:  # the server's rule too
            lent.writer.region.close()
            return
        with self._lock:
            self._pool.append(lent)

    def _start_stream(
        self, call: tuple[Any, ...], lent: _CallRegion, fds: list[int], sink: Any
    ) -> Any:
        cid = next(self._ids)
        sink._cancel = lambda: self._send(("bls_cancel", cid), [])
        fields, decoupled, executing = call
        with self._lock:
            self._open[cid] = sink
            self._lent[cid] = lent
            if not decoupled:  # one response, in this region (see ServerBls._stream)
                self._held.add(cid)
            if self._reader is None:
                self._reader = threading.Thread(
                    target=self._read, name="bls-streams", daemon=True
                )
                self._reader.start()
        self._send(("bls", fields, cid, decoupled, executing, lent.key), fds)
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
                held = cid in self._held
                if final or not held:
                    lent = self._lent.pop(cid, None)
                    self._held.discard(cid)
                else:
                    lent = None
            own = lent.writer.region if held and lent is not None else None
            response = _decode(payload, fds, own)  # before the region serves again
            if lent is not None:
                self._give_back(lent)
            if iterator is not None:
                iterator._push(response, final)


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
