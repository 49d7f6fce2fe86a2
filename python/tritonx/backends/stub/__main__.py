"""The stub process: ``python -m tritonx.backends.stub <socket fd>``.

Runs one instance of a Triton ``model.py`` for the server on the other end of the
socket (see channel.py for the wire). The model code is the in-process backend's
(``PythonInstance``). After init the stub takes its executes from the shared-memory
ring (``_serve_ring``, bind_stub.cpp): requests whose inputs are views of the
server's region, outputs written into this process's region. A decoupled model's
responses go over the socket, each naming its request by the key the server gave
it. The process
exits when the server says so, when the socket reaches EOF, or when its parent
changes (the server died), so no stub outlives its server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tritonx import heap
from tritonx.backends.stub.bls_remote import StubBls
from tritonx.backends.stub.channel import (
    Channel,
    ChannelClosed,
)
from tritonx.backends.stub.metrics_sync import StubMetrics
from tritonx.host_policy import (
    BINDING_ENV,
    apply_encoded,
    apply_in_child,
    unbind_child,
)


class _ForwardHandler(logging.Handler):
    """Sends log records to the server, which logs them as its own."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # server gone: nothing to log to
            self._channel.send(
                (
                    "log",
                    record.name,
                    record.levelno,
                    record.getMessage(),
                    record.pathname,
                    record.lineno,
                    record.funcName,
                )
            )


class _RingInput:
    """An input of a ring execute: a view of the server's region, which holds this
    execute's own copy of the bytes, so the model may write into it (BYTES: an
    object array of bytes, decoded in C++)."""

    __slots__ = ("_array", "datatype", "name", "shape")

    def __init__(self, name: str, datatype: str, shape: list[int], value: Any) -> None:
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self._array = value

    def as_numpy(self) -> Any:
        return self._array


class _RingRequest:
    """A core-request lookalike built from a ring execute's fields (bind_stub.cpp)."""

    __slots__ = (
        "_index",
        "_stub",
        "answered_by_sender",
        "correlation_id",
        "flags",
        "id",
        "inputs",
        "key",
        "parameters",
        "requested_outputs",
        "rescheduled",
        "timeout_us",
        "trace_context",
        "trace_id",
    )

    def __init__(self, stub: Stub, index: int, fields: tuple[Any, ...]) -> None:
        (
            self.id,
            self.correlation_id,
            self.requested_outputs,
            self.flags,
            self.timeout_us,
            self.parameters,
            inputs,
            self.trace_id,  # the server's trace of the request (0: not traced)
            self.key,  # names the request in its senders' responses
            self.trace_context,  # OpenTelemetry mode: its span's context, else ""
        ) = fields
        if stub.senders_answer_late:
            # Its model may read its inputs after execute returned, when the
            # server's region holds the next execute's: it gets its own copies.
            inputs = [(n, d, s, v.copy()) for n, d, s, v in inputs]
        self.inputs = [_RingInput(*t) for t in inputs]
        self._stub = stub
        self._index = index
        # sent back with the reply
        self.rescheduled = False  # iterative sequences
        self.answered_by_sender = False  # non-decoupled models' response senders

    def keep_inputs(self) -> None:
        """A non-decoupled model took a response sender, which may answer after
        execute returned: this request's inputs (those not read yet) and all later
        requests' are copied out of the server's region, as a decoupled model's."""
        if not self._stub.senders_answer_late:
            self._stub.senders_answer_late = True
            for tensor in self.inputs:
                tensor._array = tensor._array.copy()

    def is_cancelled(self) -> bool:
        return self._stub.ask_cancelled(self.key, self._index)

    def set_reschedule(self, again: bool) -> None:
        self.rescheduled = again

    def set_answered_by_sender(self) -> None:
        self.answered_by_sender = True


# The server's answers to the stub's questions.
_ANSWER_TO = {
    "cancelled?": "cancelled",
    "bls": "bls_result",
    "control": "control_result",
    "metric_family": "metric_family_ok",
    "metric_value": "metric_value_ok",
    "metrics_sync": "metrics_ok",
}
_ANSWERS = frozenset(_ANSWER_TO.values())


