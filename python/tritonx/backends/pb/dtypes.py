"""Datatype tables shared by pb_utils and the backends, plus BYTES (de)serialization.

Triton numbers datatypes the same way in model_config.proto (TYPE_*) and in the server
API (TRITONSERVER_TYPE_*): BOOL=1 ... BYTES/STRING=13, BF16=14.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tritonx.dtypes import (
    NUMPY_DTYPES,
    WIRE_NAMES,
    WIRE_TO_ENUM,
    deserialize_bytes,
    serialize_bytes,
)

__all__ = ["WIRE_NAMES", "WIRE_TO_ENUM"]

# numpy types per enum value; BF16 has no numpy type (carried as uint16 bits).
_ENUM_TO_NUMPY: dict[int, Any] = {
    WIRE_TO_ENUM[name]: dtype.type
    for name, dtype in NUMPY_DTYPES.items()
    if name != "BF16"
}
_ENUM_TO_NUMPY[WIRE_TO_ENUM["BYTES"]] = np.object_

_NUMPY_TO_WIRE: dict[np.dtype[Any], str] = {
    dtype: name for name, dtype in NUMPY_DTYPES.items() if name != "BF16"
}

# Triton's python backend spells these with the config names (TYPE_STRING for
# BYTES) and gives BOOL as Python's bool.
TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_" + ("STRING" if name == "BYTES" else name): bool if name == "BOOL" else t
    for name, t in (
        (n, _ENUM_TO_NUMPY[WIRE_TO_ENUM[n]]) for n in WIRE_NAMES if n != "BF16"
    )
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
    return serialize_bytes(input_tensor)


def deserialize_bytes_tensor(encoded_tensor: bytes | memoryview) -> np.ndarray:
    """Inverse of ``serialize_byte_tensor``: a 1-D object array of ``bytes``."""
    return deserialize_bytes(encoded_tensor)
