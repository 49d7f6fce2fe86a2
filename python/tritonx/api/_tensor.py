"""``Tensor``, ``DataType`` and ``MemoryType``: host tensors in and out of the core.

A Tensor holds either a numpy array (made by the caller) or a core tensor (an output
the core produced, read without copying). Fixed-size types go through DLPack in both
directions; BYTES tensors are object arrays of ``bytes`` (``to_bytes_array``,
``to_string_array``) since DLPack has no such type, as in Triton.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import numpy as np

from tritonx import dtypes
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


class MemoryType(enum.IntEnum):
    """Triton's ``TRITONSERVER_MemoryType`` members; this API hands out CPU only."""

    CPU = 0
    CPU_PINNED = 1
    GPU = 2


_DLPACK_CPU = 1  # kDLCPU


def _data_type_of(array: np.ndarray[Any, Any]) -> DataType:
    if array.dtype.kind in "OSU":
        return DataType.BYTES
    for name, dtype in dtypes.NUMPY_DTYPES.items():
        if name != "BF16" and dtype == array.dtype:
            return DataType[name]
    raise InvalidArgumentError(f"unsupported numpy dtype {array.dtype}")


class Tensor:
    """A host tensor: ``data_type``, ``shape``, ``memory_type`` (always CPU)."""

    __slots__ = ("_array", "_core", "data_type", "shape")

    def __init__(
        self,
        data_type: DataType,
        shape: Sequence[int],
        *,
        array: np.ndarray[Any, Any] | None = None,
        core: Any = None,
    ) -> None:
        self.data_type = data_type
        self.shape = tuple(int(d) for d in shape)
        self._array = array
        self._core = core  # a tritonx._native.Tensor (an output)

    def __repr__(self) -> str:
        return f"Tensor(data_type={self.data_type.name}, shape={list(self.shape)})"

    @property
    def memory_type(self) -> MemoryType:
        return MemoryType.CPU

    @property
    def memory_type_id(self) -> int:
        return 0

    @property
    def size(self) -> int:
        """Size in bytes (BYTES: of the serialized form)."""
        if self._core is not None:
            return int(self._core.byte_size)
        assert self._array is not None
        if self.data_type == DataType.BYTES:
            return len(dtypes.serialize_bytes(self._array))
        return int(self._array.nbytes)

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
        if device is not None and device()[0] != _DLPACK_CPU:
            raise UnsupportedError(
                "only host (CPU) memory is supported by tritonx.api tensors"
            )
        array = np.from_dlpack(obj)
        return Tensor(_data_type_of(array), array.shape, array=array)

    @staticmethod
    def from_string_array(values: Any) -> Tensor:
        """A BYTES tensor from strings (encoded as UTF-8)."""
        array = np.array(values, dtype=np.object_)
        encoded = (
            np.vectorize(
                lambda v: v.encode() if isinstance(v, str) else bytes(v),
                otypes=[object],
            )(array)
            if array.size
            else array
        )
        return Tensor(DataType.BYTES, array.shape, array=encoded)

    @staticmethod
    def from_bytes_array(values: Any) -> Tensor:
        """A BYTES tensor from bytes values (str values are encoded as UTF-8)."""
        return Tensor.from_string_array(values)

    # -- reading ----------------------------------------------------------------

    def to_host(self) -> Tensor:
        """This tensor: every tensor of this API lives in host memory."""
        return self

    def to_bytes_array(self) -> np.ndarray[Any, Any]:
        """BYTES: an object array of ``bytes`` with this tensor's shape."""
        if self.data_type != DataType.BYTES:
            raise InvalidArgumentError(
                f"to_bytes_array is only supported for BYTES, not {self.data_type.name}"
            )
        if self._core is not None:
            flat = self._core.as_numpy()
        else:
            assert self._array is not None
            flat = self._array
        return np.asarray(flat, dtype=np.object_).reshape(self.shape)

    def to_string_array(self) -> np.ndarray[Any, Any]:
        """BYTES: an object array of ``str`` (decoded as UTF-8)."""
        raw = self.to_bytes_array()
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(raw)

    def _numpy(self) -> np.ndarray[Any, Any]:
        if self.data_type == DataType.BYTES:
            raise InvalidArgumentError(
                "BYTES tensors do not support DLPack: use to_bytes_array() or "
                "to_string_array()"
            )
        if self._core is not None:
            array: np.ndarray[Any, Any] = self._core.as_numpy()
            return array
        assert self._array is not None
        return self._array

    def __dlpack__(self, *, stream: Any = None, **kwargs: Any) -> Any:
        if self._core is not None and self.data_type != DataType.BYTES:
            return self._core.__dlpack__(stream=stream, **kwargs)
        return self._numpy().__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (_DLPACK_CPU, 0)

    # -- into the core ----------------------------------------------------------

    def _core_input(self, name: str) -> tuple[str, str, list[int], Any]:
        """The (name, datatype, shape, data) tuple ``_native.Request`` takes."""
        shape = list(self.shape)
        if self._core is not None:  # an output fed back as an input: its bytes
            return (name, self.data_type.name, shape, self._core.raw())
        assert self._array is not None
        if self.data_type == DataType.BYTES:
            return (name, "BYTES", shape, dtypes.serialize_bytes(self._array))
        array = self._array
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return (name, self.data_type.name, shape, array)
