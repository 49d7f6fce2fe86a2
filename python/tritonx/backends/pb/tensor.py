"""pb_utils.Tensor: a named array, either built by the model or over a core tensor.

Input tensors wrap the core's ``Tensor`` and call ``as_numpy()`` lazily, so a model
that never reads an input never converts it; fixed-size types are zero-copy views.
DLPack tensors (``from_dlpack``) become core tensors too, without a copy and
wherever they live: a GPU tensor stays on its device (``is_cpu()`` false) until a
consumer needs host bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tritonx import _native
from tritonx.backends.pb import binding_args
from tritonx.backends.pb.dlpack_bf16 import bf16_bits, bf16_capsule
from tritonx.backends.pb.dtypes import WIRE_TO_ENUM, wire_datatype_of
from tritonx.backends.pb.errors import TritonModelException
from tritonx.errors import TritonXError

_KDL_CPU = 1


def _is_core(value: Any) -> bool:
    return isinstance(value, _native.Tensor)


def _aliased(core: Any) -> bool:
    return bool(getattr(core, "aliased", False))


class Tensor:
    """A named tensor: ``Tensor(name, numpy_array)`` as in Triton's python backend.
    Like Triton's, the constructor takes a ``numpy.ndarray`` and nothing else (no
    list, scalar or None); DLPack tensors (torch, CuPy) go through ``from_dlpack``."""

    __slots__ = ("_array", "_core", "_datatype", "_name")

    def __init__(self, name: str, data: np.ndarray, /) -> None:
        # Positional only: the binding names its arguments arg0 and arg1.
        # No conversion: the core serializes bytes/str/object arrays and makes
        # non-contiguous arrays contiguous itself, so the model's array is kept as is.
        try:
            self._name = binding_args.std_string(name)
            if not isinstance(data, np.ndarray):
                raise binding_args.Refused
        except binding_args.Refused:
            raise binding_args.incompatible(
                "__init__",
                "c_python_backend_utils.Tensor(arg0: str, arg1: numpy.ndarray)",
                [repr(name), repr(data)],
                constructor=True,
            ) from None
        _check_name(self._name)
        self._core: Any = None
        self._datatype = wire_datatype_of(data)
        self._array: np.ndarray | None = data

    @classmethod
    def _from_core(cls, core_tensor: Any) -> Tensor:
        self = cls.__new__(cls)
        self._name = core_tensor.name
        self._datatype = core_tensor.datatype
        self._array = None
        self._core = core_tensor
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
        if self._array is not None:
            return list(self._array.shape)
        return list(self._core.shape)

    def is_cpu(self) -> bool:
        return getattr(self._core, "memory_type", "CPU") != "GPU"

    def as_numpy(self) -> np.ndarray:
        if self._array is None:
            if not self.is_cpu():
                raise TritonModelException(
                    "Tensor is stored in GPU and cannot be converted to NumPy."
                )
            # Bytes others read too (shared memory, an ensemble tensor, a BLS
            # caller's array): the model gets its own copy, as in Triton.
            core = self._core
            self._array = (
                core.as_numpy(copy=True) if _aliased(core) else core.as_numpy()
            )
        return self._array

    # -- DLPack ---------------------------------------------------------------------
    def to_dlpack(self) -> Any:
        return self.__dlpack__()

    def __dlpack__(self, *, stream: Any = None, **kwargs: Any) -> Any:
        if self._datatype == "BYTES":
            raise TritonModelException(
                "DLPack does not have support for string tensors."
            )
        if _is_core(self._core):
            # The core's own export: no copy, BF16 as bfloat16, GPU memory as is;
            # host bytes others read too are copied (see as_numpy).
            if _aliased(self._core) and self.is_cpu() and kwargs.get("copy") is None:
                kwargs["copy"] = True
            return self._core.__dlpack__(stream=stream, **kwargs)
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
        if _is_core(self._core):
            device = self._core.__dlpack_device__()
            return (int(device[0]), int(device[1]))
        return (_KDL_CPU, 0)

    @staticmethod
    def from_dlpack(name: str, dlpack_tensor: Any) -> Tensor:
        """Wrap any DLPack producer (or a capsule from ``to_dlpack``) without copying,
        on the CPU or a GPU; C-contiguous tensors only, as in Triton (host bfloat16
        capsules are copied: numpy cannot hold that dtype)."""
        try:
            name = binding_args.std_string(name)
        except binding_args.Refused:
            raise binding_args.incompatible(
                "from_dlpack",
                "(self: str, arg0: object) -> c_python_backend_utils.Tensor",
                [repr(name), repr(dlpack_tensor)],
                constructor=False,
            ) from None
        _check_name(name)
        producer = dlpack_tensor
        if type(producer).__name__ != "PyCapsule" and not (
            hasattr(producer, "__dlpack__") and hasattr(producer, "__dlpack_device__")
        ):
            # Triton's words, the run of spaces included.
            raise TritonModelException(
                "Provided tensor is not supported. Tensor must be a DLPack capsule "
                "        or have `__dlpack__` and `__dlpack_device__` attributes"
            )
        if isinstance(producer, Tensor):
            if producer._core is None and producer._datatype == "BF16":
                return Tensor._with_datatype(name, producer.as_numpy(), "BF16")
        elif not hasattr(producer, "__dlpack__"):
            bits = bf16_bits(producer)
            if bits is not None:
                return Tensor._with_datatype(name, bits, "BF16")
        core = _dlpack_core(name, producer)
        return Tensor._from_core(core)

    # -- for the backend ------------------------------------------------------------
    def _output_value(self) -> Any:
        """What the core receives: the core tensor as it is (no copy, any device),
        an array, or (datatype, array) when they differ."""
        if _is_core(self._core):
            return self._core
        array = self.as_numpy()
        if self._datatype == "BF16":
            return ("BF16", array)
        return array

    def __repr__(self) -> str:
        return f"Tensor(name={self._name!r}, datatype={self._datatype}, shape={self.shape()})"


def _check_name(name: str) -> None:
    if not name:
        raise TritonModelException("Tensor name cannot be an empty string.")


def _dlpack_core(name: str, producer: Any) -> Any:
    """The core tensor over a DLPack producer or capsule (zero copy); the core's
    refusals become TritonModelException."""
    try:
        return _native.Tensor.from_dlpack(name, producer)
    except TritonXError as exc:
        if "not contiguous" in str(exc):  # Triton's words for this one
            raise TritonModelException(
                "DLPack tensor is not contiguous. Only contiguous DLPack tensors that "
                "are stored in C-Order are supported."
            ) from None
        raise TritonModelException(str(exc)) from None