class Stub:
    """The stub's main loop; single-threaded apart from the model's senders."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.decoupled = False
        # Requests get their own copies of their inputs (_RingRequest).
        self.senders_answer_late = False
        self._instance: Any = None
        self._executing = False
        # One question to the server at a time (an async model's BLS calls run on
        # worker threads while the main thread waits in execute).
        self._ask_lock = threading.Lock()
        # Whoever holds _read_lock reads the socket: the main loop while idle, an
        # asking thread while the main thread runs the model. Answers read by the
        # other party are handed over through _answers.
        self._read_lock = threading.Lock()
        self._answers: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._listening = False  # the server reads this socket (init/execute/fin)
        self._finalizing = False
        # Non-decoupled stubs take executes from the shared-memory ring (bind_stub.cpp);
        # their server reads this socket at all times.
        self._ring: Any = None
        self._stream: Any = None  # the senders' response stream (StubStream)
        self._stream_socket: socket.socket | None = None
        self._metrics: StubMetrics | None = None

    def ask(self, msg: tuple[Any, ...], fds: list[int], answer: str) -> tuple[Any, ...]:
        """A round trip to the server (its reader answers while it is not waiting on
        an execute; only decoupled instances have one)."""
        with self._ask_lock:
            self.channel.send(msg, fds)
            while True:
                if self._read_lock.acquire(blocking=False):
                    try:
                        with contextlib.suppress(queue.Empty):
                            return self._answers.get_nowait()
                        reply, got = self.channel.recv()
                    finally:
                        self._read_lock.release()
                    if reply[0] == answer:
                        return (*reply, got)
                    continue  # nothing else is sent while a question is open
                with contextlib.suppress(queue.Empty):
                    return self._answers.get(timeout=0.02)

    def ask_cancelled(self, key: int, index: int) -> bool:
        if not self._executing and not (self.decoupled or self._ring is not None):
            return False  # only answerable while the server waits on this execute
        return bool(self.ask(("cancelled?", index, key), [], "cancelled")[1])

    def reply(self, msg: tuple[Any, ...], fds: Sequence[int] = ()) -> None:
        """Send an answer to the server, after the metric updates made before it."""
        if self._metrics is not None:
            self._metrics.flush()
        self.channel.send(msg, fds)

    def _answer(
        self, msg: tuple[Any, ...], fds: list[int] | None = None
    ) -> tuple[Any, ...]:
        return self.ask(msg, fds or [], _ANSWER_TO[msg[0]])

    def serve(self) -> None:
        while True:
            try:
                with self._read_lock:
                    msg, fds = self.channel.recv()
            except ChannelClosed:
                return
            if msg[0] in _ANSWERS:
                self._answers.put((*msg, fds))  # for a thread waiting in ask()
                continue
            kind = msg[0]
            if kind == "init":
                if self._initialize(msg[1], fds[-1]):
                    self._serve_ring()
                    return
            elif kind == "autocomplete":
                self._auto_complete(msg[1], msg[2])
            elif kind == "fin":
                self._finalize()
                return

    def _auto_complete(self, model_file: str, config: dict[str, Any]) -> None:
        from tritonx.backends.python_backend import run_python_auto_complete

        try:
            result = run_python_auto_complete(Path(model_file), config)
        except Exception as exc:
            self.channel.send(("err", type(exc).__name__, str(exc)))
            return
        self.channel.send(("ok", result))

    def _initialize(self, args: dict[str, Any], ring_fd: int) -> bool:
        """Maps the ring and runs the model's initialize; True when it succeeded."""
        from tritonx import _native
        from tritonx.backends.python_backend import PythonInstance

        self.decoupled = self.senders_answer_late = bool(args["decoupled"])
        self._ring = _native.StubEndpoint(ring_fd, args["shm_size"], args["shm_growth"])
        # The senders' response stream: its own socket pair, read by a server C++
        # thread (a non-decoupled model's senders may answer after execute, too).
        self._stream_socket, stream_server_end = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET
        )
        self._stream = _native.StubStream(
            args["shm_size"], self._stream_socket.fileno()
        )
        outputs = [SimpleNamespace(name=name) for name in args["outputs"]]
        config = SimpleNamespace(
            output=outputs,
            model_transaction_policy=SimpleNamespace(decoupled=self.decoupled),
            sequence_batching=SimpleNamespace(
                iterative_sequence=bool(args.get("iterative", False))
            ),
        )
        model = SimpleNamespace(
            ctx=SimpleNamespace(
                name=args["model_name"], version=args["model_version"], config=config
            ),
            model_file=Path(args["model_file"]),
            settings=SimpleNamespace(shm_default_byte_size=args["shm_size"]),
            initialize_args=lambda _ictx: args["initialize_args"],
        )
        streams, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        calls, calls_server_end = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET
        )
        self._install(Channel(streams), Channel(calls))
        self._listening = True
        try:
            self._instance = PythonInstance(model, args["ictx"])  # type: ignore[arg-type]
            self._instance.in_stub_process = True
            self._instance._send = self._send_on_stream
        except Exception as exc:
            self.reply(("err", type(exc).__name__, str(exc)))
            return False
        finally:
            self._listening = False
        # The model's objects live as long as this process: frozen, full
        # collections during executes walk only what came later (tritonx.heap).
        heap.freeze_long_lived()
        fds = [self._ring.out_fd, server_end.fileno(), calls_server_end.fileno()]
        fds += [self._stream.fd, stream_server_end.fileno()]
        # The server's /metrics asks over this socket for pending metric records
        # (answered on a thread, as the model may be scraping from execute).
        flush_end, flush_server_end = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET
        )
        assert self._metrics is not None
        threading.Thread(
            target=self._metrics.serve_flush_requests,
            args=(Channel(flush_end),),
            name="metrics-flush-requests",
            daemon=True,
        ).start()
        fds.append(flush_server_end.fileno())
        # A model with is_ready() gets a socket of its own for the server's
        # readiness questions, answered on a thread while executes run.
        readiness_end = (
            self._serve_readiness() if self._instance.has_is_ready() else None
        )
        if readiness_end is not None:
            fds.append(readiness_end.fileno())
        self.reply(("ok", readiness_end is not None), fds)
        stream_server_end.close()
        flush_server_end.close()
        if readiness_end is not None:
            readiness_end.close()
        server_end.close()
        calls_server_end.close()
        return True

    def _serve_readiness(self) -> socket.socket:
        """Answers ("ready?",) with ("ready", bool, error text) from a daemon thread;
        returns the server's end of the socket."""
        from tritonx.backends.readiness import call_is_ready

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        channel = Channel(ours)
        model_object = self._instance._obj

        def serve() -> None:
            while True:
                try:
                    channel.recv()
                except ChannelClosed:
                    return
                try:
                    answer: tuple[Any, ...] = ("ready", call_is_ready(model_object), "")
                except Exception as exc:
                    answer = ("ready", False, f"{type(exc).__name__}: {exc}")
                try:
                    channel.send(answer)
                except (ChannelClosed, OSError):
                    return

        threading.Thread(target=serve, name="is-ready", daemon=True).start()
        return theirs

    def _serve_ring(self) -> None:
        """The main loop of a ring stub: executes (and finally finalize) come through
        shared memory; the socket only carries this side's questions and records."""
        ring = self._ring
        while True:
            _kind, fields = ring.wait()  # GIL released while waiting
            if fields is None:
                self._finalize()
                return
            self._execute_ring(ring, fields)

    def _execute_ring(self, ring: Any, fields: list[tuple[Any, ...]]) -> None:
        # (Loaded with the model by _initialize: a lookup, not an import.)
        from tritonx.backends.python_backend import EndedOnStream

        requests = [_RingRequest(self, i, f) for i, f in enumerate(fields)]
        self._executing = True
        try:
            result = self._instance.execute(requests)
        except EndedOnStream as ended:
            self._executing = False
            self._flush_metrics()
            ring.reply_error(ended.error, list(range(len(requests))))
            return
        except Exception as exc:
            self._executing = False
            if _out_of_memory(exc):
                # Past its memory limit the stub is replaced rather than left to limp
                # on: the server sees it end and restarts it with fresh memory.
                os._exit(3)
            self._flush_metrics()
            ring.reply_error(exc)
            return
        self._executing = False
        self._flush_metrics()
        try:
            # Output mappings (or exceptions) become responses in C++, by the rule
            # in-process execution uses (ResponseFromPy).
            again = [i for i, r in enumerate(requests) if r.rescheduled]
            by_sender = [i for i, r in enumerate(requests) if r.answered_by_sender]
            ring.reply(list(result or ()), again, by_sender)
        except Exception as exc:
            if _out_of_memory(exc):
                os._exit(3)
            ring.reply_error(exc)

    def _flush_metrics(self) -> None:
        """Metric updates reach the server before the response does (a round trip,
        only when something changed)."""
        if self._metrics is not None:
            self._metrics.flush()

    def _bls_state(self) -> tuple[bool, bool]:
        """(BLS allowed, inside execute). Triton allows BLS once the instance is
        initialized; here outside execute only for decoupled models, whose
        server side reads this socket all the time."""
        ready = self._instance is not None and not self._finalizing
        always = self.decoupled or self._ring is not None
        return self._executing or (always and ready), self._executing

    def _install(self, streams: Channel, calls: Channel) -> None:
        """This process has no server: BLS calls and custom metrics go to the real
        one (bls_remote.py, metrics_sync.py)."""
        from tritonx.backends.pb import bls, metrics, model_control

        remote = StubBls(
            self._answer, self.channel.send, self._bls_state, streams, calls
        )
        bls.remote, bls.remote_async = remote, remote.submit
        model_control.remote = remote.control

        def send_metrics(msg: tuple[Any, ...]) -> None:
            if self._ring is not None:  # applied before the reply that follows
                self._answer(("metrics_sync", *msg[1:]))
            else:
                self.channel.send(msg)

        self._metrics = StubMetrics(
            lambda msg: self._answer(msg),
            send_metrics,
            lambda msg: streams.send(msg),  # read by the server at any time
            lambda: self._listening or self.decoupled or self._ring is not None,
        )
        metrics.sync = self._metrics

    def _send_on_stream(self, core: _RingRequest, response: Any, final: bool) -> None:
        # Through the response stream (stub_stream.h), converted by the in-process rule.
        converted = None if response is None else self._instance._convert(response)
        self._stream.send(core.key, converted, final)

    def _finalize(self) -> None:
        self._listening = self._finalizing = True
        try:
            if self._instance is not None:
                self._instance.finalize()
        except Exception as exc:
            logging.getLogger("tritonx.backends.python").error(
                "finalize failed: %s: %s", type(exc).__name__, exc
            )
        self.reply(("bye",))


