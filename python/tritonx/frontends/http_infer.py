"""KServe v2 infer bodies over HTTP for the Python engine: JSON decoding and
response encoding.

This module only decodes the JSON syntax (Python's json module: the engine must work
in builds without RapidJSON) into the core request builder's neutral description;
every rule that is not about the syntax (datatypes, JSON values to wire bytes, shared
memory, reserved parameters, raw bodies, the decoupled check) is the builder's
(``csrc/core/request_builder.h`` through ``_native.build_request``), shared with the
native HTTP engine and gRPC. Tensor data given in binary (``binary_data_size``) is
passed on as memoryviews into the request body, never copied; outputs marked binary
are written from the response tensors' ``raw()`` views. Checks and messages follow
Triton's HTTP frontend, in its order: a decoding error is held (``ParsedInfer.error``)
until the builder has seen what came before it, so that an earlier input's error
wins, as in the native engine where decoding and building interleave.

Parsing is split so that the JSON part can run in a helper process
(``http_offload``): ``parse_header`` needs only the JSON bytes and returns binary
inputs as ``slice`` objects into the body, which ``attach_binary`` turns into views.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from tritonx import _native
from tritonx.errors import InternalError, InvalidArgumentError, TritonXError
from tritonx.frontends import codec

Buffer = bytes | bytearray | memoryview


class ShmRef(NamedTuple):
    """A tensor's ``shared_memory_*`` parameters, resolved by the core's request
    builder (``parse_header`` may run in a helper process, which has no regions)."""

    region: str
    offset: int
    byte_size: int


# (name, datatype, shape, kind, data), the builder's input description: kind "bytes"
# (JSON `data` converted by the builder's rules, or a view into the body; from
# parse_header a slice of it) or "shm" (a ShmRef).
InputTuple = tuple[str, str, list[int], str, Any]
# (name, ShmRef | None, classification count)
OutputTuple = tuple[str, ShmRef | None, int]
ParamValue = bool | int | float | str

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1
# Inputs, and requested outputs, one request may name. Triton has no such limit,
# but a request naming more tensors than any model has cannot succeed, and each
# one costs work before the core can refuse it.
MAX_TENSORS = 4096


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
        self.parameters: dict[str, ParamValue] | None = None
        # The first decoding error, raised after the builder saw what came before it.
        self.error: TritonXError | None = None
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


class OutputTensor(Protocol):
    name: str
    datatype: str
    shape: list[int]

    def raw(self) -> memoryview: ...


def header_length(value: bytes | None, body_size: int) -> int | None:
    """``Inference-Header-Content-Length`` checked like Triton (atoi semantics)."""
    if value is None:
        return None
    text = value.decode("latin-1").strip()
    digits = 0
    sign = 1
    i = 0
    if text[:1] in ("-", "+"):
        sign = -1 if text[0] == "-" else 1
        i = 1
    while i < len(text) and text[i].isdigit():
        digits = digits * 10 + ord(text[i]) - 48
        i += 1
    parsed = sign * digits
    if parsed < 0 or parsed > body_size:
        raise InvalidArgumentError(
            f"inference header size should be in range (0, {body_size}), got: {text}"
        )
    return parsed


def load_json(data: Buffer) -> Any:
    """``json.loads`` with every failure as Triton's parse error (INTERNAL)."""
    try:
        # json accepts bytes and bytearray but not memoryview.
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except UnicodeDecodeError:
        # rapidjson's wording; Python's names the codec.
        raise InternalError(
            "failed to parse the request JSON buffer: Invalid encoding in string."
        ) from None
    except ValueError as exc:
        raise InternalError(f"failed to parse the request JSON buffer: {exc}") from None
    except RecursionError:
        raise InternalError(
            "failed to parse the request JSON buffer: the document is nested too "
            "deeply."
        ) from None


