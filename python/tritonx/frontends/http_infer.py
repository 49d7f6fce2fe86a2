"""KServe v2 infer bodies over HTTP for the Python engine: JSON decoding and
response encoding.

With the native engine built, its RapidJSON reader parses the text and the walk
the native engine uses (``csrc/core/infer_json.h``) reads the document, with the
GIL released for a body large enough to be decoded off the loop
(``_native.native_parse_infer``). Builds without RapidJSON parse
with Python's json module, with RapidJSON's reading of the text where the two
differ (``request_json``: what Triton refuses, and how it words it), and the same
walk reads the objects it made (``_native.decode_infer_json``), so every check and
message of Triton's HTTP frontend exists once. What it decodes is the core
request builder's neutral description; every rule that is not about the syntax
(datatypes, JSON values to wire bytes, shared memory, reserved parameters, raw
bodies, the decoupled check) is the builder's (``csrc/core/request_builder.h``
through ``_native.build_request``), shared with the native HTTP engine and gRPC.
Tensor data given in binary (``binary_data_size``) is passed on as memoryviews into
the request body, never copied; outputs marked binary are written from the response
tensors' ``raw()`` views. A decoding error is held (``ParsedInfer.error``) until the
builder has seen what came before it, so that an earlier input's error wins, as in
the native engine where decoding and building interleave.

Parsing is split so that the JSON part of a large body can run off the event loop
(``http_offload``: on a thread, or in a helper process without RapidJSON):
``parse_header`` needs only the JSON bytes and returns binary inputs as ``slice``
objects into the body, which ``attach_binary`` turns into views.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from tritonx import _native
from tritonx.errors import TritonXError
from tritonx.frontends import codec, request_json

Buffer = bytes | bytearray | memoryview

# A tensor's (shared_memory_region, _offset, _byte_size), resolved by the core's
# request builder (``parse_header`` may run in a helper process, which has no
# regions).
ShmRef = tuple[str, int, int]
# (name, datatype, shape, kind, data), the builder's input description: kind "bytes"
# (JSON `data` converted by the builder's rules, or a view into the body; from
# parse_header a slice of it) or "shm" (a ShmRef).
InputTuple = tuple[str, str, list[int], str, Any]
# (name, ShmRef | None, classification count)
OutputTuple = tuple[str, ShmRef | None, int]

# Inputs, and requested outputs, one request may name (the core's limit).
MAX_TENSORS: int = _native.MAX_REQUEST_TENSORS


class ParsedInfer:
    """What an infer body says, ready for the core's request builder."""

    __slots__ = (
        "binary_outputs",
        "default_binary",
        "error",
        "id",
        "inputs",
        "outputs",
        "parameters",
        "raw",
        "shm_outputs",
    )

    def __init__(self) -> None:
        self.id = ""
        self.inputs: list[InputTuple] = []
        self.outputs: list[OutputTuple] = []
        # Explicit per-output "binary_data" flags; others use default_binary.
        self.binary_outputs: dict[str, bool] = {}
        self.default_binary = False
        self.parameters: dict[str, Any] | None = None
        # The first decoding error, raised after the builder saw what came before it.
        self.error: BaseException | None = None
        # A raw body (Inference-Header-Content-Length: 0): (core model, body).
        self.raw: tuple[Any, Buffer] | None = None
        # The regions outputs are written into (a _native.ShmTargets), or None.
        self.shm_outputs: Any = None

    def core_request(self, params: dict[str, Any] | None, shm: Any, model: str) -> Any:
        """The core request, from the builder; ``shm``: the server's
        ``SharedMemoryRegistry`` (None: shared memory refused)."""
        if self.raw is not None:
            return _native.deduce_raw_input(self.raw[0], self.raw[1], params)
        request, self.shm_outputs = _native.build_request(
            model,
            self.id,
            self.inputs,
            self.outputs,
            params if self.error is None else None,
            shm,
        )
        if self.error is not None:
            raise self.error
        return request


class SendStamps:
    """HTTP_SEND_START / HTTP_SEND_END of a request sampled for a trace, around
    the write of its response (no-ops when the request was not sampled). Holds the
    request, so its trace completes once the response is written."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def sending(self) -> None:
        _native.trace_stamp(self._request, "HTTP_SEND_START")

    def sent(self) -> None:
        _native.trace_stamp(self._request, "HTTP_SEND_END")


def trace_received(
    request: Any, received: int, headers: dict[bytes, bytes]
) -> SendStamps:
    """Records a request's HTTP_RECV_START (``received``) and HTTP_RECV_END (now)
    with the W3C trace context of its headers, when a trace samples it; returns the
    stamps for the write of its response."""
    parent = headers.get(b"traceparent")
    state = headers.get(b"tracestate")
    _native.trace_received(
        request,
        received,
        time.monotonic_ns(),
        None if parent is None else parent.decode("latin-1"),
        None if state is None else state.decode("latin-1"),
    )
    return SendStamps(request)


class OutputTensor(Protocol):
    name: str
    datatype: str
    shape: list[int]

    def raw(self) -> memoryview: ...


def header_length(value: bytes | None, body_size: int) -> int | None:
    """``Inference-Header-Content-Length`` checked like Triton (atoi semantics)."""
    if value is None:
        return None
    return _native.parse_header_length(value.decode("latin-1"), body_size)


def load_json(data: Buffer) -> Any:
    """A request body's JSON document, read as Triton reads it; text it refuses
    raises the native engine's parse error (``request_json``)."""
    return request_json.loads(data)


