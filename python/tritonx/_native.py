"""The only module that imports the compiled core, ``tritonx._C``.

Everything else imports the core's names from here, so an ABI or build problem shows up
in one place with one message.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from tritonx.logging_setup import LOGGER_NAME, add_level_listener

try:
    from tritonx import _C
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "tritonx's compiled core (tritonx._C) could not be imported; reinstall with "
        "`pip install .` from the source tree"
    ) from exc

Tensor = _C.Tensor
Request = _C.Request
Response = _C.Response
Model = _C.Model
ModelRegistry = _C.ModelRegistry
ServerContext = _C.ServerContext
Tracer = _C.Tracer
trace_received = _C.trace_received
trace_stamp = _C.trace_stamp
trace_id = _C.trace_id
trace_context = _C.trace_context
inherit_trace = _C.inherit_trace
inherit_trace_id = _C.inherit_trace_id
InstanceRateLimit = _C.InstanceRateLimit
ModelSpec = _C.ModelSpec
TensorSpec = _C.TensorSpec
SchedulerConfig = _C.SchedulerConfig
BatchStrategy = _C.BatchStrategy
SequenceBatching = _C.SequenceBatching
set_sequence_batching = _C.set_sequence_batching
QueuePolicy = _C.QueuePolicy
StreamPool = _C.StreamPool
arena_stats = _C.arena_stats
parse_model_version = _C.parse_model_version
cuda_usable = _C.cuda_usable
cuda_device_count = _C.cuda_device_count
cuda_is_pinned = _C.cuda_is_pinned
arena_array = _C.arena_array
h2d_copy_seconds = _C.h2d_copy_seconds
DeviceMemory = _C.DeviceMemory
cuda_set_device = _C.cuda_set_device
cuda_copy_async = _C.cuda_copy_async
cuda_stream_sync = _C.cuda_stream_sync
device_to_host_copies = _C.device_to_host_copies
CUDA_BUILT: bool = _C.cuda_built
GRPC_BUILT: bool = _C.grpc_built
release_pending_refs = _C._release_pending_refs
generate_load = _C.generate_load
# tritonx-perf's network load generator (csrc/perf).
PerfTarget = _C.PerfTarget
PerfLoad = _C.PerfLoad
perf_now_ns = _C.perf_now_ns
make_ensemble_model = _C.make_ensemble_model
send_response = _C.send_response
# Stub processes' execute ring (bind_stub.cpp): the server's and the stub's ends.
StubExecutor = _C.StubExecutor
StubEndpoint = _C.StubEndpoint
StubStream = _C.StubStream
# The core's wire tables (bind_tables.cpp) and request builder (bind_request.cpp).
datatypes = _C.datatypes
serialize_bytes = _C.serialize_bytes
deserialize_bytes = _C.deserialize_bytes
build_request = _C.build_request
# The infer and generate JSON walks both HTTP engines share (bind_infer_json.cpp).
decode_infer_json = _C.decode_infer_json
generate_spec = _C.generate_spec
decode_generate_json = _C.decode_generate_json
GENERATE_ONE_RESPONSE: str = _C.GENERATE_ONE_RESPONSE
parse_header_length = _C.parse_header_length
json_parse_error = _C.json_parse_error
# The native HTTP engine's JSON reader (bind_http.cpp); absent from builds without it.
native_json_loads = getattr(_C, "native_json_loads", None)
native_decode_generate = getattr(_C, "native_decode_generate", None)
native_parse_infer = getattr(_C, "native_parse_infer", None)
native_json_data = getattr(_C, "native_json_data", None)
MAX_REQUEST_TENSORS: int = _C.MAX_REQUEST_TENSORS
JSON_OFF_LOOP_BYTES: int = _C.JSON_OFF_LOOP_BYTES
# Texts both HTTP engines answer for checks each makes itself (core/http_messages.h).
http_messages = _C.http_messages
deduce_raw_input = _C.deduce_raw_input
check_transaction_policy = _C.check_transaction_policy
ShmTargets = _C.ShmTargets
# The grpc++ server is absent when the extension was built with TRITONX_ENABLE_GRPC=OFF.
GrpcServer = getattr(_C, "GrpcServer", None)
# The evhttp server is absent when built with TRITONX_ENABLE_HTTP=OFF.
HttpServer = getattr(_C, "HttpServer", None)


def status_codes() -> list[tuple[str, str, int, str]]:
    """(Triton name, message word, HTTP status, gRPC code name) per error code
    (typed here: tritonx.errors reads it, and _C's stubs import tritonx.errors)."""
    codes: list[tuple[str, str, int, str]] = _C.status_codes()
    return codes


_core_log = logging.getLogger("tritonx.core")
_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)


