"""Output memory: ``MemoryAllocator``, ``default_memory_allocators`` and the
per-request ``ResponseAllocator`` (Triton's ``tritonserver._api._allocators``).

In Triton the backend asks the request's response allocator for each output's
buffer and writes into it. tritonx's core always produces outputs in its own host
memory, so the allocator runs when a response reaches this API: each output is given
to the user's ``MemoryAllocator`` (Triton's arguments: size in bytes, memory type,
memory type id) and its bytes are copied into the buffer returned, which the output
``Tensor`` then refers to. With the default host allocator there is nothing to copy:
the output refers to the core's memory, a fresh host buffer as Triton's
``CPUAllocator`` would give.

An allocator that raises, or returns something unusable (not a MemoryBuffer, too
small, null), fails that response with InternalError, as a failed allocation fails a
Triton response; device memory it returns fails it with UnsupportedError (this API
writes host memory only).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from tritonx.api._memory import (
    HOST_MEMORY,
    MemoryBuffer,
    MemoryType,
    host_bytes,
    memory_type_name,
    parse_device_or_memory_type,
)
from tritonx.api._tensor import DataType, Tensor
from tritonx.errors import InternalError, InvalidArgumentError, UnsupportedError


class MemoryAllocator(ABC):
    """Where outputs go: subclass and return a ``MemoryBuffer`` of at least ``size``
    bytes, e.g. ``MemoryBuffer.from_dlpack(numpy.empty(size, numpy.uint8))``.
    ``memory_type`` / ``memory_type_id`` say what the request asked for; host memory
    (CPU or CPU_PINNED) may be returned whatever was asked. An ``allocate`` that
    also takes a ``tensor_name`` parameter is given the output's name (the first
    Triton beta's signature)."""

    @abstractmethod
    def allocate(
        self, size: int, memory_type: MemoryType, memory_type_id: int
    ) -> MemoryBuffer:
        """A buffer of at least ``size`` bytes."""


class CPUAllocator(MemoryAllocator):
    """Fresh host memory (a numpy array owns it)."""

    def allocate(
        self, size: int, memory_type: MemoryType, memory_type_id: int
    ) -> MemoryBuffer:
        return MemoryBuffer._from_array(np.empty(size, np.uint8))


# Memory type -> the allocator a request uses when it names no
# output_memory_allocator. There is no GPU entry: asking for GPU output memory
# without an allocator is refused, as Triton refuses it where it has no GPU
# allocator. Pinned requests get ordinary host memory (reported as CPU).
_HOST_ALLOCATOR = CPUAllocator()
default_memory_allocators: dict[MemoryType, MemoryAllocator] = {
    MemoryType.CPU: _HOST_ALLOCATOR,
    MemoryType.CPU_PINNED: _HOST_ALLOCATOR,
}


def _takes_tensor_name(allocate: Any) -> bool:
    try:
        return "tensor_name" in inspect.signature(allocate).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


class ResponseAllocator:
    """One request's output memory: ``memory_allocator`` (None: the default for the
    memory type) and ``device_or_memory_type`` (None: host memory). Checked when the
    request is sent: an unknown memory type, or one that no default allocator
    serves, raises InvalidArgumentError then."""

    def __init__(
        self,
        memory_allocator: Any = None,
        device_or_memory_type: Any = None,
    ) -> None:
        if memory_allocator is not None and not callable(
            getattr(memory_allocator, "allocate", None)
        ):
            raise InvalidArgumentError(
                "output_memory_allocator must be a MemoryAllocator (an object with "
                f"allocate(size, memory_type, memory_type_id)), not "
                f"{type(memory_allocator).__name__}"
            )
        self._memory_type, self._memory_type_id = MemoryType.CPU, 0
        if device_or_memory_type is not None:
            self._memory_type, self._memory_type_id = parse_device_or_memory_type(
                device_or_memory_type
            )
            if (
                memory_allocator is None
                and self._memory_type not in default_memory_allocators
            ):
                served = [memory_type_name(kind) for kind in default_memory_allocators]
                raise InvalidArgumentError(
                    f"Memory type {memory_type_name(self._memory_type)} not supported "
                    f"by default_memory_allocators: {served} (tritonx.api writes "
                    "outputs to host memory; an output_memory_allocator may return "
                    "host memory for it)"
                )
        allocator = memory_allocator or default_memory_allocators.get(self._memory_type)
        # The default host allocator would only copy the core's host memory into
        # fresh host memory: hand over the core's buffer instead.
        self._allocator: Any = None if type(allocator) is CPUAllocator else allocator
        self._pass_name = self._allocator is not None and _takes_tensor_name(
            self._allocator.allocate
        )

    def output(self, core: Any) -> Tensor:
        """The API tensor for core output ``core``, in the allocator's memory."""
        if self._allocator is None:
            return Tensor._from_core(core)
        name, size = core.name, int(core.byte_size)
        buffer = self._allocate(name, size)
        if size:
            host_bytes(buffer, size)[:] = np.frombuffer(core, np.uint8)
        tensor = Tensor(DataType[core.datatype], core.shape, buffer)
        tensor._nbytes = size  # the buffer may be larger than the output
        return tensor

    def _allocate(self, name: str, size: int) -> MemoryBuffer:
        assert self._allocator is not None
        args = (size, self._memory_type, self._memory_type_id)
        try:
            if self._pass_name:
                buffer = self._allocator.allocate(*args, tensor_name=name)
            else:
                buffer = self._allocator.allocate(*args)
        except Exception as error:
            raise InternalError(
                f"memory allocator failed for output '{name}': "
                f"{type(error).__name__}: {error}"
            ) from error
        if not isinstance(buffer, MemoryBuffer):
            raise InternalError(
                f"memory allocator returned {type(buffer).__name__} for output "
                f"'{name}', not a MemoryBuffer"
            )
        if buffer.memory_type not in HOST_MEMORY:
            kind = memory_type_name(buffer.memory_type)
            raise UnsupportedError(
                f"memory allocator returned {kind} memory for output '{name}': "
                "tritonx.api writes outputs to host memory only (MemoryType.CPU or "
                "MemoryType.CPU_PINNED)"
            )
        if buffer.size < size or (size and not buffer.data_ptr):
            raise InternalError(
                f"memory allocator returned a buffer of {buffer.size} bytes at "
                f"{buffer.data_ptr:#x} for output '{name}', which needs {size} bytes"
            )
        return buffer
