"""Tensor encodings shared by the frontends: wire datatypes, JSON <-> wire bytes.

The wire form of a tensor is what the binary tensor extension and gRPC's
``raw_*_contents`` carry: little-endian, row-major, no padding; BOOL is one byte;
BYTES elements are a uint32-LE length followed by the bytes. The core consumes and
produces exactly this form, so the only conversions done here are for JSON ``data``.

Error messages and codes follow Triton's HTTP frontend, since clients and tests
match on them: JSON parse problems are INTERNAL ("Unable to parse 'data': ...").
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from tritonx.dtypes import NUMPY_DTYPES
from tritonx.errors import InternalError, InvalidArgumentError

DATATYPES = frozenset((*NUMPY_DTYPES, "BYTES"))

# What TritonJson calls each element type in its "attempt to access ..." messages.
_JSON_ACCESS = {
    "BOOL": "JSON non-boolean as boolean",
    "FLOAT": "JSON non-number as double",
    "INT": "JSON non-signed-integer as signed-integer",
    "UINT": "JSON non-unsigned-integer as unsigned-integer",
    "BYTES": "JSON non-string as string",
}
_KIND = {
    "BOOL": "BOOL",
    "FP32": "FLOAT",
    "FP64": "FLOAT",
    "INT8": "INT",
    "INT16": "INT",
    "INT32": "INT",
    "INT64": "INT",
    "UINT8": "UINT",
    "UINT16": "UINT",
    "UINT32": "UINT",
    "UINT64": "UINT",
}
# numpy kinds a JSON array may come out as for each element kind ('b' bool,
# 'i'/'u' integers, 'f' float); anything else fails like TritonJson would.
_ACCEPTED_NP_KINDS = {"BOOL": "b", "FLOAT": "iuf", "INT": "iu", "UINT": "iu"}

_U32 = struct.Struct("<I")


def shape_to_json(shape: Sequence[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _parse_error(detail: str) -> InternalError:
    return InternalError(f"Unable to parse 'data': {detail}")


def _flatten(data: Any, out: list[Any]) -> None:
    # Slow path for ragged nesting that numpy refuses; Triton only counts leaves.
    for item in data:
        if isinstance(item, list):
            _flatten(item, out)
        else:
            out.append(item)


def _shape_mismatch() -> InternalError:
    return _parse_error("Shape does not match true shape of 'data' field")


def json_to_wire(name: str, datatype: str, shape: Sequence[int], data: Any) -> bytes:
    """JSON ``data`` (nested or flat list) for one input -> its wire bytes."""
    if datatype == "FP16" or datatype == "BF16":
        raise InvalidArgumentError(
            f"receiving {datatype} data via JSON is not supported. Please use the "
            f"binary data format for input {name}"
        )
    if not isinstance(data, list):
        raise InternalError(
            "Unable to parse 'data': attempt to access JSON non-array as array"
        )
    expected = element_count(shape)
    if datatype == "BYTES":
        return _bytes_to_wire(data, expected)
    kind = _KIND[datatype]
    try:
        array = np.asarray(data)
    except ValueError:
        flat: list[Any] = []
        _flatten(data, flat)
        array = np.asarray(flat, dtype=object)
    if array.dtype.kind == "O" or array.dtype.kind not in _ACCEPTED_NP_KINDS[kind]:
        array = _checked_elements(data, kind)
    if array.size != expected:
        raise _shape_mismatch()
    if kind == "UINT" and array.dtype.kind == "i" and array.size and array.min() < 0:
        raise _parse_error("attempt to access " + _JSON_ACCESS[kind])
    # A C-style cast like Triton's (integers wrap; doubles narrow to float).
    return array.astype(NUMPY_DTYPES[datatype], copy=False).tobytes()


def _checked_elements(data: list[Any], kind: str) -> np.ndarray:
    """Element-wise type check for data numpy could not type uniformly (mixed
    types, or integers past int64 that numpy would turn into doubles)."""
    flat: list[Any] = []
    _flatten(data, flat)
    for item in flat:
        if kind == "BOOL":
            ok = isinstance(item, bool)
        elif isinstance(item, bool):
            ok = False
        elif kind == "FLOAT":
            ok = isinstance(item, (int, float))
        else:
            ok = isinstance(item, int) and (kind == "INT" or item >= 0)
        if not ok:
            raise _parse_error("attempt to access " + _JSON_ACCESS[kind])
    if kind == "FLOAT":
        return np.asarray(flat, dtype=np.float64)
    if kind == "BOOL":
        return np.asarray(flat, dtype=np.bool_)
    # Integers beyond int64 wrap the way Triton's uint64 -> narrower casts do.
    return np.asarray([v & 0xFFFFFFFFFFFFFFFF for v in flat], dtype=np.uint64)


def _bytes_to_wire(data: list[Any], expected: int) -> bytes:
    flat: list[Any] = []
    _flatten(data, flat)
    if len(flat) != expected:
        # Triton checks the type of each element before the count.
        for item in flat:
            if not isinstance(item, str):
                raise _parse_error("attempt to access " + _JSON_ACCESS["BYTES"])
        raise _shape_mismatch()
    parts: list[bytes] = []
    pack = _U32.pack
    for item in flat:
        if not isinstance(item, str):
            raise _parse_error("attempt to access " + _JSON_ACCESS["BYTES"])
        try:
            raw = item.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            # A lone surrogate from a JSON escape; rapidjson refuses it so.
            raise InvalidArgumentError(
                "failed to parse the request JSON buffer: The surrogate pair in "
                "string is invalid."
            ) from None
        parts.append(pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def wire_bytes_to_list(raw: bytes | bytearray | memoryview, count: int) -> list[bytes]:
    """Split length-prefixed BYTES wire data into ``count`` elements."""
    view = memoryview(raw)
    out: list[bytes] = []
    offset = 0
    end = len(view)
    for _ in range(count):
        if offset + 4 > end:
            break
        (length,) = _U32.unpack_from(view, offset)
        offset += 4
        out.append(bytes(view[offset : offset + length]))
        offset += length
    return out


def wire_to_json(
    datatype: str, shape: Sequence[int], raw: bytes | bytearray | memoryview
) -> str:
    """Wire bytes of one output -> the JSON text of its flat ``data`` array."""
    if datatype == "FP16" or datatype == "BF16":
        raise InvalidArgumentError(
            f"sending {datatype} data via JSON is not supported. Please use the "
            "binary data format for output"
        )
    if datatype == "BYTES":
        items = wire_bytes_to_list(raw, element_count(shape))
        # Triton writes the bytes as-is; undecodable bytes are kept reversibly.
        return json.dumps([b.decode("utf-8", "surrogateescape") for b in items])
    array = np.frombuffer(raw, dtype=NUMPY_DTYPES[datatype])
    # tolist() gives Python floats, so FP32 prints like Triton's double rendering
    # (0.1f -> 0.10000000149011612) and NaN/Infinity come out like rapidjson's.
    return json.dumps(array.tolist())
