"""Datatype tables shared by pb_utils and the backends, plus BYTES (de)serialization.

Triton numbers datatypes the same way in model_config.proto (TYPE_*) and in the server
API (TRITONSERVER_TYPE_*): BOOL=1 ... BYTES/STRING=13, BF16=14.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

# Wire datatype names in enum order, starting at 1.
WIRE_NAMES: tuple[str, ...] = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
    "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16",
)  # fmt: skip
WIRE_TO_ENUM: dict[str, int] = {name: i + 1 for i, name in enumerate(WIRE_NAMES)}

# numpy types per enum value; BF16 has no numpy type (carried as uint16 bits).
_ENUM_TO_NUMPY: dict[int, Any] = {
    1: np.bool_, 2: np.uint8, 3: np.uint16, 4: np.uint32, 5: np.uint64,
    6: np.int8, 7: np.int16, 8: np.int32, 9: np.int64,
    10: np.float16, 11: np.float32, 12: np.float64, 13: np.object_,
}  # fmt: skip

_NUMPY_TO_WIRE: dict[np.dtype[Any], str] = {
    np.dtype(t): WIRE_NAMES[e - 1] for e, t in _ENUM_TO_NUMPY.items() if e != 13
}

TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


def triton_to_numpy_type(data_type: int) -> Any:
    """numpy type for a Triton datatype number; None for BF16 and unknown values."""
    return _ENUM_TO_NUMPY.get(int(data_type))


def numpy_to_triton_type(data_type: Any) -> int | None:
    """Triton datatype number for a numpy dtype or type (object/bytes_ -> 13)."""
    dtype = np.dtype(data_type)
    if dtype.kind in "OSU":
        return 13
    wire = _NUMPY_TO_WIRE.get(dtype)
    return WIRE_TO_ENUM[wire] if wire is not None else None


def triton_string_to_numpy(triton_type_string: str) -> Any:
    return TRITON_STRING_TO_NUMPY[triton_type_string]


def wire_datatype_of(array: np.ndarray) -> str:
    """Wire datatype name for an array; raises TypeError for unsupported dtypes."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    wire = _NUMPY_TO_WIRE.get(array.dtype)
    if wire is None:
        raise TypeError(f"unsupported numpy dtype '{array.dtype}' for a Triton tensor")
    return wire


def serialize_byte_tensor(input_tensor: np.ndarray) -> bytes | None:
    """Flatten a BYTES tensor to Triton's wire form: 4-byte LE length + bytes each.

    Returns None for arrays that are not object/bytes_ arrays, like Triton does.
    """
    if input_tensor.dtype != np.object_ and input_tensor.dtype.type is not np.bytes_:
        return None
    parts: list[bytes] = []
    for item in input_tensor.reshape(-1, order="C"):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes_tensor(encoded_tensor: bytes | memoryview) -> np.ndarray:
    """Inverse of ``serialize_byte_tensor``: a 1-D object array of ``bytes``."""
    view = memoryview(encoded_tensor).cast("B")
    items: list[bytes] = []
    offset = 0
    while offset < len(view):
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        items.append(bytes(view[offset : offset + length]))
        offset += length
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    return out
