"""``Tensor`` and ``DataType``: host tensors in and out of the core.

A Tensor holds one of: a numpy array (made by the caller), a core tensor (an output
the core produced, read without copying) or a ``MemoryBuffer`` (Triton's
``Tensor(data_type, shape, memory_buffer)``, and outputs written by a request's
memory allocator). Fixed-size types go through DLPack in both directions; BYTES
tensors are object arrays of ``bytes`` (``to_bytes_array``, ``to_string_array``)
since DLPack has no such type, as in Triton.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import numpy as np

from tritonx import _native, dtypes
from tritonx.api._memory import (
    HOST_MEMORY,
    MemoryBuffer,
    MemoryType,
    dlpack_device,
    host_bytes,
    memory_type_name,
    parse_device_or_memory_type,
)
from tritonx.backends.pb.dlpack_bf16 import bf16_capsule
from tritonx.errors import InvalidArgumentError, UnsupportedError


class DataType(enum.IntEnum):
    """Triton's ``TRITONSERVER_DataType`` members."""

    INVALID = 0
    BOOL = 1
    UINT8 = 2
    UINT16 = 3
    UINT32 = 4
    UINT64 = 5
    INT8 = 6
    INT16 = 7
    INT32 = 8
    INT64 = 9
    FP16 = 10
    FP32 = 11
    FP64 = 12
    BYTES = 13
    BF16 = 14


# How the core names the memory of its (host) tensors.
_CORE_MEMORY = {"CPU": MemoryType.CPU, "CPU_PINNED": MemoryType.CPU_PINNED}


def _data_type_of(array: np.ndarray[Any, Any]) -> DataType:
    if array.dtype.kind in "OSU":
        return DataType.BYTES
    for name, dtype in dtypes.NUMPY_DTYPES.items():
        if name != "BF16" and dtype == array.dtype:
            return DataType[name]
    raise InvalidArgumentError(f"unsupported numpy dtype {array.dtype}")


