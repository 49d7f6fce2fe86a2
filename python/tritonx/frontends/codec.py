"""Output tensors as JSON for the Python HTTP engine.

The wire form of a tensor is what the binary tensor extension and gRPC's
``raw_*_contents`` carry: little-endian, row-major, no padding; BOOL is one byte;
BYTES elements are a uint32-LE length followed by the bytes. The core consumes and
produces exactly this form. JSON ``data`` of inputs becomes wire bytes in the core's
request builder (``csrc/core/request_builder.cc``), for every protocol; what is left
here is rendering outputs as JSON ``data``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from tritonx import _native
from tritonx.dtypes import NUMPY_DTYPES, WIRE_NAMES, deserialize_bytes
from tritonx.errors import InvalidArgumentError

DATATYPES = frozenset(WIRE_NAMES)
# Triton (RapidJSON) writes no blanks between array elements.
_COMPACT = (",", ":")


def shape_to_json(shape: Sequence[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def wire_to_json(
    datatype: str, shape: Sequence[int], raw: bytes | bytearray | memoryview
) -> bytes:
    """Wire bytes of one output -> the JSON text of its flat ``data`` array, as the
    native engine writes it where that is built (``_native.native_json_data``)."""
    if _native.native_json_data is not None:
        return _native.native_json_data(datatype, list(shape), raw)
    if datatype == "FP16" or datatype == "BF16":
        raise InvalidArgumentError(_native.http_messages.output_not_json(datatype))
    if datatype == "BYTES":
        items = deserialize_bytes(raw, element_count(shape))
        return b"[" + b",".join(map(json_string, items)) + b"]"
    array = np.frombuffer(raw, dtype=NUMPY_DTYPES[datatype])
    # tolist() gives Python floats, so FP32 prints like Triton's double rendering
    # (0.1f -> 0.10000000149011612) and NaN/Infinity come out like rapidjson's.
    return json.dumps(array.tolist(), separators=_COMPACT).encode()


def json_value(value: Any) -> bytes:
    """A response's JSON value (ids, names, parameters) as Triton's RapidJSON
    writer writes it: compact, strings as their UTF-8 bytes (see ``json_string``)."""
    if isinstance(value, str):
        return json_string(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        members = (json_value(str(k)) + b":" + json_value(v) for k, v in value.items())
        return b"{" + b",".join(members) + b"}"
    if isinstance(value, (list, tuple)):
        return b"[" + b",".join(map(json_value, value)) + b"]"
    return json.dumps(value).encode()  # numbers, booleans, null


def json_string(value: bytes) -> bytes:
    """``value`` as a JSON string, written as Triton's RapidJSON writer writes it:
    the bytes as they are (BYTES elements need not be UTF-8: a client gets exactly
    what the model produced), only '"', '\\' and control characters escaped."""
    return b'"' + _ESCAPED.sub(_escape, value) + b'"'


# RapidJSON's Writer::WriteString escapes: short forms for five control characters,
# \u00XX (upper-case hex) for the others, and the quote and the backslash.
_ESCAPED = re.compile(rb'[\x00-\x1f"\\]')
_ESCAPES = {c: b"\\u%04X" % c for c in range(0x20)}
_ESCAPES.update(
    {
        0x08: b"\\b",
        0x09: b"\\t",
        0x0A: b"\\n",
        0x0C: b"\\f",
        0x0D: b"\\r",
        0x22: b'\\"',
        0x5C: b"\\\\",
    }
)


def _escape(match: re.Match[bytes]) -> bytes:
    return _ESCAPES[match.group()[0]]
