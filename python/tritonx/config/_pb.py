"""The generated ModelConfig protobuf module, imported from one place.

The generated code ships without type stubs, so for the type checker the message
classes are plain ``Any`` aliases; at run time they are the real classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tritonx._proto import model_config_pb2

mc: Any = model_config_pb2

if TYPE_CHECKING:
    ModelConfig = Any
    ModelInput = Any
    ModelOutput = Any
    ModelQueuePolicy = Any
    ModelInstanceGroup = Any
    ModelMetrics = Any
else:
    ModelConfig = model_config_pb2.ModelConfig
    ModelInput = model_config_pb2.ModelInput
    ModelOutput = model_config_pb2.ModelOutput
    ModelQueuePolicy = model_config_pb2.ModelQueuePolicy
    ModelInstanceGroup = model_config_pb2.ModelInstanceGroup
    ModelMetrics = model_config_pb2.ModelMetrics

__all__ = [
    "ModelConfig",
    "ModelInput",
    "ModelInstanceGroup",
    "ModelMetrics",
    "ModelOutput",
    "ModelQueuePolicy",
    "mc",
]
