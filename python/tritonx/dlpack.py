"""The DLPack C structures and capsule calls, for the places that read or make
capsules with ctypes rather than through numpy: BF16 tensors (numpy has no bfloat16)
and ``tritonx.api.MemoryBuffer.from_dlpack`` (any device and dtype).

Only legacy ("dltensor") capsules: the ones every producer gives to ``__dlpack__()``
called without ``max_version``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3
KDL_BFLOAT = 4
CAPSULE_NAME = b"dltensor"
USED_CAPSULE_NAME = b"used_dltensor"


class Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DataType(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint8),
        ("bits", ctypes.c_uint8),
        ("lanes", ctypes.c_uint16),
    ]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", Device),
        ("ndim", ctypes.c_int32),
        ("dtype", DataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class ManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", Deleter),
    ]


_api = ctypes.pythonapi
CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
capsule_new = ctypes.PYFUNCTYPE(
    ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, CapsuleDestructor
)(("PyCapsule_New", _api))
is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api)
)
get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)
set_name = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_SetName", _api)
)
# A capsule destructor gets a capsule whose reference count is already zero: raw
# pointers only, never a py_object.
raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api)
)
raw_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)


@dataclass(frozen=True)
class Layout:
    """What a DLPack tensor says about its memory (read, not consumed)."""

    data_ptr: int  # data + byte_offset
    device_type: int
    device_id: int
    dtype: tuple[int, int, int]  # (code, bits, lanes)
    shape: tuple[int, ...]
    contiguous: bool  # compact row-major

    @property
    def byte_size(self) -> int:
        count = 1
        for extent in self.shape:
            count *= extent
        _, bits, lanes = self.dtype
        return count * ((bits * lanes + 7) // 8)


def layout_of(producer: Any) -> Layout:
    """The layout of ``producer.__dlpack__()``'s tensor. The capsule is left
    unconsumed, so the producer releases it when it is dropped; the pointer stays
    valid while the producer lives. Raises what the producer raises, or ValueError
    when it gives no legacy capsule."""
    capsule = producer.__dlpack__()
    if type(capsule).__name__ != "PyCapsule" or not is_valid(capsule, CAPSULE_NAME):
        raise ValueError("__dlpack__() did not return a DLPack capsule")
    tensor = ManagedTensor.from_address(get_pointer(capsule, CAPSULE_NAME)).dl_tensor
    shape = tuple(int(tensor.shape[i]) for i in range(tensor.ndim))
    contiguous = True
    if tensor.strides and 0 not in shape:
        # Row-major strides, in elements; a dimension of extent 1 may have any, and
        # an empty tensor has no layout to break.
        expected = 1
        for i in reversed(range(tensor.ndim)):
            if shape[i] != 1 and tensor.strides[i] != expected:
                contiguous = False
            expected *= shape[i]
    return Layout(
        data_ptr=(tensor.data or 0) + tensor.byte_offset,
        device_type=tensor.device.device_type,
        device_id=tensor.device.device_id,
        dtype=(tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes),
        shape=shape,
        contiguous=contiguous,
    )
