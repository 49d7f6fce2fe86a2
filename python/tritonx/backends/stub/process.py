"""The server side of a python model instance run in a stub process (EXECUTION_MODE
"process").

``StubInstance`` manages the stub's life (spawn, init, restart, finalize) and hands
the core a C++ executor (``native_executor``, csrc/core/stub_executor.h): each batch
goes through a shared-memory ring with no Python here, and the responses its senders
send (from any of the model's threads, during execute or after it) come back over its
response stream, read in C++ too. A reader thread owns the socket for the stub's
life: log records, ``is_cancelled`` questions, BLS calls and custom metrics.

A stub that dies (exit, signal, OOM kill) or runs past the execution timeout fails the
batch in flight with Triton's "Stub process '<instance>' is not healthy." and is
restarted in the background with bounded exponential backoff; until it is back,
requests get the same error and the instance reports itself down.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonx import _native, errors
from tritonx.backends.base import InstanceContext
from tritonx.backends.pb import bls
from tritonx.backends.readiness import ReadinessProbe
from tritonx.backends.stub.bls_remote import ServerBls
from tritonx.backends.stub.channel import (
    Channel,
    ChannelClosed,
)
from tritonx.backends.stub.metrics_sync import FlushAsker, MetricsMirror
from tritonx.backends.stub.spawn import reap as _reap
from tritonx.backends.stub.spawn import spawn_stub
from tritonx.config.settings import float_setting
from tritonx.errors import InternalError
from tritonx.logging_setup import LOGGER_NAME

if TYPE_CHECKING:
    from tritonx.backends.python_backend import PythonModel

log = logging.getLogger("tritonx.backends.python")

_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 5.0
_HEALTHY_AFTER_S = 30.0  # a stub that lived this long resets the backoff


def _param(model: Any, key: str) -> str:
    params = model.ctx.config.parameters
    if key in params:
        return str(params[key].string_value).strip()
    return ""


def execution_mode(model: Any) -> str:  # PythonModel or anything with .ctx
    """ "process" or "in-process": the model's EXECUTION_MODE, else the server's
    ``--backend-config=python,execution-mode=...``, else in-process."""
    value = _param(model, "EXECUTION_MODE")
    if not value and _param(model, "EXECUTION_ENV_PATH"):
        value = "process"  # another environment's interpreter needs its own process
    value = value or model.ctx.backend_config.get("execution-mode", "")
    value = value.lower().replace("_", "-") or "in-process"
    if value not in ("process", "in-process"):
        raise errors.InvalidArgumentError(
            f"unknown EXECUTION_MODE '{value}' for model '{model.ctx.name}': "
            "expected 'process' or 'in-process'"
        )
    return value


def _float_param(model: PythonModel, key: str, default: float) -> float:
    """The model's parameter ``key``, else the backend setting of that name
    (lower case, dashes), else ``default``."""
    value = float_setting({key: _param(model, key)}, key)
    if value is None:
        value = float_setting(model.ctx.backend_config, key.lower().replace("_", "-"))
    return default if value is None else value


class StubInstance:
    """One model instance in its own process.

    Thread-safety: executions run in C++ on the instance's core worker thread (or a
    caller's thread for inline dispatch); ``_lock`` serializes starts, restarts and
    finalize. The restart and reader threads are owned here and end with
    ``finalize``.
    """

    gather_inputs = False
    # The core inlines only executions that recently took under 200 µs; a short
    # round trip to the stub then saves a worker wake-up, as for in-process models.
    allow_inline = True

    def __init__(self, model: PythonModel, ictx: InstanceContext) -> None:
        ctx = model.ctx
        self._name = ictx.name
        self._model_name = ctx.name
        self._decoupled = bool(ctx.config.model_transaction_policy.decoupled)
        self._timeout = _float_param(model, "EXECUTION_TIMEOUT", 0.0) or None
        self._memory_limit = int(_float_param(model, "MEMORY_LIMIT_BYTES", 0.0))
        # finalize plus exit at unload and shutdown, then SIGKILL
        stop_timeout = float_setting(ctx.backend_config, "exit-timeout-secs")
        self._stop_timeout = 30.0 if stop_timeout is None else stop_timeout
        self._python = model_python(model)
        self._binding = ictx.host_binding  # --host-policy: the stub is bound to it
        shm_size = model.settings.shm_default_byte_size
        shm_growth = model.settings.shm_growth_byte_size
        init_args: dict[str, Any] = {
            "model_name": ctx.name,
            "model_version": ctx.version,
            "outputs": [o.name for o in ctx.config.output],
            "iterative": bool(ctx.config.sequence_batching.iterative_sequence),
            "decoupled": self._decoupled,
            "model_file": str(model.model_file),
            "initialize_args": model.initialize_args(ictx),
            "ictx": ictx,
            "shm_size": shm_size,
            "shm_growth": shm_growth,
            "ring": True,
        }
        self._init_args = init_args
        # Executes go through the C++ StubExecutor over a shared-memory ring (no
        # Python here per execute); its senders' responses come back over the
        # response stream to the executor, which holds the open requests.
        self.native_executor = _native.StubExecutor(
            self._name,
            self._timeout or 0.0,
            shm_size,
            shm_growth,
            decoupled=self._decoupled,
        )
        self._lock = threading.Lock()
        self._closing = False
        self._proc: Any = None  # subprocess.Popen or _ZygoteChild
        self._channel: Channel | None = None
        self._started_at = 0.0
        self._backoff = _BACKOFF_FIRST_S
        self._restarter: threading.Thread | None = None
        self.restarts = 0  # read by /metrics (tritonx_python_stub_restarts)
        # The stub's answers to init and finalize, from the reader thread.
        self._replies: queue.Queue[tuple[Any, list[int]] | None] = queue.Queue()
        # BLS calls the stub sends run here, for this instance of this server's model.
        scope = bls.BlsScope(model.bls_link, ictx.name)
        scope.ready = True
        self._bls = ServerBls(scope)
        self._metrics = MetricsMirror()  # the stub's custom metrics, on /metrics
        # The model's is_ready(), when it has one (asked over its own socket).
        self.readiness: ReadinessProbe | None = None
        self._readiness_channel: Channel | None = None
        self._start()  # raises the model's initialize error as the load error

    # -- process lifecycle -----------------------------------------------------------
    def _start(self) -> None:
        proc, channel = spawn_stub(self._python, self._memory_limit, self._binding)
        parent = channel.sock
        self._metrics.restarted()
        native = self.native_executor
        try:
            ring_fd = native.prepare()
            if ring_fd < 0:
                raise ChannelClosed("no shared memory for the ring")
            channel.send(("init", self._init_args), [ring_fd])
            msg, fds = self._wait_reply(channel, None)
        except ChannelClosed:
            proc.wait()
            raise InternalError(
                f"Stub process '{self._name}' failed to start (exit status "
                f"{proc.returncode})"
            ) from None
        if msg[0] == "err":
            channel.send(("fin",))
            _reap(proc, 5.0)
            parent.close()
            raise _error(msg[1], msg[2])
        # The model's readiness socket comes last when it has is_ready().
        has_is_ready = len(msg) > 1 and bool(msg[1])
        if has_is_ready:
            self._readiness_channel = Channel(socket.socket(fileno=fds.pop()))
            if self.readiness is None:  # the same model code after a restart
                self.readiness = ReadinessProbe(self._name, self._ask_ready)
        # /metrics asks the stub for its pending metric records over this one, and
        # log level changes reach it there (the spawn carried the level then; this
        # one covers a change since, its answer left to the next waiter)
        flusher = FlushAsker(Channel(socket.socket(fileno=fds[5])))
        self._metrics.flusher = flusher
        flusher.begin(log_level=logging.getLogger(LOGGER_NAME).getEffectiveLevel())
        # takes the descriptors over: the output region and the response stream
        native.attach(fds[0], proc.pid, fds[3], fds[4])
        self._proc, self._channel = proc, channel
        streams = Channel(socket.socket(fileno=fds[1]))
        self._bls.streams = streams
        threading.Thread(
            target=self._side_loop,
            args=(streams,),
            name=f"stub-side-{self._name}",
            daemon=True,
        ).start()
        calls = self._bls.calls = Channel(socket.socket(fileno=fds[2]))
        threading.Thread(
            target=self._bls.serve_calls,
            args=(calls,),
            name=f"stub-bls-{self._name}",
            daemon=True,
        ).start()
        self._started_at = time.monotonic()
        threading.Thread(
            target=self._read_loop,
            args=(channel,),
            name=f"stub-reader-{self._name}",
            daemon=True,
        ).start()

    def alive(self) -> bool:
        """False while the stub is down (restarting): model readiness reads it."""
        return self._proc is not None

    def _ask_ready(self) -> bool:
        """The model's is_ready() answer from the stub (ReadinessProbe runs one at a
        time, on a thread of its own); raises when the stub is down or it failed."""
        channel = self._readiness_channel
        if channel is None or self._proc is None:
            raise self._unhealthy()
        channel.send(("ready?",))
        (_kind, ready, error), _fds = channel.recv()
        if error:
            raise InternalError(error)
        return bool(ready)

    def _on_death(self, reason: str, timed_out: bool = False) -> None:
        """Forget the dead stub and schedule its restart. Holds ``_lock``."""
        proc, channel = self._proc, self._channel
        self._proc = self._channel = None
        self.native_executor.detach()
        if proc is not None:
            if not timed_out:
                # EOF can come a moment before the exit status does
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(2.0)
            if proc.poll() is None:
                proc.kill()
            _reap(proc, 5.0)
            reason = f"{reason} (exit status {proc.returncode})"
        if channel is not None:
            channel.sock.close()
        readiness, self._readiness_channel = self._readiness_channel, None
        if readiness is not None:
            readiness.sock.close()
        self._close_flusher()
        self._bls.close()
        self.native_executor.fail_pending()
        if self._closing:
            return
        if time.monotonic() - self._started_at > _HEALTHY_AFTER_S:
            self._backoff = _BACKOFF_FIRST_S
        delay, self._backoff = self._backoff, min(self._backoff * 2, _BACKOFF_MAX_S)
        self.restarts += 1
        log.error(
            "Stub process '%s' is not healthy: %s; restart %d in %.2f s",
            self._name,
            reason,
            self.restarts,
            delay,
        )
        self._restarter = threading.Thread(
            target=self._restart,
            args=(delay,),
            name=f"stub-restart-{self._name}",
            daemon=True,
        )
        self._restarter.start()

    def _restart(self, delay: float) -> None:
        time.sleep(delay)
        with self._lock:
            if self._closing or self._proc is not None:
                return
            try:
                self._start()
                log.info("Stub process '%s' restarted", self._name)
            except Exception as exc:
                self._started_at = time.monotonic()
                log.error("restarting stub process '%s' failed: %s", self._name, exc)
                self._on_death("restart failed")

    def _close_flusher(self) -> None:
        flusher, self._metrics.flusher = self._metrics.flusher, None
        if flusher is not None:
            flusher.channel.sock.close()

    def _unhealthy(self) -> InternalError:
        return InternalError(f"Stub process '{self._name}' is not healthy.")

    # -- execute -----------------------------------------------------------------------
    def _wait_reply(
        self, channel: Channel, timeout: float | None
    ) -> tuple[Any, list[int]]:
        """The stub's next reply, handling its log records and questions meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if channel is self._channel:  # the reader thread owns the socket
                try:
                    item = self._replies.get(timeout=left)
                except queue.Empty:
                    raise TimeoutError from None
                if item is None:
                    raise ChannelClosed("end of file")
                msg, fds = item
            else:
                msg, fds = channel.recv(left)
            kind = msg[0]
            if kind == "log":
                _forward_log(msg)
            elif kind == "cancelled?":
                flag = bool(self.native_executor.is_cancelled(msg[1], msg[2]))
                channel.send(("cancelled", flag))
            elif kind == "bls":
                self._bls.run(channel, msg, fds)
            elif kind == "control":
                self._bls.control(channel, msg)
            elif not self._side_message(channel, msg):
                return msg, fds

    def _side_message(self, channel: Channel, msg: tuple[Any, ...]) -> bool:
        """Handles the stub's messages that need no execute context."""
        kind = msg[0]
        if kind == "metrics":
            self._metrics.apply(msg[1])
        elif kind == "metric_family":
            error = self._metrics.create_family(*msg[1:])
            channel.send(("metric_family_ok", error))
        elif kind == "metric_value":
            channel.send(("metric_value_ok", self._metrics.value_of(*msg[1:])))
        elif kind == "bls_cancel":
            self._bls.cancel(msg[1])
        elif kind == "metrics_sync":
            self._metrics.apply(msg[1])
            channel.send(("metrics_ok",))
        else:
            return False
        return True

    def _side_loop(self, streams: Channel) -> None:
        """Reads the stream socket: metric updates the stub's threads made between
        executes. Ends at EOF (the stub ended) or when the socket is shut down."""
        while True:
            try:
                msg, _fds = streams.recv()
            except (ChannelClosed, OSError):
                return
            if msg[0] == "metrics":
                self._metrics.apply(msg[1])

    def _read_loop(self, channel: Channel) -> None:
        """Owns the stub's socket: log records, questions and BLS calls, from execute
        or from the model's threads."""
        while True:
            try:
                msg, fds = channel.recv()
            except (ChannelClosed, OSError):
                self._replies.put(None)
                self._reader_saw_end(channel)
                return
            if msg[0] == "log":
                _forward_log(msg)
            elif msg[0] == "cancelled?":  # from execute or a model thread
                flag = bool(self.native_executor.is_cancelled(msg[1], msg[2]))
                with contextlib.suppress(ChannelClosed):
                    channel.send(("cancelled", flag))
            elif msg[0] == "bls":  # a streamed call: started, never waited for here
                self._bls.run(channel, msg, fds)
            elif msg[0] == "control":  # may wait for a load: off this thread
                self._bls.control_later(channel, msg)
            elif msg[0] in (
                "metrics",
                "metrics_sync",
                "metric_family",
                "metric_value",
                "bls_cancel",
            ):
                with contextlib.suppress(ChannelClosed):
                    self._side_message(channel, msg)
            else:
                self._replies.put((msg, fds))

    def _reader_saw_end(self, channel: Channel) -> None:
        """The stub's socket ended: unless an execute or finalize already dealt with
        it, the stub died between executes (or the C++ executor saw it die)."""
        native = self.native_executor
        native.detach()  # waits for an execute in flight to notice it too
        with self._lock:
            if self._closing or self._channel is not channel:
                return
            reason = native.take_failure() or "the process ended"
            self._on_death(reason, timed_out="ran past" in reason)

    def finalize(self, timeout_s: float | None = None) -> None:
        """Runs the model's finalize in the stub and waits for the stub to exit, all
        within ``timeout_s`` (the server's --exit-timeout-secs); then kills it."""
        timeout_s = self._stop_timeout if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._closing = True
            proc, channel = self._proc, self._channel
            if proc is None or channel is None:
                return
            try:
                if not self.native_executor.post_finalize():
                    raise ChannelClosed("the stub is not attached")
                while True:
                    left = max(deadline - time.monotonic(), 0.0)
                    msg, _fds = self._wait_reply(channel, left)
                    if msg[0] == "bye":
                        break
            except (ChannelClosed, TimeoutError):
                pass
            try:
                proc.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.warning(
                    "Stub process '%s' did not stop within %g s (exit timeout); killed",
                    self._name,
                    timeout_s,
                )
                proc.kill()
                _reap(proc, 5.0)
            self._proc = self._channel = None
            channel.sock.close()
            readiness, self._readiness_channel = self._readiness_channel, None
            if readiness is not None:
                readiness.sock.close()
            self._close_flusher()
            self._bls.close()
            self.native_executor.fail_pending()