class Tensor:
    """A tensor in host memory: ``data_type``, ``shape``, ``memory_buffer``
    (``data_ptr``, ``memory_type``, ``memory_type_id``, ``size``).
    ``Tensor(data_type, shape, memory_buffer)`` views memory the caller owns."""

    __slots__ = ("_array", "_buffer", "_core", "_nbytes", "data_type", "shape")

    def __init__(
        self,
        data_type: DataType,
        shape: Sequence[int],
        memory_buffer: MemoryBuffer | None = None,
        *,
        array: np.ndarray[Any, Any] | None = None,
        core: Any = None,
    ) -> None:
        self.data_type = DataType(data_type)
        self.shape = tuple(int(d) for d in shape)
        self._array = array
        self._core = core  # a tritonx._native.Tensor (an output)
        # The memory: given, or made from the array or core tensor when asked for.
        self._buffer = memory_buffer
        # Bytes of the buffer in use, where it may be larger (allocator outputs).
        self._nbytes: int | None = None
        if array is None and core is None:
            if not isinstance(memory_buffer, MemoryBuffer):
                raise InvalidArgumentError(
                    "a Tensor needs a memory_buffer (a MemoryBuffer), not "
                    f"{type(memory_buffer).__name__}"
                )
            needed = self._fixed_nbytes()
            if needed is not None and memory_buffer.size < needed:
                raise InvalidArgumentError(
                    f"memory buffer of {memory_buffer.size} bytes is too small for "
                    f"a {self.data_type.name} tensor of shape {list(self.shape)} "
                    f"({needed} bytes)"
                )

    def __repr__(self) -> str:
        return f"Tensor(data_type={self.data_type.name}, shape={list(self.shape)})"

    def _fixed_nbytes(self) -> int | None:
        """Bytes of a fixed-size tensor of this shape; None for BYTES."""
        if self.data_type == DataType.BYTES:
            return None
        count = 1
        for extent in self.shape:
            count *= extent
        return count * dtypes.BYTE_SIZES[self.data_type.name]

    @property
    def memory_buffer(self) -> MemoryBuffer:
        """Where the bytes are (BYTES: in serialized form)."""
        if self._buffer is None:
            if self._core is not None:
                view = np.frombuffer(self._core, np.uint8)
                self._buffer = MemoryBuffer(
                    view.ctypes.data, self.memory_type, 0, view.nbytes, self._core
                )
            else:
                assert self._array is not None
                array = self._array
                if self.data_type == DataType.BYTES:
                    array = np.frombuffer(dtypes.serialize_bytes(array), np.uint8)
                elif not array.flags.c_contiguous:
                    array = self._array = np.ascontiguousarray(array)
                self._buffer = MemoryBuffer._from_array(array)
        return self._buffer

    @property
    def data_ptr(self) -> int:
        return self.memory_buffer.data_ptr

    @property
    def memory_type(self) -> MemoryType:
        if self._core is not None:
            return _CORE_MEMORY[self._core.memory_type]
        if self._array is not None:
            return MemoryType.CPU
        assert self._buffer is not None
        return MemoryType(self._buffer.memory_type)

    @property
    def memory_type_id(self) -> int:
        if self._core is not None or self._array is not None:
            return 0
        assert self._buffer is not None
        return int(self._buffer.memory_type_id)

    @property
    def size(self) -> int:
        """Size in bytes (BYTES: of the serialized form); over a MemoryBuffer, the
        buffer's size, as in Triton."""
        if self._core is not None:
            return int(self._core.byte_size)
        if self._array is None:
            assert self._buffer is not None
            return int(self._buffer.size)
        if self.data_type == DataType.BYTES:
            return len(dtypes.serialize_bytes(self._array))
        return int(self._array.nbytes)

    def _buffer_bytes(self) -> np.ndarray[Any, Any]:
        """The bytes in use of a tensor over a MemoryBuffer, as uint8 (host only)."""
        assert self._buffer is not None
        nbytes = self._nbytes
        if nbytes is None:
            nbytes = self._fixed_nbytes()
        return host_bytes(self._buffer, nbytes)

    # -- construction -----------------------------------------------------------

    @staticmethod
    def _from_core(core: Any) -> Tensor:
        mem = core.memory_type
        if mem == "GPU":  # outputs are asked for on the host; never expected
            raise UnsupportedError("GPU output tensors are not supported")
        return Tensor(DataType[core.datatype], core.shape, core=core)

    @staticmethod
    def _from_object(value: Any) -> Tensor:
        """Tensor, numpy array, DLPack producer, or (nested) list of values."""
        if isinstance(value, Tensor):
            return value
        if isinstance(value, np.ndarray):
            return Tensor._from_numpy(value)
        if hasattr(value, "__dlpack__"):
            return Tensor.from_dlpack(value)
        if isinstance(value, (list, tuple)):
            return Tensor._from_numpy(np.array(value))
        raise InvalidArgumentError(
            f"input of type {type(value).__name__} is not supported: give a numpy "
            "array, a Tensor, an object with __dlpack__, or a list"
        )

    @staticmethod
    def _from_numpy(array: np.ndarray[Any, Any]) -> Tensor:
        data_type = _data_type_of(array)
        if data_type == DataType.BYTES:
            return Tensor.from_bytes_array(array)
        return Tensor(data_type, array.shape, array=array)

    @staticmethod
    def from_dlpack(obj: Any) -> Tensor:
        """A tensor over a host DLPack producer (a numpy array, a CPU torch
        tensor, ...), without copying."""
        device = getattr(obj, "__dlpack_device__", None)
        if device is not None and device()[0] != dlpack_device(MemoryType.CPU, 0)[0]:
            raise UnsupportedError(
                "only host (CPU) memory is supported by tritonx.api tensors"
            )
        array = np.from_dlpack(obj)
        return Tensor(_data_type_of(array), array.shape, array=array)

    @staticmethod
    def from_string_array(values: Any) -> Tensor:
        """A BYTES tensor from strings (encoded as UTF-8)."""
        array = np.array(values, dtype=np.object_)
        if not array.size:
            return Tensor(DataType.BYTES, array.shape, array=array)
        # A comprehension over .flat: np.vectorize costs ~4 us per call to set up,
        # more than encoding the one or two strings a request usually carries.
        encoded = np.empty(array.shape, dtype=np.object_)
        values_flat: list[Any] = array.ravel().tolist()
        encoded.flat[:] = [
            v.encode() if isinstance(v, str) else bytes(v) for v in values_flat
        ]
        return Tensor(DataType.BYTES, array.shape, array=encoded)

    @staticmethod
    def from_bytes_array(values: Any) -> Tensor:
        """A BYTES tensor from bytes values (str values are encoded as UTF-8)."""
        return Tensor.from_string_array(values)

    # -- reading ----------------------------------------------------------------

    def to_device(self, device: Any) -> Tensor:
        """This tensor in ``device`` memory (a ``DeviceOrMemoryType``: "cpu",
        MemoryType.CPU_PINNED, (MemoryType.GPU, 0), ...). Host memory serves every
        host request (CPU and CPU_PINNED alike), so this is the tensor itself;
        device memory raises UnsupportedError."""
        memory_type, memory_type_id = parse_device_or_memory_type(device)
        if memory_type in HOST_MEMORY and self.memory_type in HOST_MEMORY:
            return self
        if (memory_type, memory_type_id) == (self.memory_type, self.memory_type_id):
            return self
        reason = (
            "tritonx.api moves tensors in host memory only"
            if _native.cuda_usable()
            else "no usable GPU is present and tritonx.api moves tensors in host "
            "memory only"
        )
        raise UnsupportedError(
            f"Conversion from ({memory_type_name(self.memory_type)}, "
            f"{self.memory_type_id}) to ({memory_type_name(memory_type)}, "
            f"{memory_type_id}) not supported: {reason}"
        )

    def to_host(self) -> Tensor:
        """This tensor in host memory: the tensor itself (UnsupportedError for a
        tensor over device memory)."""
        return self.to_device(MemoryType.CPU)

    def to_bytes_array(self) -> np.ndarray[Any, Any]:
        """BYTES: an object array of ``bytes`` with this tensor's shape."""
        if self.data_type != DataType.BYTES:
            raise InvalidArgumentError(
                f"to_bytes_array is only supported for BYTES, not {self.data_type.name}"
            )
        if self._core is not None:
            flat = self._core.as_numpy()
        elif self._array is not None:
            flat = self._array
        else:
            count = int(np.prod(self.shape, dtype=np.int64))
            flat = dtypes.deserialize_bytes(self._buffer_bytes(), count)
        return np.asarray(flat, dtype=np.object_).reshape(self.shape)

    def to_string_array(self) -> np.ndarray[Any, Any]:
        """BYTES: an object array of ``str`` (decoded as UTF-8)."""
        raw = self.to_bytes_array()
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(raw)

    def _numpy(self) -> np.ndarray[Any, Any]:
        """Fixed-size types: a numpy view (BF16 as its uint16 bits)."""
        if self.data_type == DataType.BYTES:
            raise InvalidArgumentError(
                "BYTES tensors do not support DLPack: use to_bytes_array() or "
                "to_string_array()"
            )
        if self._core is not None:
            array: np.ndarray[Any, Any] = self._core.as_numpy()
            return array
        if self._array is not None:
            return self._array
        dtype = dtypes.NUMPY_DTYPES[self.data_type.name]
        return self._buffer_bytes().view(dtype).reshape(self.shape)

    def __dlpack__(self, *, stream: Any = None, **kwargs: Any) -> Any:
        if self._core is not None and self.data_type != DataType.BYTES:
            return self._core.__dlpack__(stream=stream, **kwargs)
        if self.data_type == DataType.BF16:  # numpy cannot say bfloat16
            return bf16_capsule(self._numpy())
        return self._numpy().__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return dlpack_device(self.memory_type, self.memory_type_id)

    # -- into the core ----------------------------------------------------------

    def _core_input(self, name: str) -> tuple[str, str, list[int], Any]:
        """The (name, datatype, shape, data) tuple ``_native.Request`` takes."""
        shape = list(self.shape)
        if self._core is not None:  # an output fed back as an input: its bytes
            return (name, self.data_type.name, shape, self._core.raw())
        if self._array is None:  # over a MemoryBuffer: its bytes, if on the host
            return (name, self.data_type.name, shape, self._buffer_bytes())
        if self.data_type == DataType.BYTES:
            return (name, "BYTES", shape, dtypes.serialize_bytes(self._array))
        array = self._array
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return (name, self.data_type.name, shape, array)
