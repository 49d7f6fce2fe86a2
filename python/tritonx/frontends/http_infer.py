"""KServe v2 infer bodies over HTTP: request parsing and response encoding.

Pure functions over bytes so that they can be tested without a server. Tensor data
given in binary (``binary_data_size``) is passed on as memoryviews into the request
body, never copied; outputs marked binary are written from the response tensors'
``raw()`` views. Checks and messages follow Triton's HTTP frontend, in its order;
everything about the tensors themselves (names, shapes, sizes, datatypes against the
model) is left to the core's validation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from tritonx.errors import InternalError, InvalidArgumentError, UnsupportedError
from tritonx.frontends import codec

Buffer = bytes | bytearray | memoryview
InputTuple = tuple[str, str, list[int], Buffer]
ParamValue = bool | int | float | str


class ParsedInfer:
    """What an infer body says, ready for ``tritonx._native.Request``."""

    __slots__ = (
        "binary_outputs",
        "default_binary",
        "id",
        "inputs",
        "outputs",
        "parameters",
    )

    def __init__(self) -> None:
        self.id = ""
        self.inputs: list[InputTuple] = []
        self.outputs: list[str] = []
        # Explicit per-output "binary_data" flags; others use default_binary.
        self.binary_outputs: dict[str, bool] = {}
        self.default_binary = False
        self.parameters: dict[str, ParamValue] | None = None


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


def _loads(data: Buffer) -> Any:
    try:
        # json accepts bytes and bytearray but not memoryview.
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InternalError(f"failed to parse the request JSON buffer: {exc}") from None


def _missing(member: str) -> InternalError:
    return InternalError(
        f"Unable to parse '{member}': attempt to access non-existing object member "
        f"'{member}'"
    )


def _wrong_type(member: str, what: str) -> InternalError:
    return InternalError(f"Unable to parse '{member}': attempt to access JSON {what}")


def parse_infer(body: bytes, hlen: int | None, model: str) -> ParsedInfer:
    """Parse a JSON (``hlen is None``) or binary-extension (``hlen > 0``) body."""
    view = memoryview(body)
    header = body if hlen is None else view[:hlen]
    doc = _loads(header if isinstance(header, bytes) else bytes(header))
    if not isinstance(doc, dict):
        raise _missing("inputs")
    parsed = ParsedInfer()
    rid = doc.get("id")
    if rid is not None:
        if not isinstance(rid, str):
            raise _wrong_type("id", "non-string as string")
        parsed.id = rid
    params = doc.get("parameters")
    if params is not None:
        _parse_parameters(params, parsed)
    inputs = doc.get("inputs")
    if inputs is None:
        raise _missing("inputs")
    if not isinstance(inputs, list):
        raise _wrong_type("inputs", "non-array as array")
    offset = 0 if hlen is None else hlen
    for item in inputs:
        offset = _parse_input(item, parsed, view, offset, hlen, model)
    if hlen is not None and offset != len(body):
        raise InvalidArgumentError(
            f"unexpected additional input data for model '{model}'"
        )
    outputs = doc.get("outputs")
    if outputs is not None:
        _parse_outputs(outputs, parsed)
    return parsed


def _parse_parameters(params: Any, parsed: ParsedInfer) -> None:
    if not isinstance(params, dict):
        raise InternalError("failed to get request params.")
    out: dict[str, ParamValue] = {}
    for key, value in params.items():
        if key == "binary_data_output":
            if not isinstance(value, bool):
                raise _wrong_type(key, "non-boolean as boolean")
            parsed.default_binary = value
            continue
        if value is None or isinstance(value, (dict, list)):
            raise InvalidArgumentError(
                f"parameter '{key}' has invalid type. It should be either 'int', "
                "'bool', or 'string'."
            )
        out[key] = value
    if out:
        parsed.parameters = out


def _parse_input(
    item: Any,
    parsed: ParsedInfer,
    view: memoryview,
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
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise _wrong_type("shape", "non-unsigned-integer as unsigned-integer")
    if has_shm:
        raise InvalidArgumentError(
            f"shared memory inputs are not supported by this server (input '{name}')"
        )
    if datatype not in codec.DATATYPES:
        raise InvalidArgumentError(f"invalid datatype for input {name}")
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
        if end > len(view):
            missing = end - len(view)
            raise InvalidArgumentError(
                f"unexpected size for input '{name}', expecting {missing} additional "
                f"bytes for model '{model}'"
            )
        parsed.inputs.append((name, datatype, shape, view[offset:end]))
        return end
    if codec.element_count(shape) == 0:
        parsed.inputs.append((name, datatype, shape, b""))
        return offset
    data = codec.json_to_wire(name, datatype, shape, item["data"])
    parsed.inputs.append((name, datatype, shape, data))
    return offset


def _parse_outputs(outputs: Any, parsed: ParsedInfer) -> None:
    if not isinstance(outputs, list):
        raise _wrong_type("outputs", "non-array as array")
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
        oparams = item.get("parameters")
        if isinstance(oparams, dict):
            if "shared_memory_region" in oparams:
                raise InvalidArgumentError(
                    "shared memory outputs are not supported by this server "
                    f"(output '{name}')"
                )
            classes = oparams.get("classification")
            if classes:
                raise UnsupportedError(
                    "the classification extension is not supported by this server "
                    f"(output '{name}')"
                )
            flag = oparams.get("binary_data")
            if flag is not None:
                if not isinstance(flag, bool):
                    raise _wrong_type("binary_data", "non-boolean as boolean")
                parsed.binary_outputs[name] = flag
        parsed.outputs.append(name)


def raw_input(
    body: bytes,
    inputs: Sequence[tuple[str, str, Sequence[int]]],
    max_batch_size: int,
    model: str,
) -> ParsedInfer:
    """A body with ``Inference-Header-Content-Length: 0``: the raw bytes of the
    model's only input, shape deduced from the config like Triton's core does."""
    if len(inputs) != 1:
        raise InvalidArgumentError(
            "[request id: <id_unknown>] Raw request must only have 1 input (found 1) "
            f"to be deduced but got {len(inputs)} inputs in '{model}' model "
            "configuration"
        )
    name, datatype, dims = inputs[0]
    data: Buffer = body
    if datatype == "BYTES":
        # One element: the whole body, in the length-prefixed wire form.
        data = len(body).to_bytes(4, "little") + body
        shape = [1] * max(len(dims), 1)
    else:
        shape = list(dims)
        itemsize = codec.NUMPY_DTYPES[datatype].itemsize
        variable = [i for i, d in enumerate(shape) if d < 0]
        fixed = codec.element_count([d for d in shape if d >= 0])
        if len(variable) > 1:
            raise InvalidArgumentError(
                f"[request id: <id_unknown>] Raw input '{name}' of model '{model}' "
                "has more than one variable-size dimension and cannot be deduced"
            )
        if variable:
            shape[variable[0]] = len(body) // itemsize // max(fixed, 1)
    if max_batch_size > 0:
        shape = [1, *shape]
    parsed = ParsedInfer()
    parsed.inputs.append((name, datatype, shape, memoryview(data)))
    parsed.default_binary = True
    return parsed


def encode_response(
    model_name: str,
    model_version: str,
    rid: str,
    parameters: dict[str, Any] | None,
    outputs: Sequence[OutputTensor],
    binary_outputs: dict[str, bool],
    default_binary: bool,
) -> tuple[bytes, list[memoryview]]:
    """Response JSON header and the binary sections that follow it, in order."""
    parts = ['{"id":' + json.dumps(rid) + "," if rid else "{"]
    parts.append('"model_name":' + json.dumps(model_name))
    parts.append(',"model_version":' + json.dumps(model_version))
    if parameters:
        parts.append(',"parameters":' + json.dumps(parameters))
    parts.append(',"outputs":[')
    binaries: list[memoryview] = []
    get = binary_outputs.get
    for i, out in enumerate(outputs):
        name = out.name
        datatype = out.datatype
        shape = codec.shape_to_json(out.shape)
        head = f'{{"name":{json.dumps(name)},"datatype":"{datatype}","shape":{shape}'
        if i:
            head = "," + head
        raw = out.raw()
        if get(name, default_binary):
            binaries.append(raw)
            parts.append(f'{head},"parameters":{{"binary_data_size":{raw.nbytes}}}}}')
        else:
            data = codec.wire_to_json(datatype, out.shape, raw)
            parts.append(f'{head},"data":{data}}}')
    parts.append("]}")
    return "".join(parts).encode(), binaries
