"""The generated ModelConfig protobuf module, imported from one place."""

from __future__ import annotations

from tritonx._proto import model_config_pb2 as mc

ModelConfig = mc.ModelConfig

__all__ = ["ModelConfig", "mc"]
