"""``MemoryType``, ``DLDeviceType`` and ``MemoryBuffer``: where a tensor's bytes are.

A ``MemoryBuffer`` names memory it does not own (pointer, memory type, device, size)
and holds a reference to the object that does, as Triton's. This API reads and
writes host memory only (CPU, and CPU_PINNED, which is host memory too);
``host_bytes`` is the one place that turns a buffer into a numpy view.
"""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonx import dlpack
from tritonx.errors import InvalidArgumentError, UnsupportedError


class MemoryType(enum.IntEnum):
    """Triton's ``TRITONSERVER_MemoryType`` members."""

    CPU = 0
    CPU_PINNED = 1
    GPU = 2


class DLDeviceType(enum.IntEnum):
    """DLPack's device types (``DLDeviceType`` in dlpack.h), as Triton exports."""

    kDLCPU = 1
    kDLCUDA = 2
    kDLCUDAHost = 3
    kDLOpenCL = 4
    kDLVulkan = 7
    kDLMetal = 8
    kDLVPI = 9
    kDLROCM = 10
    kDLROCMHost = 11
    kDLExtDev = 12
    kDLCUDAManaged = 13
    kDLOneAPI = 14
    kDLWebGPU = 15
    kDLHexagon = 16


# What Triton's ``output_memory_type`` and ``to_device`` take: "cpu", "gpu:1",
# MemoryType.CPU, (MemoryType.GPU, 1) or (DLDeviceType.kDLCUDA, 1).
DeviceOrMemoryType = (
    tuple[MemoryType, int] | MemoryType | tuple[DLDeviceType, int] | str
)

# The memory this API can read and write.
HOST_MEMORY = (MemoryType.CPU, MemoryType.CPU_PINNED)

_DLPACK_TO_MEMORY_TYPE = {
    DLDeviceType.kDLCPU: MemoryType.CPU,
    DLDeviceType.kDLCUDA: MemoryType.GPU,
    DLDeviceType.kDLCUDAHost: MemoryType.CPU_PINNED,
}


def _memory_type_of_device(device_type: int) -> MemoryType:
    try:
        return _DLPACK_TO_MEMORY_TYPE[DLDeviceType(device_type)]
    except (KeyError, ValueError):
        raise InvalidArgumentError(
            f"Unsupported DLPack device type. Can't convert {device_type} to "
            "Triton server memory type"
        ) from None


def memory_type_name(value: Any) -> str:
    """``MemoryType.GPU`` for a memory type (IntEnum's str() is only the number)."""
    try:
        return f"MemoryType.{MemoryType(value).name}"
    except ValueError:
        return f"memory type {value!r}"


def dlpack_device(memory_type: MemoryType, memory_type_id: int) -> tuple[int, int]:
    """``__dlpack_device__`` for memory of this type (pinned memory is CPU to
    DLPack, as in Triton)."""
    if memory_type == MemoryType.GPU:
        return (int(DLDeviceType.kDLCUDA), memory_type_id)
    return (int(DLDeviceType.kDLCPU), 0)


def parse_device_or_memory_type(value: Any) -> tuple[MemoryType, int]:
    """A ``DeviceOrMemoryType`` as (memory type, memory type id); anything else
    raises InvalidArgumentError."""
    if isinstance(value, tuple) and len(value) == 2:
        kind, device_id = value
        if isinstance(kind, MemoryType):
            memory_type = kind
        elif isinstance(kind, DLDeviceType):
            memory_type = _memory_type_of_device(kind)
        else:
            raise InvalidArgumentError(f"Invalid memory type {value}")
        if isinstance(device_id, bool) or not isinstance(device_id, int):
            raise InvalidArgumentError(f"Invalid memory type {value}")
        return memory_type, device_id
    if isinstance(value, MemoryType):
        return value, 0
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) > 2:
            raise InvalidArgumentError(f"Invalid memory type string {value}")
        try:
            memory_type = MemoryType[parts[0].upper()]
        except KeyError:
            raise InvalidArgumentError(
                f"Unsupported Memory Type String. Can't convert {parts[0]} to "
                "Triton server memory type"
            ) from None
        try:
            return memory_type, int(parts[1]) if len(parts) == 2 else 0
        except ValueError:
            raise InvalidArgumentError(f"Invalid memory type string {value}") from None
    raise InvalidArgumentError(f"Invalid memory type {value!r}")


@dataclass
class MemoryBuffer:
    """Memory of a tensor: ``data_ptr``, ``memory_type``, ``memory_type_id``,
    ``size`` (bytes) and ``owner``, the object that keeps the memory alive (it
    must not be freed while the owner is referenced)."""

    data_ptr: int
    memory_type: MemoryType
    memory_type_id: int
    size: int
    owner: Any

    @staticmethod
    def from_dlpack(owner: Any) -> MemoryBuffer:
        """A buffer over the memory of a contiguous DLPack producer (a numpy array,
        a torch tensor, ...); ``owner`` is the producer, nothing is copied."""
        if not hasattr(owner, "__dlpack__"):
            raise InvalidArgumentError("Object does not support DLpack protocol")
        try:
            layout = dlpack.layout_of(owner)
        except Exception as error:
            raise InvalidArgumentError(
                f"Object does not support DLPack protocol: {error}"
            ) from None
        if not layout.contiguous:
            raise InvalidArgumentError("Only contiguous memory is supported")
        return MemoryBuffer(
            layout.data_ptr,
            _memory_type_of_device(layout.device_type),
            layout.device_id,
            layout.byte_size,
            owner,
        )

    @staticmethod
    def _from_array(array: np.ndarray[Any, Any]) -> MemoryBuffer:
        """A buffer over a C-contiguous host array."""
        return MemoryBuffer(array.ctypes.data, MemoryType.CPU, 0, array.nbytes, array)


def host_bytes(buffer: MemoryBuffer, nbytes: int | None = None) -> np.ndarray[Any, Any]:
    """The first ``nbytes`` (default: all) of a host buffer as a writable uint8
    array; the array keeps ``buffer.owner`` alive. UnsupportedError for device
    memory."""
    if buffer.memory_type not in HOST_MEMORY:
        raise UnsupportedError(
            f"{memory_type_name(buffer.memory_type)} memory cannot be read on the "
            "host by tritonx.api: it reads and writes host memory only"
        )
    count = buffer.size if nbytes is None else nbytes
    if count > buffer.size:
        raise InvalidArgumentError(
            f"memory buffer of {buffer.size} bytes is too small for {count} bytes"
        )
    if count == 0:
        return np.empty(0, np.uint8)
    if not buffer.data_ptr:
        raise InvalidArgumentError("memory buffer has a null data_ptr")
    raw = (ctypes.c_uint8 * count).from_address(buffer.data_ptr)
    # The view's base is ``raw``; the owner rides on it so that the memory lives as
    # long as any array made from it.
    raw._tritonx_owner = buffer.owner  # type: ignore[attr-defined]
    return np.frombuffer(memoryview(raw), np.uint8)
