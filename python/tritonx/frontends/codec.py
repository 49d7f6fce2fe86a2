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
from collections.abc import Sequence

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
) -> str:
    """Wire bytes of one output -> the JSON text of its flat ``data`` array."""
    if datatype == "FP16" or datatype == "BF16":
        raise InvalidArgumentError(_native.http_messages.output_not_json(datatype))
    if datatype == "BYTES":
        items = deserialize_bytes(raw, element_count(shape))
        # Triton writes the bytes as-is; undecodable bytes are kept reversibly.
        return json.dumps(
            [b.decode("utf-8", "surrogateescape") for b in items], separators=_COMPACT
        )
    array = np.frombuffer(raw, dtype=NUMPY_DTYPES[datatype])
    # tolist() gives Python floats, so FP32 prints like Triton's double rendering
    # (0.1f -> 0.10000000149011612) and NaN/Infinity come out like rapidjson's.
    return json.dumps(array.tolist(), separators=_COMPACT)