def _log_from_core(level: int, message: str) -> None:
    _core_log.log(
        _LEVELS[level] if 0 <= level < len(_LEVELS) else logging.INFO, message
    )


OnResponse = Callable[[Any, bool], object]


def _call_many(items: list[tuple[OnResponse, Any, bool]]) -> None:
    # One loop callback for a whole batch of responses (see FlushCompletions).
    for on_response, value, final in items:
        on_response(value, final)


def settle(future: asyncio.Future[Any]) -> Callable[[Any, bool], None]:
    """An ``on_response`` for ``Model.submit(request, on_response, loop)`` that
    completes ``future`` with the request's final response, or with the first error.
    A future already done (e.g. cancelled by its awaiter) is left alone."""

    def on_response(value: Any, final: bool) -> None:
        if future.done():
            return
        if isinstance(value, BaseException):
            future.set_exception(value)
        elif final:
            future.set_result(value)

    return on_response


async def responses(model: Any, request: Any) -> AsyncIterator[Any]:
    """Every response of ``request`` as it arrives (decoupled models send 0..N):
    ``Response`` objects, or the ``TritonXError`` a model sent as a response. Ends
    after FINAL. Leaving the loop early cancels the request."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, bool]] = asyncio.Queue()
    model.submit(request, lambda value, final: queue.put_nowait((value, final)), loop)
    finished = False
    try:
        while True:
            value, final = await queue.get()
            if value is not None:
                yield value
            if final:
                finished = True
                return
    finally:
        if not finished:
            model.cancel(request)


def probe_cuda() -> bool:
    """Probe the CUDA runtime once and write the core's verdict to the log now.

    The core never waits for the GIL to log, so a message logged from a thread without
    it is queued; flushing here makes the one-time CUDA line appear at start-up.
    """
    usable = bool(_C.cuda_usable())
    _C._release_pending_refs()
    return usable


def cuda_device_ids() -> list[int]:
    """The GPUs KIND_GPU instances may name: every device the CUDA runtime sees, or
    none when the core was built without CUDA or no GPU is usable."""
    return list(range(_C.cuda_device_count())) if probe_cuda() else []


class _LogPump:
    """Writes the core's log messages that C++ threads queue (they never wait for
    the GIL to log) as soon as they are queued, from a thread of its own; without
    it they would wait until Python next runs on a core thread. One per process,
    started by the first server, stopped at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="tritonx-log-pump", daemon=True
            )
            self._thread.start()
        atexit.register(self.stop)

    def _run(self) -> None:
        while not self._stopping:
            _C._pump_queued_logs(1.0)

    def stop(self) -> None:
        self._stopping = True
        _C._wake_log_pump()
        if self._thread is not None:
            self._thread.join(timeout=5)


_log_pump = _LogPump()
start_log_pump = _log_pump.start


_C._set_call_many(_call_many)
_C.set_log_sink(_log_from_core)


def _follow_log_level(level: int) -> None:
    # The core builds its verbose messages (an HTTP request line per request)
    # only while they would be written.
    _C.set_verbose_logging(level <= logging.DEBUG)


_follow_log_level(logging.getLogger(LOGGER_NAME).getEffectiveLevel())
add_level_listener(_follow_log_level)

__all__ = [
    "CUDA_BUILT",
    "GRPC_BUILT",
    "BatchStrategy",
    "DeviceMemory",
    "GrpcServer",
    "HttpServer",
    "InstanceRateLimit",
    "Model",
    "ModelRegistry",
    "ModelSpec",
    "PerfLoad",
    "PerfTarget",
    "QueuePolicy",
    "Request",
    "Response",
    "SchedulerConfig",
    "SequenceBatching",
    "ServerContext",
    "StreamPool",
    "Tensor",
    "TensorSpec",
    "arena_array",
    "arena_stats",
    "cuda_copy_async",
    "cuda_device_count",
    "cuda_device_ids",
    "cuda_is_pinned",
    "cuda_set_device",
    "cuda_stream_sync",
    "cuda_usable",
    "generate_load",
    "h2d_copy_seconds",
    "parse_model_version",
    "perf_now_ns",
    "probe_cuda",
    "release_pending_refs",
    "responses",
    "send_response",
    "set_sequence_batching",
    "settle",
]