def parse_infer(body: Buffer, hlen: int | None, model: str) -> ParsedInfer:
    """Parse a JSON (``hlen is None``) or binary-extension (``hlen > 0``) body."""
    header = body if hlen is None else memoryview(body)[:hlen]
    parsed = parse_header(header, hlen, len(body), model)
    attach_binary(parsed, body)
    return parsed


def attach_binary(parsed: ParsedInfer, body: Buffer) -> None:
    """Replace the slices ``parse_header`` left for binary inputs by views into
    ``body`` (no copy)."""
    view: memoryview | None = None
    for i, (name, datatype, shape, kind, data) in enumerate(parsed.inputs):
        if isinstance(data, slice):
            if view is None:
                view = memoryview(body)
            parsed.inputs[i] = (name, datatype, shape, kind, view[data])


def parse_header(
    header: Buffer, hlen: int | None, body_size: int, model: str
) -> ParsedInfer:
    """The JSON part of an infer body; ``body_size`` is the whole body's length.
    A decoding error is kept in ``error`` (see the module docstring)."""
    parsed = ParsedInfer()
    if _native.native_parse_infer is not None:
        decoded = _native.native_parse_infer(header, hlen, body_size, model)
    else:
        try:
            doc = load_json(header)
        except TritonXError as exc:
            parsed.error = exc
            return parsed
        decoded = _native.decode_infer_json(doc, header, hlen, body_size, model)
    (
        parsed.id,
        parsed.default_binary,
        parsed.inputs,
        parsed.outputs,
        parsed.binary_outputs,
        parsed.parameters,
        parsed.error,
    ) = decoded
    # An output the request lists is JSON unless its own binary_data says binary:
    # binary_data_output is the default of the outputs it does not list (Triton).
    for name, _, _ in parsed.outputs:
        parsed.binary_outputs.setdefault(name, False)
    return parsed


def json_items(
    outputs: Sequence[OutputTensor],
    binary_outputs: dict[str, bool],
    default_binary: bool,
    shm_outputs: Any = None,
) -> list[tuple[str, list[int], memoryview]]:
    """(datatype, shape, wire bytes) of the outputs answered as JSON ``data``
    (``shm_outputs``: the request's ``_native.ShmTargets`` or None)."""
    get = binary_outputs.get
    return [
        (out.datatype, list(out.shape), out.raw())
        for out in outputs
        if not get(out.name, default_binary)
        and (shm_outputs is None or out.name not in shm_outputs)
    ]


def render_json_data(items: Sequence[tuple[str, list[int], Buffer]]) -> list[bytes]:
    """The JSON text of each item's ``data`` array (see ``json_items``)."""
    return [codec.wire_to_json(datatype, shape, raw) for datatype, shape, raw in items]


def encode_response(
    model_name: str,
    model_version: str,
    rid: str,
    parameters: dict[str, Any] | None,
    outputs: Sequence[OutputTensor],
    binary_outputs: dict[str, bool],
    default_binary: bool,
    json_data: Sequence[bytes] | None = None,
    shm_outputs: Any = None,
) -> tuple[bytes, list[memoryview]]:
    """Response JSON header and the binary sections that follow it, in order.

    ``json_data``, when given, is ``render_json_data(json_items(...))`` computed
    elsewhere (large outputs are rendered off the event loop). Outputs in
    ``shm_outputs`` (a ``_native.ShmTargets``) are copied into their regions and
    answered without data, as Triton does."""
    # Written as Triton's RapidJSON writes them (compact, strings as UTF-8 bytes).
    value = codec.json_value
    parts = [b'{"id":' + value(rid) + b"," if rid else b"{"]
    parts.append(b'"model_name":' + value(model_name))
    parts.append(b',"model_version":' + value(model_version))
    if parameters:
        parts.append(b',"parameters":' + value(parameters))
    parts.append(b',"outputs":[')
    binaries: list[memoryview] = []
    get = binary_outputs.get
    rendered = 0
    for i, out in enumerate(outputs):
        name = out.name
        datatype = out.datatype
        shape = codec.shape_to_json(out.shape)
        head = (
            b'{"name":'
            + value(name)
            + f',"datatype":"{datatype}","shape":{shape}'.encode()
        )
        if i:
            head = b"," + head
        if shm_outputs is not None and name in shm_outputs:
            shm_outputs.write(out)
            parts.append(head + b"}")
            continue
        raw = out.raw()
        if get(name, default_binary):
            if raw.nbytes:  # as Triton: no section (nor binary framing) for 0 bytes
                binaries.append(raw)
            parts.append(head + b',"parameters":{"binary_data_size":%d}}' % raw.nbytes)
            continue
        if json_data is not None:
            data = json_data[rendered]
            rendered += 1
        else:
            data = codec.wire_to_json(datatype, out.shape, raw)
        parts.append(head + b',"data":')
        parts.append(data)
        parts.append(b"}")
    parts.append(b"]}")
    return b"".join(parts), binaries
