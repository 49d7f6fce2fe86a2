"""``c_python_backend_utils``: the module Triton's stub builds into itself.

Triton's ``triton_python_backend_utils`` takes its classes from that built-in module,
and some model files import it directly (Triton's own QA models read
``c_python_backend_utils.shared_memory.free_memory()``). ``install()`` puts a module
of that name into ``sys.modules`` holding the same classes and functions as
``pb_utils`` (the very same objects), plus ``shared_memory``.

``shared_memory.free_memory()``: Triton reports the free bytes of the stub's
shared-memory pool. A tritonx stub's regions hold only the execute in flight, so
between executes all of a region's first size (``shm-default-byte-size``) is free;
that is what it reports, in both execution modes, for the model calling it.
"""

from __future__ import annotations

import sys
from enum import IntEnum
from types import ModuleType

from tritonx.backends.pb import bls, messages
from tritonx.backends.pb.metrics import MetricFamily

MODULE_NAME = "c_python_backend_utils"

# What the built-in module offers that tritonx has (names as in Triton).
_SHARED_NAMES = (
    "InferenceRequest",
    "InferenceResponse",
    "InferenceResponseSender",
    "InferenceTrace",
    "Logger",
    "Metric",
    "MetricFamily",
    "PreferredMemory",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "TRITONSERVER_MEMORY_CPU",
    "TRITONSERVER_MEMORY_GPU",
    "is_model_ready",
    "load_model",
    "unload_model",
)


class MemoryType(IntEnum):
    """The enum behind pb_utils' TRITONSERVER_MEMORY_* (equal to those values)."""

    TRITONSERVER_MEMORY_GPU = messages.TRITONSERVER_MEMORY_GPU
    TRITONSERVER_MEMORY_CPU = messages.TRITONSERVER_MEMORY_CPU


class MetricKind(IntEnum):
    """The enum behind MetricFamily.COUNTER / GAUGE / HISTOGRAM."""

    COUNTER = MetricFamily.COUNTER
    GAUGE = MetricFamily.GAUGE
    HISTOGRAM = MetricFamily.HISTOGRAM


class SharedMemory:
    """The calling model's shared-memory pool (see the module docstring)."""

    def free_memory(self) -> int:
        link = bls.calling_link()
        if link is None:
            raise RuntimeError(
                "shared_memory.free_memory() is only available to a model's code"
            )
        return int(link.shm_bytes)


def type_text(value: object) -> str:
    """``str(type(value))`` as Triton's stub writes it in its messages: the classes
    it builds in are ``c_python_backend_utils`` ones there (e.g. "<class
    'c_python_backend_utils.InferenceResponse'>"), whatever module tritonx
    defines them in."""
    kind = type(value)
    from tritonx.backends import pb_utils

    if (
        kind.__name__ in _SHARED_NAMES
        and getattr(pb_utils, kind.__name__, None) is kind
    ):
        return f"<class '{MODULE_NAME}.{kind.__name__}'>"
    return str(kind)


def install() -> ModuleType:
    """The module, put into ``sys.modules`` on first call."""
    module = sys.modules.get(MODULE_NAME)
    if module is not None:
        return module
    from tritonx.backends import pb_utils

    module = ModuleType(MODULE_NAME, __doc__)
    for name in _SHARED_NAMES:
        setattr(module, name, getattr(pb_utils, name))
    module.ResponseIterator = bls.ResponseIterator  # type: ignore[attr-defined]
    module.SharedMemory = SharedMemory  # type: ignore[attr-defined]
    module.shared_memory = SharedMemory()  # type: ignore[attr-defined]
    module.MemoryType = MemoryType  # type: ignore[attr-defined]
    module.MetricKind = MetricKind  # type: ignore[attr-defined]
    for kind in MetricKind:
        setattr(module, kind.name, kind)
    sys.modules[MODULE_NAME] = module
    return module