def checked_text(value: str) -> str:
    """``value`` if it is encodable as UTF-8. JSON ``\\ud800`` escapes decode to
    lone surrogates, which the core cannot take; rapidjson refuses them while
    parsing, with this message."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                "failed to parse the request JSON buffer: The surrogate pair in "
                "string is invalid."
            ) from None
    return value


def _unsigned(member: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"Unable to parse '{member}': attempt to access JSON non-unsigned-integer "
        "as unsigned-integer"
    )


def _missing(member: str) -> InternalError:
    return InternalError(
        f"Unable to parse '{member}': attempt to access non-existing object member "
        f"'{member}'"
    )


def _wrong_type(member: str, what: str) -> InternalError:
    return InternalError(f"Unable to parse '{member}': attempt to access JSON {what}")


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


def _shm_ref(params: dict[str, Any]) -> ShmRef:
    """Triton's reading of a tensor's ``shared_memory_*`` parameters."""
    region = params["shared_memory_region"]
    if not isinstance(region, str):
        raise _wrong_type("shared_memory_region", "non-string as string")
    values = []
    for key in ("shared_memory_offset", "shared_memory_byte_size"):
        value = params.get(key, 0)
        if type(value) is not int or not 0 <= value <= UINT64_MAX:
            raise _wrong_type(key, "non-unsigned-integer as unsigned-integer")
        values.append(value)
    return ShmRef(checked_text(region), values[0], values[1])


def parse_header(
    header: Buffer, hlen: int | None, body_size: int, model: str
) -> ParsedInfer:
    """The JSON part of an infer body; ``body_size`` is the whole body's length.
    A decoding error is kept in ``error`` (see the module docstring)."""
    parsed = ParsedInfer()
    try:
        _parse_header(parsed, header, hlen, body_size, model)
    except TritonXError as exc:
        parsed.error = exc
    return parsed


def _parse_header(
    parsed: ParsedInfer, header: Buffer, hlen: int | None, body_size: int, model: str
) -> None:
    doc = load_json(header)
    if not isinstance(doc, dict):
        raise _missing("inputs")
    rid = doc.get("id")
    if rid is not None:
        if not isinstance(rid, str):
            raise _wrong_type("id", "non-string as string")
        parsed.id = checked_text(rid)
    params = doc.get("parameters")
    if params is not None:
        _parse_parameters(params, parsed)
    inputs = doc.get("inputs")
    if inputs is None:
        raise _missing("inputs")
    if not isinstance(inputs, list):
        raise _wrong_type("inputs", "non-array as array")
    _check_count(len(inputs), "inputs")
    offset = 0 if hlen is None else hlen
    for item in inputs:
        offset = _parse_input(item, parsed, body_size, offset, hlen, model)
    if hlen is not None and offset != body_size:
        raise InvalidArgumentError(
            f"unexpected additional input data for model '{model}'"
        )
    outputs = doc.get("outputs")
    if outputs is not None:
        _parse_outputs(outputs, parsed)


def _check_count(count: int, what: str) -> None:
    if count > MAX_TENSORS:
        raise InvalidArgumentError(
            f"the request has {count} {what}, more than the {MAX_TENSORS} this "
            "server accepts in one request"
        )


def _parse_parameters(params: Any, parsed: ParsedInfer) -> None:
    if not isinstance(params, dict):
        raise InternalError("failed to get request params.")
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        checked_text(key)
        if key == "binary_data_output":
            if not isinstance(value, bool):
                raise _wrong_type(key, "non-boolean as boolean")
            parsed.default_binary = value
            continue
        out[key] = _parameter(key, value)
    if out:
        parsed.parameters = out


def _parameter(key: str, value: Any) -> ParamValue:
    """One request parameter, typed the way Triton's HTTP frontend reads it."""
    is_int = type(value) is int
    if key in ("priority", "timeout"):
        if not is_int or not 0 <= value <= UINT64_MAX:
            raise _unsigned(key)
        return int(value)
    if key == "sequence_id":
        if is_int and 0 <= value <= UINT64_MAX:
            return int(value)
        if isinstance(value, str):
            return checked_text(value)
        raise InvalidArgumentError(
            "Unable to parse 'sequence_id': attempt to access JSON non-string as string"
        )
    if key in ("sequence_start", "sequence_end"):
        if not isinstance(value, bool):
            raise InvalidArgumentError(
                f"Unable to parse '{key}': attempt to access JSON non-boolean as "
                "boolean"
            )
        return value
    if isinstance(value, str):
        return checked_text(value)
    if is_int:
        # Triton keeps integers that do not fit int64 as doubles.
        return int(value) if -INT64_MAX - 1 <= value <= INT64_MAX else float(value)
    if isinstance(value, (bool, float)):
        return value
    raise InvalidArgumentError(
        f"parameter '{key}' has invalid type. It should be either 'int', "
        "'bool', or 'string'."
    )


