"""Wire datatype names and their numpy dtypes, shared by the codecs and warmup."""

from __future__ import annotations

from typing import Any

import numpy as np

# Wire datatype -> numpy dtype (little-endian). BF16 travels as raw uint16 bits; BYTES
# has no fixed-size dtype (object arrays of bytes).
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
}
