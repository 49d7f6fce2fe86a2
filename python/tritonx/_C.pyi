"""Type stubs for tritonx._C, the pybind11 extension over the C++ core.

Written from csrc/bindings/*.cpp; import these names from tritonx._native, never from
tritonx._C directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, SupportsIndex, overload

import numpy as np

from tritonx.errors import TritonXError

_ParameterValue = bool | int | float | str
# (name, datatype, shape, data): data supports the buffer protocol; BYTES data is the
# wire form (uint32 little-endian length + bytes per element). Dims are ints or
# anything with __index__ (numpy integers). Values a client could have sent wrong
# (types, integers past 64 bits, lone surrogates) raise InvalidArgumentError.
_InputTuple = tuple[str, str, Sequence[SupportsIndex], Any]
# What an instance returns per output: an ndarray (object/bytes/str arrays become
# BYTES) or (datatype, ndarray) to force the wire datatype, e.g. ("BF16", uint16 array).
_OutputValue = np.ndarray[Any, Any] | tuple[str, np.ndarray[Any, Any]]

cuda_built: bool
grpc_built: bool

class Tensor:
    """A view of a core tensor; supports the buffer protocol (the raw wire bytes,
    1-D uint8, read-only). Created by the core or from_dlpack only."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def byte_size(self) -> int: ...
    def as_numpy(self, copy: bool = False) -> np.ndarray[Any, Any]:
        """Fixed-size types: a view (BF16 as uint16), writable unless the producer's
        bytes are read-only; copy=True: a private writable copy in arena memory.
        BYTES: an object array of bytes (a decoded copy)."""
    def raw(self) -> memoryview: ...
    @property
    def memory_type(self) -> str:
        """CPU, CPU_PINNED or GPU (host reads of a GPU tensor copy it once)."""
    @property
    def device_id(self) -> int: ...
    @property
    def aliased(self) -> bool:
        """Others read these bytes too (shared memory, ensembles, a BLS caller)."""
    def __dlpack__(
        self,
        *,
        stream: int | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    @staticmethod
    def from_dlpack(name: str, producer: Any) -> Tensor:
        """Zero-copy core tensor over a DLPack producer or capsule."""

class Request:
    """An inference request; input buffers are not copied but kept alive."""

    def __init__(
        self,
        id: str = "",
        inputs: Sequence[_InputTuple] = (),
        requested_outputs: Sequence[str] = ...,
        parameters: Mapping[str, _ParameterValue] | None = None,
        *,
        correlation_id: int | str | None = None,
        flags: int = 0,
        timeout_us: int = 0,
        custom_parameters: Mapping[str, _ParameterValue] | None = None,
        class_counts: Mapping[str, int] | None = None,
        device_outputs: bool = False,
    ) -> None:
        """The keyword-only fields are set directly (BLS, like Triton's C API):
        custom_parameters reach the backend as given, reserved names included;
        class_counts: output name -> top-N (classification extension);
        device_outputs: GPU outputs reach the caller on the device (BLS)."""
    @property
    def id(self) -> str: ...
    @property
    def inputs(self) -> list[Tensor]: ...
    @property
    def requested_outputs(self) -> list[str]: ...
    @property
    def parameters(self) -> dict[str, _ParameterValue]:
        """Custom parameters only: priority, timeout and sequence_* are taken out."""
    @property
    def priority(self) -> int: ...
    @property
    def timeout_us(self) -> int: ...
    @property
    def correlation_id(self) -> int | str: ...
    @property
    def flags(self) -> int: ...
    @property
    def batch_size(self) -> int:
        """Valid after submit: dim 0 when the model batches, else 1."""
    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> int: ...
    context: object
    def is_cancelled(self) -> bool: ...
    def set_reschedule(self, again: bool) -> None: ...
    def set_answered_by_sender(self) -> None: ...

class Response:
    """A successful inference response."""

    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def outputs(self) -> list[Tensor]: ...
    @property
    def parameters(self) -> dict[str, _ParameterValue]: ...

class TensorSpec:
    def __init__(
        self,
        name: str,
        datatype: str,
        dims: Sequence[int],
        optional: bool = False,
        reshape: Sequence[int] | None = None,
        labels: Sequence[str] = (),
        allow_ragged_batch: bool = False,
    ) -> None: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def allow_ragged_batch(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def dims(self) -> list[int]: ...
    @property
    def optional(self) -> bool: ...
    @property
    def reshape(self) -> list[int] | None: ...

class QueuePolicy:
    def __init__(
        self,
        timeout_action: Literal["REJECT", "DELAY"] = "REJECT",
        default_timeout_us: int = 0,
        allow_timeout_override: bool = False,
        max_queue_size: int = 0,
    ) -> None: ...
    @property
    def timeout_action(self) -> Literal["REJECT", "DELAY"]: ...
    @property
    def default_timeout_us(self) -> int: ...
    @property
    def allow_timeout_override(self) -> bool: ...
    @property
    def max_queue_size(self) -> int: ...

class SchedulerConfig:
    def __init__(
        self,
        dynamic_batching: bool = False,
        preferred_batch_sizes: Sequence[int] = ...,
        max_queue_delay_us: int = 0,
        preserve_ordering: bool = False,
        priority_levels: int = 0,
        default_priority_level: int = 0,
        default_queue_policy: QueuePolicy | None = None,
        priority_queue_policy: Mapping[int, QueuePolicy] = ...,
    ) -> None: ...
    @property
    def dynamic_batching(self) -> bool: ...
    @property
    def preferred_batch_sizes(self) -> list[int]: ...
    @property
    def max_queue_delay_us(self) -> int: ...
    @property
    def preserve_ordering(self) -> bool: ...
    @property
    def priority_levels(self) -> int: ...
    @property
    def default_priority_level(self) -> int: ...
    @property
    def default_queue_policy(self) -> QueuePolicy: ...
    @property
    def priority_queue_policy(self) -> dict[int, QueuePolicy]: ...
    batch_strategy: BatchStrategy | None

class BatchStrategy:
    @staticmethod
    def load(
        path: str, model_name: str, version: int, config_json: str
    ) -> BatchStrategy: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def path(self) -> str: ...

class SequenceBatching:
    def __init__(
        self,
        strategy: str = "direct",
        max_sequence_idle_us: int = 1000000,
        max_queue_delay_us: int = 0,
        minimum_slot_utilization: float = 0.0,
        max_candidate_sequences: int = 0,
        preferred_batch_sizes: Sequence[int] = ...,
        preserve_ordering: bool = False,
        controls: Sequence[tuple[str, str, str, bytes, bytes]] = ...,
        states: Sequence[
            tuple[str, str, str, Sequence[int], Sequence[int] | None, bytes | None]
        ] = ...,
        iterative_sequence: bool = False,
    ) -> None: ...
    @property
    def strategy(self) -> str: ...
    @property
    def max_sequence_idle_us(self) -> int: ...
    @property
    def max_queue_delay_us(self) -> int: ...
    @property
    def iterative_sequence(self) -> bool: ...

def set_sequence_batching(
    config: SchedulerConfig, sequence: SequenceBatching
) -> None: ...

class ModelSpec:
    def __init__(
        self,
        name: str,
        version: int,
        max_batch_size: int,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        decoupled: bool = False,
        response_cache: bool = False,
        # (kind name, target names, datatype "INT32"/"FP32", source input)
        batch_inputs: Sequence[tuple[str, Sequence[str], str, str]] = (),
        # BATCH_SCATTER_WITH_INPUT_SHAPE: (target names, source input)
        batch_outputs: Sequence[tuple[Sequence[str], str]] = (),
        # sequence_batching.state output names (kept by the sequence batcher)
        state_outputs: Sequence[str] = (),
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def max_batch_size(self) -> int: ...
    @property
    def decoupled(self) -> bool: ...
    @property
    def inputs(self) -> list[TensorSpec]: ...
    @property
    def outputs(self) -> list[TensorSpec]: ...

class InstanceRateLimit:
    """One instance's rate_limiter block: resources (name, count, global), its
    priority and the device it runs on."""

    def __init__(
        self,
        resources: Sequence[tuple[str, int, bool]] = ...,
        priority: int = 0,
        device: int = 0,
    ) -> None: ...
    @property
    def priority(self) -> int: ...
    @property
    def device(self) -> int: ...

class _Instance(Protocol):
    """What a backend gives the core per model instance (docs/architecture.md)."""

    gather_inputs: bool
    # gather_inputs False:
    #   def execute(self, requests: list[Request])
    #       -> Sequence[Mapping[str, _OutputValue] | BaseException]
    # gather_inputs True:
    #   def execute_batch(self, inputs: dict[str, np.ndarray], requests: list[Request])
    #       -> Mapping[str, _OutputValue]

class Model:
    """One served model version: spec, scheduler, instances and statistics."""

    def __init__(
        self,
        spec: ModelSpec,
        config: SchedulerConfig,
        instances: Sequence[_Instance],
        context: ServerContext | None = None,
        rate_limits: Sequence[InstanceRateLimit] = ...,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def max_batch_size(self) -> int: ...
    @property
    def spec(self) -> ModelSpec: ...
    @property
    def decoupled(self) -> bool: ...
    @property
    def tracing(self) -> bool: ...
    @property
    def core_id(self) -> int: ...
    def submit(
        self,
        request: Request,
        on_response: Callable[[Response | TritonXError | None, bool], object],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Validates (raising TritonXError) and enqueues. Every response of the
        request, then FINAL, goes to on_response(value, final): on `loop` through
        call_soon_threadsafe, or (no loop) on the delivering core thread with the GIL.
        value is a Response, an error, or None (a FINAL without data)."""
    @overload
    def infer(self, request: Request) -> Response: ...
    @overload
    def infer(
        self, request: Request, errors_as_values: bool
    ) -> Response | TritonXError:
        """Blocking; the GIL is released while waiting. errors_as_values: an error
        the request was answered with is returned instead of raised."""
    def execute_on(
        self,
        instance: int,
        requests: Sequence[Request],
        override_inputs: Sequence[tuple[str, str, Sequence[int], Any]] = ...,
    ) -> list[TritonXError | None]:
        """Model warmup: runs ``requests`` as one batch on executor ``instance``,
        past the queue and batching; blocking (GIL released) until each is answered
        with FINAL. Per request, the first error it was answered with, or None.
        ``override_inputs`` ((name, datatype, shape, data), Triton's override
        inputs) are added to every request after its validation. Raises what the
        core refuses (validation; TritonXError UNSUPPORTED for an ensemble), with
        nothing run."""
    def update_instances(
        self,
        added: Sequence[_Instance],
        retired: Sequence[int],
        rate_limits: Sequence[InstanceRateLimit] = ...,
        context: ServerContext | None = None,
        hold_added: bool = False,
    ) -> None:
        """Triton's in-place instance update: ``added`` become executors numbered
        after every executor so far, the numbered ``retired`` ones take no new work,
        finish what they hold (under the sequence batcher: their sequences) and
        leave. ``hold_added``: the added ones run only execute_on batches (warmup)
        until release_instances. Raises TritonXError (INVALID_ARG: unknown or
        already retired number, none left; the rate limiter's refusal) with nothing
        changed."""
    def release_instances(self, instances: Sequence[int]) -> None:
        """Lets held executors take the model's work (INVALID_ARG: not held)."""
    def wait_retired(self, instances: Sequence[int], timeout_s: float) -> bool:
        """Blocks (GIL released) until the retired executors run nothing more;
        True when all have left."""
    def cancel(self, request: Request) -> bool:
        """Removes a still-queued request (answered CANCELLED); else only marks it."""
    def statistics(self) -> dict[str, Any]: ...
    def latency_summaries(
        self,
    ) -> dict[str, tuple[int, int, list[float]]] | None:
        """--metrics-config summary_latencies: per kind (request, queue,
        compute_input, compute_infer, compute_output, cache_hit, cache_miss) the
        cumulative count, sum (µs) and the window's quantiles (NaN: empty)."""
    def pending_count(self) -> int: ...
    def inflight_count(self) -> int: ...
    def wait_idle(self, timeout_s: float) -> bool: ...
    def stop(self, drain: bool = True) -> None: ...

class TraceSetting:
    """One installed version of a trace setting."""

    @property
    def id(self) -> int: ...
    @property
    def level(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def sampled(self) -> int: ...

class Tracer:
    """The server's request sampler."""

    def __init__(self) -> None: ...
    @property
    def active(self) -> bool: ...
    def install(
        self,
        model: str,
        level: int,
        rate: int,
        count: int,
        valid: bool,
        propagate: bool = False,
    ) -> TraceSetting: ...
    def remove(self, model: str) -> None: ...
    def drain(
        self, timeout_ms: int
    ) -> list[
        tuple[int, dict[str, str], list[dict[str, Any]], tuple[str, int] | None]
    ]: ...
    def close(self) -> None: ...

# A request's trace (bind_trace.cpp): the Python HTTP engine's frontend stamps and
# BLS children. No-ops on requests that are not traced.
def trace_received(
    request: Request,
    start_ns: int,
    end_ns: int,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> None: ...
def trace_stamp(request: Request, activity: str) -> None: ...
def trace_id(request: Request) -> int: ...
def trace_context(request: Request) -> str: ...
def inherit_trace(child: Request, parent: Request) -> bool: ...
def inherit_trace_id(child: Request, model: Model, trace_id: int) -> bool: ...

class ServerContext:
    """What one server's models share: the registry, the arena, the admission limit."""

    def __init__(self, pinned_pool_bytes: int = -1) -> None: ...
    def arena_stats(self) -> dict[str, int | bool]: ...
    @property
    def registry(self) -> ModelRegistry: ...
    @property
    def shared_memory(self) -> SharedMemoryRegistry: ...
    @property
    def tracer(self) -> Tracer: ...
    def set_max_inflight_requests(self, limit: int) -> None: ...
    def inflight_requests(self) -> int: ...
    def configure_rate_limiter(
        self, enabled: bool, resources: Sequence[tuple[str, int, int]]
    ) -> None: ...
    def rate_limiter_limits(self) -> dict[int, dict[str, int]]: ...
    def configure_response_cache(self, byte_size: int) -> None: ...
    def configure_remote_response_cache(
        self, store: object, workers: int, max_pending_insert_bytes: int = ...
    ) -> None: ...
    def close_response_cache(self) -> None: ...
    def response_cache_stats(self) -> dict[str, int] | None: ...
    def configure_latency_summaries(self, quantiles: Sequence[float]) -> None: ...

class SharedMemoryRegistry:
    """Registered system shared memory regions (one per server context)."""

    allowed: bool
    def register(self, name: str, key: str, offset: int, byte_size: int) -> None: ...
    def register_cuda(
        self, name: str, raw_handle: bytes, device_id: int, byte_size: int
    ) -> None: ...
    def unregister(self, name: str = "") -> None: ...
    def status(self, name: str = "") -> list[dict[str, Any]]: ...
    def __contains__(self, name: str) -> bool: ...

class ModelRegistry:
    """The model versions the frontends (HTTP in Python, gRPC in C++) can reach."""

    def __init__(self) -> None: ...
    def set_namespacing(self, enabled: bool) -> None: ...
    def add(self, model: Model, namespace: str = "") -> None: ...
    def remove(self, name: str, version: int, namespace: str = "") -> None: ...
    def set_known(self, name: str, known: bool, namespace: str = "") -> None: ...
    def set_unavailable(self, name: str, version: int, namespace: str = "") -> None: ...
    def set_resolvable(
        self, name: str, resolvable: bool, namespace: str = ""
    ) -> None: ...
    def find(self, name: str, version: str = "") -> Model: ...
    def models(self) -> list[Model]: ...

class StreamPool:
    """One CUDA stream per instance; streams are 0 without a GPU."""

    def __init__(self, count: int, device: int = -1) -> None: ...
    def get(self, index: int) -> int: ...
    def __len__(self) -> int: ...
    @property
    def device(self) -> int: ...

class GrpcServer:
    """Triton's inference.GRPCInferenceService served from C++ (when grpc_built)."""

    def __init__(
        self,
        registry: ModelRegistry,
        handler: Callable[[str, bytes], bytes | Any],
        *,
        control_threads: int = 8,
        infer_compression_level: str = "none",
        channel_args: Mapping[str, int] = ...,
        use_ssl: bool = False,
        use_mutual_auth: bool = False,
        server_cert: str = "",
        server_key: str = "",
        root_cert: str = "",
        restricted_protocols: Sequence[tuple[str, str, str]] = (),
        header_forward_pattern: str = "",
        shared_memory: SharedMemoryRegistry | None = None,
        max_stream_backlog_bytes: int = 1 << 30,
    ) -> None:
        """restricted_protocols: (group, full metadata key, value) per restricted
        protocol group; header_forward_pattern: RE2, case-insensitive by default."""
    def start(self, address: str, port: int) -> int:
        """Binds and starts serving; returns the bound port (port 0 picks one)."""
    def stop(self, grace: float = 0.0) -> None:
        """Stops accepting, waits up to `grace` seconds for in-flight calls, then
        cancels the rest. Blocking; idempotent."""
    def close_streams(self) -> None:
        """Ends every stream once its requests in flight are answered (an idle
        one at once) and refuses new ones: for a shutdown, once nothing is in
        flight, while `stop` waits out its grace."""
    @property
    def running(self) -> bool: ...

def arena_stats() -> dict[str, int | bool]:
    """reserved_bytes, in_use_bytes, peak_in_use_bytes, allocations, reuses, pinned."""

def parse_model_version(text: str) -> int | None: ...
def cuda_usable() -> bool: ...
def cuda_device_count() -> int: ...
def cuda_is_pinned(address: int) -> bool: ...
def arena_array(nbytes: int, context: ServerContext | None = None) -> Any:
    """A writable uint8 numpy array over one tensor-arena buffer."""

def h2d_copy_seconds(
    source: str,
    bytes: int,
    iterations: int,
    device: int = 0,
    context: ServerContext | None = None,
) -> float: ...
def device_to_host_copies() -> int:
    """Device->host tensor copies the core made so far (tensor_memory.h)."""

class DeviceMemory:
    """One device allocation (cudaMalloc), freed with the object."""

    def __init__(self, device: int, nbytes: int) -> None: ...
    @property
    def address(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def device(self) -> int: ...

def cuda_set_device(device: int) -> None: ...
def cuda_copy_async(
    dst: int, src: int, nbytes: int, stream: int, to_device: bool
) -> None: ...
def cuda_stream_sync(stream: int) -> None: ...
def set_log_sink(sink: Callable[[int, str], object] | None) -> None: ...
def set_verbose_logging(on: bool) -> None: ...
def _set_call_many(
    fn: Callable[[list[tuple[Callable[[Any, bool], object], Any, bool]]], None],
) -> None: ...
def _release_pending_refs() -> None: ...
def _pump_queued_logs(timeout_s: float) -> None: ...
def _wake_log_pump() -> None: ...
def generate_load(
    model: Model,
    inputs: Sequence[tuple[str, str, Sequence[int], Any]],
    concurrency: int,
    seconds: float,
) -> dict[str, float]: ...
def send_response(request: Request, response: Any, final: bool) -> None: ...

# The core's wire tables (bind_tables.cpp).
def datatypes() -> list[tuple[str, int, int, Any]]: ...
def status_codes() -> list[tuple[str, str, int, str]]: ...
def serialize_bytes(array: Any) -> bytes: ...
def deserialize_bytes(data: Any, count: int = -1) -> Any: ...

# The request builder for the Python HTTP engine (bind_request.cpp).
class ShmTargets:
    def __contains__(self, name: str) -> bool: ...
    def write(self, tensor: Tensor) -> None: ...

def build_request(
    model_name: str,
    id: str,
    inputs: Sequence[tuple[str, str, Sequence[int], str, Any]],
    outputs: Sequence[tuple[str, tuple[str, int, int] | None, int]],
    parameters: Mapping[str, Any] | None,
    shm: SharedMemoryRegistry | None,
    raw_parameters: Sequence[tuple[str, Any]] | None = None,
) -> tuple[Request, ShmTargets | None]: ...
def deduce_raw_input(
    model: Model, body: Any, parameters: Mapping[str, Any] | None = None
) -> Request: ...
def check_transaction_policy(model: Model, protocol: str) -> None: ...

# The infer and generate JSON walks both HTTP engines share (bind_infer_json.cpp).
MAX_REQUEST_TENSORS: int
JSON_OFF_LOOP_BYTES: int
GENERATE_ONE_RESPONSE: str

def decode_infer_json(
    doc: Any, header: Any, header_length: int | None, body_size: int, model: str
) -> tuple[
    str,
    bool,
    list[tuple[str, str, list[int], str, Any]],
    list[tuple[str, tuple[str, int, int] | None, int]],
    dict[str, bool],
    dict[str, Any] | None,
    Exception | None,
]: ...

class WireBytes:
    """JSON data a walk converted to wire bytes: a read-only buffer, never copied
    into Python; pickles as bytes."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...

GenerateSpec = tuple[str, int, tuple[tuple[str, str, tuple[int, ...]], ...]]

def generate_spec(model: Model) -> GenerateSpec: ...
def decode_generate_json(
    doc: Any, body: bytes | bytearray | memoryview, spec: GenerateSpec
) -> tuple[str, list[tuple[str, str, list[int], str, Any]], list[tuple[str, Any]]]: ...
def parse_header_length(value: str, body_size: int) -> int: ...
def json_parse_error(kind: str, detail: str = "") -> Exception: ...
def native_json_error(
    body: bytes | bytearray | memoryview,
) -> tuple[int, str] | None: ...

class http_messages:  # a submodule: core/http_messages.h
    @staticmethod
    def reason_phrase(status: int) -> str: ...
    @staticmethod
    def restricted_api(header: str) -> str: ...
    @staticmethod
    def header_reserved(name: str) -> bool: ...
    @staticmethod
    def reserved_header(name: str) -> str: ...
    @staticmethod
    def input_size_error(header_length: int, body_size: int, limit: int) -> str: ...
    @staticmethod
    def body_cap(limit: int) -> int: ...
    @staticmethod
    def body_too_large(bound: int) -> str: ...
    @staticmethod
    def body_out_of_memory(size: int) -> str: ...
    @staticmethod
    def head_too_large(max_size: int, max_count: int) -> str: ...
    @staticmethod
    def unsupported_compression() -> str: ...
    @staticmethod
    def request_log_line(method: str, path: str) -> str: ...
    @staticmethod
    def error_log_line(method: str, path: str, status: int) -> str: ...
    @staticmethod
    def decompress_failed(detail: str) -> str: ...
    @staticmethod
    def output_not_json(datatype: str) -> str: ...
    @staticmethod
    def accept_encoding(accept: str) -> str: ...
    @staticmethod
    def origin_form(target: bytes) -> bytes: ...
    @staticmethod
    def tls_needs_cert() -> str: ...
    @staticmethod
    def tls_needs_root() -> str: ...
    @staticmethod
    def tls_bad_server_cert(cert: str, key: str, reason: str) -> str: ...
    @staticmethod
    def tls_bad_root_cert(root: str, reason: str) -> str: ...

# tritonx-perf's load generator (csrc/perf, bind_perf.cpp).
# An input: (name, datatype, shape, data | None, shm_region, shm_offset, shm_size);
# an output: (name, shm_region, shm_offset, shm_size).
class PerfTarget:
    def __init__(
        self,
        protocol: str,
        url: str,
        model: str,
        version: str,
        steps: list[list[tuple[str, str, list[int], bytes | None, str, int, int]]],
        outputs: list[tuple[str, str, int, int]],
        streaming: bool = False,
        decoupled: bool = False,
        http_headers: list[tuple[str, str]] = ...,
        json_inputs: bool = False,
        json_outputs: bool = False,
        parameters: list[tuple[str, bool | int | str]] = ...,
        grpc_compression: str = "none",
        grpc_use_ssl: bool = False,
        grpc_root_certs: bytes = b"",
        grpc_private_key: bytes = b"",
        grpc_cert_chain: bytes = b"",
        https: dict[str, int | str] | None = None,
        endpoint: str = "",
        payloads: Sequence[str] = ...,
        keep_bodies: bool = False,
    ) -> None: ...

class PerfLoad:
    def __init__(
        self,
        target: PerfTarget,
        concurrency: int = 1,
        request_rate: float = 0.0,
        poisson: bool = False,
        max_threads: int = 16,
        sequence_length: int = 0,
        sequence_variation: float = 20.0,
        sequence_id_start: int = 1,
        sequence_id_end: int = 0,
        seed: int = 0,
        async_mode: bool = False,
        max_requests: int = 0,
        num_sequences: int = 4,
        stream_lengths: Sequence[int] = ...,
        length_from_stream: bool = False,
        intervals_us: Sequence[int] = ...,
        schedule_us: Sequence[tuple[int, int]] = ...,
        periodic: tuple[int, int, int] = (1, 0, 1),
        request_period: int = 10,
        session_concurrency: int = 0,
        sessions: Sequence[Sequence[int]] = ...,
        turn_delays_us: Sequence[int] = ...,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def drain(self) -> dict[str, np.ndarray[Any, Any]]:
        """start_ns, end_ns, send_ns, recv_ns, sequence_id, ok, sequence_start,
        sequence_end, response_count, first_response_ns (per request); response_ns
        with response_offsets (n + 1)."""
    def first_error(self) -> str: ...
    @property
    def delayed(self) -> int: ...
    @property
    def completed(self) -> int: ...

def perf_now_ns() -> int: ...
def make_ensemble_model(
    spec: ModelSpec,
    steps: Sequence[
        tuple[str, int, Sequence[tuple[str, str]], Sequence[tuple[str, str]], str]
    ],
    context: ServerContext | None = None,
) -> Model: ...

class HttpServer:
    """KServe v2 HTTP/REST served from C++ on libevent's evhttp (absent when built
    with TRITONX_ENABLE_HTTP=OFF). Infer is served in C++; every other request is
    passed to ``handler(method, url, headers, body, reply)`` on a C++ pool thread
    with the GIL, which answers once with ``reply(status, headers, body)``. With
    ``tls`` (or ``tls_mutual``) every connection is HTTPS from the PEM files given;
    bad files raise InvalidArgumentError naming the --http-* flag."""

    def __init__(
        self,
        registry: ModelRegistry,
        handler: Callable[
            [
                str,
                bytes,
                list[tuple[bytes, bytes]],
                bytes,
                Callable[[int, list[tuple[str, str]], bytes], None],
            ],
            None,
        ],
        *,
        thread_count: int = 2,
        max_input_size: int = 67108864,
        max_header_size: int = 65536,
        max_header_count: int = 1000,
        control_threads: int = 4,
        header_forward_pattern: str = "",
        infer_header: str = "",
        infer_value: str = "",
        live_in_cpp: bool = True,
        tls_server_cert: str = "",
        tls_server_key: str = "",
        tls_root_cert: str = "",
        tls: bool = False,
        tls_mutual: bool = False,
        shared_memory: SharedMemoryRegistry | None = None,
        cloud: dict[str, Any] | None = None,
    ) -> None: ...
    def start(self, address: str, port: int, reuse_port: bool = False) -> int:
        """Binds and starts serving; returns the bound port (port 0 picks one)."""
    def stop(self, grace: float = 0.0) -> None:
        """Stops accepting, waits up to `grace` seconds for requests in flight,
        then drops the rest. Blocking; idempotent."""
    @property
    def running(self) -> bool: ...

# Stub processes' execute ring and response stream (bind_stub.cpp): the server's and
# the stub's ends.
class StubExecutor:
    def __init__(
        self,
        name: str,
        timeout_s: float,
        shm_bytes: int,
        growth: int,
        decoupled: bool = False,
    ) -> None: ...
    def prepare(self) -> int: ...
    def attach(
        self, stub_fd: int, pid: int, stream_fd: int = -1, stream_socket: int = -1
    ) -> bool: ...
    def detach(self) -> None: ...
    def post_finalize(self) -> bool: ...
    def is_cancelled(self, index: int, key: int) -> bool: ...
    def fail_pending(self) -> None: ...
    def take_failure(self) -> str: ...

class StubEndpoint:
    def __init__(self, server_fd: int, out_bytes: int, growth: int) -> None: ...
    @property
    def out_fd(self) -> int: ...
    def wait(self) -> tuple[int, list[tuple[Any, ...]] | None]: ...
    def reply(self, items: list[Any], rescheduled: Sequence[int] = ...) -> None: ...
    def reply_error(
        self, exc: BaseException, answered_by_sender: list[int] = ...
    ) -> None: ...

class StubStream:
    def __init__(self, bytes: int, socket_fd: int) -> None: ...
    @property
    def fd(self) -> int: ...
    def send(self, key: int, response: Any, final: bool) -> None: ...
    @property
    def one_off_count(self) -> int: ...
