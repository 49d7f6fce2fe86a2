"""Model repositories and the ModelManager that loads their models."""

from __future__ import annotations

from tritonx.repository.model_manager import ModelManager, failure_reason
from tritonx.repository.records import (
    LOADING,
    READY,
    UNAVAILABLE,
    UNLOADING,
    LoadedModel,
    ManagerOptions,
)

__all__ = [
    "LOADING",
    "READY",
    "UNAVAILABLE",
    "UNLOADING",
    "LoadedModel",
    "ManagerOptions",
    "ModelManager",
    "failure_reason",
]