def _parse_input(
    item: Any,
    parsed: ParsedInfer,
    body_size: int,
    offset: int,
    hlen: int | None,
    model: str,
) -> int:
    if not isinstance(item, dict):
        raise _missing("name")
    iparams = item.get("parameters")
    has_data = "data" in item
    has_binary = isinstance(iparams, dict) and "binary_data_size" in iparams
    has_shm = isinstance(iparams, dict) and "shared_memory_region" in iparams
    if has_data + has_binary + has_shm != 1:
        message = (
            "Input must set only one of the following fields: 'data', "
            "'binary_data_size' in 'parameters', 'shared_memory_region' in "
            "'parameters'. But"
        )
        if not (has_data or has_binary or has_shm):
            message += " no field is set"
        else:
            message += " set"
            message += " 'data'" if has_data else ""
            message += " 'binary_data_size'" if has_binary else ""
            message += " 'shared_memory_region'" if has_shm else ""
        raise InvalidArgumentError(message)
    name = item.get("name")
    if not isinstance(name, str):
        raise (
            _missing("name")
            if name is None
            else _wrong_type("name", "non-string as string")
        )
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        if datatype is None:
            raise _missing("datatype")
        raise _wrong_type("datatype", "non-string as string")
    shape = item.get("shape")
    if not isinstance(shape, list):
        if shape is None:
            raise _missing("shape")
        raise _wrong_type("shape", "non-array as array")
    checked_text(name)
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise _wrong_type("shape", "non-unsigned-integer as unsigned-integer")
        if dim > INT64_MAX:
            # Triton reads dims as uint64 and its core as int64; larger ones are
            # refused here rather than wrapping.
            if dim > UINT64_MAX:
                raise _unsigned("shape")
            raise InvalidArgumentError(
                f"Unable to parse 'shape': dimension {dim} of input '{name}' is "
                f"larger than the maximum of {INT64_MAX}"
            )
    if has_shm:
        parsed.inputs.append((name, datatype, shape, "shm", _shm_ref(iparams)))  # type: ignore[arg-type]
        return offset
    if has_binary:
        size = iparams["binary_data_size"]  # type: ignore[index]
        if type(size) is not int or size < 0:
            raise InternalError(
                "Unable to parse 'binary_data_size': attempt to access JSON "
                "non-unsigned-integer as unsigned-integer"
            )
        if size and hlen is None:
            raise InvalidArgumentError(
                "must specify valid 'Infer-Header-Content-Length' in request header "
                "and 'binary_data_size' when passing inputs in binary data format"
            )
        end = offset + size
        if end > body_size:
            missing = end - body_size
            raise InvalidArgumentError(
                f"unexpected size for input '{name}', expecting {missing} additional "
                f"bytes for model '{model}'"
            )
        parsed.inputs.append((name, datatype, shape, "bytes", slice(offset, end)))
        return end
    # Converted here by the builder's own rules, so that a helper process hands
    # back bytes, not a decoded list.
    data = _native.json_data_to_wire(name, datatype, shape, item["data"])
    parsed.inputs.append((name, datatype, shape, "bytes", data))
    return offset


def _parse_outputs(outputs: Any, parsed: ParsedInfer) -> None:
    if not isinstance(outputs, list):
        raise _wrong_type("outputs", "non-array as array")
    _check_count(len(outputs), "outputs")
    for item in outputs:
        if not isinstance(item, dict):
            raise _missing("name")
        name = item.get("name")
        if not isinstance(name, str):
            raise (
                _missing("name")
                if name is None
                else _wrong_type("name", "non-string as string")
            )
        checked_text(name)
        oparams = item.get("parameters")
        shm: ShmRef | None = None
        classes = 0
        if isinstance(oparams, dict):
            if "shared_memory_region" in oparams:
                if oparams.get("binary_data") is True:
                    raise InvalidArgumentError(
                        "Output can't set both 'shared_memory_region' and 'binary_data'"
                    )
                shm = _shm_ref(oparams)
            if "classification" in oparams:
                classes = oparams["classification"]
                if (
                    not isinstance(classes, int)
                    or isinstance(classes, bool)
                    or classes < 0
                ):
                    raise InvalidArgumentError(
                        "Unable to set 'classification': attempt to access JSON "
                        "non-unsigned-integer as unsigned-integer"
                    )
                classes = min(classes, 0xFFFFFFFF)
            flag = oparams.get("binary_data")
            if flag is not None:
                if not isinstance(flag, bool):
                    raise _wrong_type("binary_data", "non-boolean as boolean")
                parsed.binary_outputs[name] = flag
        parsed.outputs.append((name, shm, classes))


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
    return [
        codec.wire_to_json(datatype, shape, raw).encode()
        for datatype, shape, raw in items
    ]


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
    parts = [('{"id":' + json.dumps(rid) + "," if rid else "{").encode()]
    parts.append(b'"model_name":' + json.dumps(model_name).encode())
    parts.append(b',"model_version":' + json.dumps(model_version).encode())
    if parameters:
        parts.append(b',"parameters":' + json.dumps(parameters).encode())
    parts.append(b',"outputs":[')
    binaries: list[memoryview] = []
    get = binary_outputs.get
    rendered = 0
    for i, out in enumerate(outputs):
        name = out.name
        datatype = out.datatype
        shape = codec.shape_to_json(out.shape)
        head = f'{{"name":{json.dumps(name)},"datatype":"{datatype}","shape":{shape}'
        if i:
            head = "," + head
        if shm_outputs is not None and name in shm_outputs:
            shm_outputs.write(out)
            parts.append(f"{head}}}".encode())
            continue
        raw = out.raw()
        if get(name, default_binary):
            binaries.append(raw)
            parts.append(
                f'{head},"parameters":{{"binary_data_size":{raw.nbytes}}}}}'.encode()
            )
            continue
        if json_data is not None:
            data = json_data[rendered]
            rendered += 1
        else:
            data = codec.wire_to_json(datatype, out.shape, raw).encode()
        parts.append(f'{head},"data":'.encode())
        parts.append(data)
        parts.append(b"}")
    parts.append(b"]}")
    return b"".join(parts), binaries
