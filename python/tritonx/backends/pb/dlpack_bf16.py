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

from tritonx import dlpack

# address of a ManagedTensor made here -> what it points into.
_alive: dict[int, tuple[Any, ...]] = {}


def _release(address: int | None) -> None:
    if address:
        _alive.pop(address, None)


def _capsule_gone(capsule: int | None) -> None:
    # Still named "dltensor": nobody consumed it, so the producer frees it.
    if capsule and dlpack.raw_is_valid(capsule, dlpack.CAPSULE_NAME):
        _release(dlpack.raw_get_pointer(capsule, dlpack.CAPSULE_NAME))


_deleter = dlpack.Deleter(_release)
_destructor = dlpack.CapsuleDestructor(_capsule_gone)


def bf16_capsule(bits: np.ndarray) -> Any:
    """A DLPack capsule of dtype bfloat16 over ``bits`` (uint16), without a copy."""
    array = np.ascontiguousarray(bits).view(np.uint16)
    shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
    managed = dlpack.ManagedTensor()
    tensor = managed.dl_tensor
    tensor.data = array.ctypes.data
    tensor.device = dlpack.Device(dlpack.KDL_CPU, 0)
    tensor.ndim = array.ndim
    tensor.dtype = dlpack.DataType(dlpack.KDL_BFLOAT, 16, 1)
    tensor.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    tensor.strides = None  # compact row-major
    tensor.byte_offset = 0
    managed.deleter = _deleter
    address = ctypes.addressof(managed)
    _alive[address] = (managed, shape, array)
    return dlpack.capsule_new(address, dlpack.CAPSULE_NAME, _destructor)


def bf16_bits(capsule: Any) -> np.ndarray | None:
    """The uint16 bits of an unconsumed host bfloat16 capsule (which is consumed),
    or None for any other object or capsule (left as it was)."""
    if type(capsule).__name__ != "PyCapsule" or not dlpack.is_valid(
        capsule, dlpack.CAPSULE_NAME
    ):
        return None
    address = dlpack.get_pointer(capsule, dlpack.CAPSULE_NAME)
    managed = dlpack.ManagedTensor.from_address(address)
    tensor = managed.dl_tensor
    dtype = (tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes)
    if dtype != (dlpack.KDL_BFLOAT, 16, 1) or tensor.device.device_type not in (
        dlpack.KDL_CPU,
        dlpack.KDL_CUDA_HOST,
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
    dlpack.set_name(capsule, dlpack.USED_CAPSULE_NAME)
    if ctypes.cast(managed.deleter, ctypes.c_void_p).value:
        managed.deleter(address)
    return bits
