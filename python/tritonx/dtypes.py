"""Wire datatypes and the BYTES wire form, from the core's one table (C++
``data_type.cc`` and ``tensor.h``, exposed by ``bindings/bind_tables.cpp``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tritonx import _native

# (wire name, model_config enum value, bytes per element (0: BYTES), numpy dtype).
_TABLE: list[tuple[str, int, int, np.dtype[Any] | None]] = _native.datatypes()

# Every wire name, in enum order (BOOL = 1 ... BF16 = 14).
WIRE_NAMES: tuple[str, ...] = tuple(name for name, _, _, _ in _TABLE)
WIRE_TO_ENUM: dict[str, int] = {name: value for name, value, _, _ in _TABLE}
ENUM_TO_WIRE: dict[int, str] = {value: name for name, value, _, _ in _TABLE}
BYTE_SIZES: dict[str, int] = {name: size for name, _, size, _ in _TABLE}

# Wire datatype -> numpy dtype (little-endian). BF16 travels as raw uint16 bits; BYTES
# has no fixed-size dtype (object arrays of bytes).
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    name: dtype for name, _, _, dtype in _TABLE if dtype is not None
}


def serialize_bytes(array: np.ndarray) -> bytes:
    """An object/bytes/str array in BYTES wire form (row-major; str as UTF-8, other
    objects as their str())."""
    data: bytes = _native.serialize_bytes(array)
    return data


def deserialize_bytes(data: Any, count: int = -1) -> np.ndarray:
    """BYTES wire data -> a 1-D object array of ``bytes`` (``count`` elements, -1:
    all of them); InvalidArgumentError when malformed."""
    out: np.ndarray = _native.deserialize_bytes(data, count)
    return out