def auto_complete_in_stub(
    model_name: str, python: Path | None, model_file: Path, config: dict[str, Any]
) -> dict[str, Any]:
    """``run_python_auto_complete`` in a one-off stub (the model's module is never
    imported into the server in process mode)."""
    proc, channel = spawn_stub(python, 0)
    try:
        channel.send(("autocomplete", str(model_file), config))
        msg, _fds = channel.recv(120.0)
        with contextlib.suppress(ChannelClosed):
            channel.send(("fin",))
    except (ChannelClosed, TimeoutError):
        raise InternalError(
            f"Stub process for auto-completing model '{model_name}' is not healthy."
        ) from None
    finally:
        _reap(proc, 10.0)
        channel.sock.close()
    if msg[0] == "err":
        raise _error(msg[1], msg[2])
    result: dict[str, Any] = msg[1]
    return result


def model_python(model: Any) -> Path | None:
    """The interpreter of the model's EXECUTION_ENV_PATH, or None."""
    value = _param(model, "EXECUTION_ENV_PATH")
    if not value:
        return None
    from tritonx.backends.stub.environment import interpreter

    return interpreter(value, model.ctx.model_dir, model.ctx.name)


def _error(cls_name: str, message: str) -> errors.TritonXError:
    cls = getattr(errors, cls_name, None)
    if isinstance(cls, type) and issubclass(cls, errors.TritonXError):
        return cls(message)
    return InternalError(message)


def _forward_log(msg: tuple[Any, ...]) -> None:
    _kind, name, level, text, path, line, func = msg
    logger = logging.getLogger(name)
    if logger.isEnabledFor(level):
        record = logger.makeRecord(name, level, path, line, "%s", (text,), None, func)
        logger.handle(record)


__all__ = ["StubInstance", "auto_complete_in_stub", "execution_mode", "model_python"]