def _out_of_memory(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__context__
    return False


def _watch_parent(parent: int) -> None:
    """Ends the stub when the server is gone, even mid-execute. (PR_SET_PDEATHSIG
    would follow the server *thread* that spawned the stub, and restarts spawn from
    short-lived threads.)"""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def run_stub(fd: int, level: int) -> None:
    """Serve one model instance over the socket ``fd`` until told to stop."""
    from tritonx.backends._pymodule import set_sole_model

    set_sole_model()  # model.py imported as Triton's stub imports it
    sys.argv[:] = [""]  # and the command line it sees: none
    threading.Thread(
        target=_watch_parent, args=(os.getppid(),), name="parent-watch", daemon=True
    ).start()
    channel = Channel(socket.socket(fileno=fd))
    root = logging.getLogger()
    root.handlers[:] = [_ForwardHandler(channel)]
    # The server's level, kept up to date when ``/v2/logging`` changes it
    # (metrics_sync.send_log_level); the server filters severities itself.
    root.setLevel(level)
    Stub(channel).serve()


def run_zygote(fd: int) -> None:
    """A preloaded parent for stubs: forks one per ``("spawn", level, limit, cpus,
    numa_node)`` (the last two: its host policy binding) with the stub's socket
    attached, so a stub starts in milliseconds rather than paying for interpreter
    start-up and imports. Exit statuses are kept for ``status?``.
    Ends at EOF (the server is gone); its stubs then notice their parent changed."""
    import tritonx.backends.pb_utils
    import tritonx.backends.python_backend  # noqa: F401

    # Every stub inherits these objects: frozen, its collections never walk them
    # (nor write to their pages, which the stubs then keep sharing with the zygote).
    heap.freeze_long_lived()
    channel = Channel(socket.socket(fileno=fd))
    statuses: dict[int, int] = {}

    def reap(_signum: int, _frame: Any) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            statuses[pid] = os.waitstatus_to_exitcode(status)

    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            msg, fds = channel.recv()
        except ChannelClosed:
            os._exit(0)
        if msg[0] == "spawn":
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _die_with_parent()  # the zygote forks on its only thread
                channel.sock.close()
                code = 0
                try:
                    _limit_memory(msg[2])
                    # Bound before its first thread: they all inherit it.
                    apply_in_child(msg[3], msg[4])
                    run_stub(fds[0], msg[1])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:
                    # What a fresh interpreter would print: the server shows the
                    # stub's stderr, and "failed to start" alone says too little.
                    traceback.print_exc()
                    code = 1
                os._exit(code)
            os.close(fds[0])
            channel.send(("pid", pid))
        elif msg[0] == "status?":
            deadline = time.monotonic() + msg[2]
            while msg[1] not in statuses and time.monotonic() < deadline:
                time.sleep(0.005)
            channel.send(("status", statuses.pop(msg[1], None)))


def _die_with_parent() -> None:
    """SIGKILL when the zygote ends (it ends at EOF from the server, SIGKILL of the
    server included); _watch_parent covers stubs started otherwise."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the zygote died before prctl took effect
            os._exit(0)


def _limit_memory(limit: int) -> None:
    if limit > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    if sys.argv[1] == "--zygote":
        if len(sys.argv) > 3:  # the server's CPUs: undo a binding it inherited
            unbind_child({int(cpu) for cpu in sys.argv[3].split(",")})
        run_zygote(int(sys.argv[2]))
    else:
        binding = os.environ.pop(BINDING_ENV, None)
        if binding:  # a fresh interpreter's host policy, before any thread
            apply_encoded(binding)
        level = int(sys.argv[2]) if len(sys.argv) > 2 else logging.INFO
        run_stub(int(sys.argv[1]), level)


if __name__ == "__main__":
    main()
