"""An in-process Python API for tritonx, modelled on Triton's ``tritonserver``
package: ``Server(model_repository=...).start()``, ``server.model(name).infer(...)``.

See docs/api.md for what it supports and how it differs from Triton's.
"""

from __future__ import annotations

from tritonx.api._allocators import MemoryAllocator, default_memory_allocators
from tritonx.api._memory import DLDeviceType, MemoryBuffer, MemoryType
from tritonx.api._metrics import Metric, MetricFamily, MetricKind
from tritonx.api._model import Model, ModelBatchFlag, ModelTxnPropertyFlag
from tritonx.api._request import InferenceRequest
from tritonx.api._response import (
    AsyncResponseIterator,
    InferenceResponse,
    ResponseIterator,
)
from tritonx.api._server import (
    InstanceGroupKind,
    LogFormat,
    ModelControlMode,
    ModelDictionary,
    ModelLoadDeviceLimit,
    Options,
    RateLimiterResource,
    RateLimitMode,
    Server,
)
from tritonx.api._tensor import DataType, Tensor
from tritonx.errors import (
    AlreadyExistsError,
    CancelledError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    TritonXError,
    UnavailableError,
    UnknownError,
    UnsupportedError,
)

# Triton's base class name for these errors.
TritonError = TritonXError

__all__ = [
    "AlreadyExistsError",
    "AsyncResponseIterator",
    "CancelledError",
    "DLDeviceType",
    "DataType",
    "InferenceRequest",
    "InferenceResponse",
    "InstanceGroupKind",
    "InternalError",
    "InvalidArgumentError",
    "LogFormat",
    "MemoryAllocator",
    "MemoryBuffer",
    "MemoryType",
    "Metric",
    "MetricFamily",
    "MetricKind",
    "Model",
    "ModelBatchFlag",
    "ModelControlMode",
    "ModelDictionary",
    "ModelLoadDeviceLimit",
    "ModelTxnPropertyFlag",
    "NotFoundError",
    "Options",
    "RateLimitMode",
    "RateLimiterResource",
    "ResponseIterator",
    "Server",
    "Tensor",
    "TritonError",
    "TritonXError",
    "UnavailableError",
    "UnknownError",
    "UnsupportedError",
    "default_memory_allocators",
]
