"""bfloat16 DLPack capsules for ``pb_utils.Tensor`` (numpy has no bfloat16 type).

Triton's python backend passes BF16 tensors on through DLPack: ``to_dlpack()`` on a
BF16 tensor gives a capsule of dtype kDLBfloat/16 (torch reads it as bfloat16), and
``Tensor.from_dlpack`` takes such a capsule back as BF16. numpy can neither write nor
read that dtype, so these capsules are made and read here with ctypes. Only legacy
("dltensor") capsules over host memory; tritonx keeps BF16 data as its uint16 bits.

Ownership: a capsule made here keeps its array (and shape buffer) alive in
``_alive`` until its DLPack deleter runs (the consumer is done) or the capsule is
destroyed unconsumed. Reading a capsule copies the bits and then consumes it
(renamed "used_dltensor", its deleter called), as a DLPack consumer must.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

_KDL_CPU = 1
_KDL_CUDA_HOST = 3
_KDL_BFLOAT = 4
_NAME = b"dltensor"
_USED_NAME = b"used_dltensor"


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DataType(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint8),
        ("bits", ctypes.c_uint8),
        ("lanes", ctypes.c_uint16),
    ]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _ManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", _Deleter),
    ]


_api = ctypes.pythonapi
_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_capsule_new = ctypes.PYFUNCTYPE(
    ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, _CapsuleDestructor
)(("PyCapsule_New", _api))
_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api)
)
_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)
_set_name = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_SetName", _api)
)
# The destructor gets a capsule whose reference count is already zero: raw pointers
# only, never a py_object.
_raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api)
)
_raw_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)

# address of a _ManagedTensor made here -> what it points into.
_alive: dict[int, tuple[Any, ...]] = {}


def _release(address: int | None) -> None:
    if address:
        _alive.pop(address, None)


def _capsule_gone(capsule: int | None) -> None:
    # Still named "dltensor": nobody consumed it, so the producer frees it.
    if capsule and _raw_is_valid(capsule, _NAME):
        _release(_raw_get_pointer(capsule, _NAME))


_deleter = _Deleter(_release)
_destructor = _CapsuleDestructor(_capsule_gone)


def bf16_capsule(bits: np.ndarray) -> Any:
    """A DLPack capsule of dtype bfloat16 over ``bits`` (uint16), without a copy."""
    array = np.ascontiguousarray(bits).view(np.uint16)
    shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
    managed = _ManagedTensor()
    tensor = managed.dl_tensor
    tensor.data = array.ctypes.data
    tensor.device = _Device(_KDL_CPU, 0)
    tensor.ndim = array.ndim
    tensor.dtype = _DataType(_KDL_BFLOAT, 16, 1)
    tensor.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    tensor.strides = None  # compact row-major
    tensor.byte_offset = 0
    managed.deleter = _deleter
    address = ctypes.addressof(managed)
    _alive[address] = (managed, shape, array)
    return _capsule_new(address, _NAME, _destructor)


def bf16_bits(capsule: Any) -> np.ndarray | None:
    """The uint16 bits of an unconsumed host bfloat16 capsule (which is consumed),
    or None for any other object or capsule (left as it was)."""
    if type(capsule).__name__ != "PyCapsule" or not _is_valid(capsule, _NAME):
        return None
    address = _get_pointer(capsule, _NAME)
    managed = _ManagedTensor.from_address(address)
    tensor = managed.dl_tensor
    dtype = (tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes)
    if dtype != (_KDL_BFLOAT, 16, 1) or tensor.device.device_type not in (
        _KDL_CPU,
        _KDL_CUDA_HOST,
    ):
        return None
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    if tensor.strides:
        strides = tuple(tensor.strides[i] for i in range(tensor.ndim))
    else:
        strides = tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))
    count = int(np.prod(shape))
    if count == 0:
        bits = np.zeros(shape, np.uint16)
    else:
        if min(strides, default=0) < 0:
            raise ValueError("bfloat16 DLPack tensors with negative strides")
        extent = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        start = (tensor.data or 0) + tensor.byte_offset
        flat = np.frombuffer((ctypes.c_uint16 * extent).from_address(start), np.uint16)
        bits = np.lib.stride_tricks.as_strided(
            flat, shape, tuple(2 * s for s in strides)
        ).copy()
    _set_name(capsule, _USED_NAME)
    if ctypes.cast(managed.deleter, ctypes.c_void_p).value:
        managed.deleter(address)
    return bits
