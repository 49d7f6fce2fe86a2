"""Backends: the python backend (Triton model.py files), ONNX Runtime, and plugins.

Backends are found by name through the ``tritonx.backends`` entry-point group; see
``registry.get_backend`` and docs/backends.md.
"""

from __future__ import annotations

from tritonx.backends.base import (
    Backend,
    BackendModel,
    Instance,
    InstanceContext,
    ModelContext,
    OutputValue,
)
from tritonx.backends.registry import available_backends, get_backend

__all__ = [
    "Backend",
    "BackendModel",
    "Instance",
    "InstanceContext",
    "ModelContext",
    "OutputValue",
    "available_backends",
    "get_backend",
]
