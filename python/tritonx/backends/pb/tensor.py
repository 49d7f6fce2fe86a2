"""pb_utils.Tensor: a named array, either built by the model or over a core input.

Input tensors wrap the core's ``Tensor`` and call ``as_numpy()`` lazily, so a model
that never reads an input never converts it; fixed-size types are zero-copy views.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tritonx.backends.pb.dlpack_bf16 import bf16_bits, bf16_capsule
from tritonx.backends.pb.dtypes import WIRE_TO_ENUM, wire_datatype_of
from tritonx.backends.pb.errors import TritonModelException

_KDL_CPU = 1
_KDL_CUDA_HOST = 3  # pinned host memory: readable from the CPU


class _CapsuleHolder:
    """Lets ``np.from_dlpack`` consume a bare DLPack capsule (to_dlpack output)."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, **_: Any) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (_KDL_CPU, 0)


class Tensor:
    """A named tensor. ``Tensor(name, numpy_array)`` as in Triton's python backend."""

    __slots__ = ("_array", "_core", "_datatype", "_device", "_name", "_producer")

    def __init__(self, name: str, data: Any) -> None:
        # No conversion: the core serializes bytes/str/object arrays and makes
        # non-contiguous arrays contiguous itself, so the model's array is kept as is.
        array = data if isinstance(data, np.ndarray) else np.asarray(data)
        self._name = str(name)
        self._datatype = wire_datatype_of(array)
        self._array: np.ndarray | None = array
        self._core: Any = None
        self._producer: Any = None
        self._device = (_KDL_CPU, 0)

    @classmethod
    def _from_core(cls, core_tensor: Any) -> Tensor:
        self = cls.__new__(cls)
        self._name = core_tensor.name
        self._datatype = core_tensor.datatype
        self._array = None
        self._core = core_tensor
        self._producer = None
        self._device = (_KDL_CPU, 0)
        return self

    @classmethod
    def _with_datatype(cls, name: str, array: np.ndarray, datatype: str) -> Tensor:
        """A tensor whose wire datatype differs from the array's (BF16 bits)."""
        self = cls(name, array)
        self._datatype = datatype
        return self

    # -- Triton's accessors -------------------------------------------------------
    def name(self) -> str:
        return self._name

    def triton_dtype(self) -> int:
        return WIRE_TO_ENUM[self._datatype]

    def datatype(self) -> str:
        """Wire datatype name (tritonx extension)."""
        return self._datatype

    def shape(self) -> list[int]:
        if self._core is not None:
            return list(self._core.shape)
        if self._array is not None:
            return list(self._array.shape)
        return list(self._producer.shape)

    def is_cpu(self) -> bool:
        return self._device[0] in (_KDL_CPU, _KDL_CUDA_HOST)

    def as_numpy(self) -> np.ndarray:
        if self._array is None:
            if self._core is None:
                raise TritonModelException(
                    "Tensor is stored in GPU and cannot be converted to NumPy."
                )
            self._array = self._core.as_numpy()
        return self._array

    # -- DLPack ---------------------------------------------------------------------
    def to_dlpack(self) -> Any:
        return self.__dlpack__()

    def __dlpack__(self, *, stream: Any = None, **kwargs: Any) -> Any:
        if self._producer is not None:
            return self._producer.__dlpack__(stream=stream, **kwargs)
        if self._datatype == "BYTES":
            raise TritonModelException("DLPack does not support BYTES tensors.")
        if self._datatype == "BF16":
            # numpy cannot export bfloat16: a capsule of that dtype over the bits.
            return bf16_capsule(self.as_numpy())
        array = self.as_numpy()
        if not array.flags.writeable:
            # Legacy DLPack capsules cannot say "read-only"; numpy refuses to export.
            try:
                return array.__dlpack__(**kwargs)
            except BufferError:
                array = array.copy()
        return array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._device

    @staticmethod
    def from_dlpack(name: str, dlpack_tensor: Any) -> Tensor:
        """Wrap any DLPack producer (or a capsule from ``to_dlpack``) without copying
        (host bfloat16 capsules are copied: numpy cannot wrap that dtype)."""
        producer = dlpack_tensor
        if isinstance(producer, Tensor) and producer._datatype == "BF16":
            if producer._producer is None:
                return Tensor._with_datatype(name, producer.as_numpy(), "BF16")
        elif not hasattr(producer, "__dlpack__"):
            bits = bf16_bits(producer)
            if bits is not None:
                return Tensor._with_datatype(name, bits, "BF16")
            producer = _from_capsule(producer)
        device = tuple(producer.__dlpack_device__())
        if device[0] in (_KDL_CPU, _KDL_CUDA_HOST):
            if "bfloat16" in str(getattr(producer, "dtype", "")):
                bits = bf16_bits(producer.__dlpack__())
                if bits is not None:
                    return Tensor._with_datatype(name, bits, "BF16")
            return Tensor(name, np.from_dlpack(producer))
        # Device memory: keep the producer; outputs are copied to host on return.
        self = Tensor.__new__(Tensor)
        self._name = str(name)
        self._array = None
        self._core = None
        self._producer = producer
        self._device = (int(device[0]), int(device[1]))
        self._datatype = _datatype_of_producer(producer)
        return self

    # -- for the backend ------------------------------------------------------------
    def _output_value(self) -> np.ndarray | tuple[str, np.ndarray]:
        """What the core receives: an array, or (datatype, array) when they differ."""
        if self._array is None and self._core is None:
            self._array = _to_host(self._producer)
        array = self.as_numpy()
        if self._datatype == "BF16":
            return ("BF16", array)
        return array

    def __repr__(self) -> str:
        return f"Tensor(name={self._name!r}, datatype={self._datatype}, shape={self.shape()})"


def _from_capsule(capsule: Any) -> Any:
    """A bare capsule does not say where its memory is; torch, when installed,
    reads that from the capsule (GPU capsules from ``torch.utils.dlpack`` or CuPy),
    else it is taken to be host memory."""
    try:
        from torch.utils.dlpack import from_dlpack
    except ImportError:
        return _CapsuleHolder(capsule)
    return from_dlpack(capsule)


def _datatype_of_producer(producer: Any) -> str:
    dtype = str(getattr(producer, "dtype", ""))
    if "bfloat16" in dtype:
        return "BF16"
    name = dtype.rsplit(".", 1)[-1]  # "torch.float32" -> "float32"
    try:
        return wire_datatype_of(np.empty(0, dtype=name))
    except TypeError as exc:
        raise TritonModelException(f"unsupported DLPack dtype '{dtype}'") from exc


def _to_host(producer: Any) -> np.ndarray:
    """Copy a device tensor to host memory using the producer's own API."""
    from tritonx.dlpack_host import to_host

    try:
        return to_host(producer)[1]
    except TypeError as exc:
        raise TritonModelException(str(exc)) from None
