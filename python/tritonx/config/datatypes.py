"""Conversions between config data types (TYPE_FP32) and wire names (FP32).

model_config.proto numbers its DataType enum as the core does (TYPE_STRING is the wire's
BYTES), so both directions come from the core's table (``tritonx.dtypes``).
"""

from __future__ import annotations

from tritonx.config._pb import mc
from tritonx.dtypes import ENUM_TO_WIRE, WIRE_TO_ENUM


def wire_datatype(data_type: int) -> str:
    """TYPE_FP32 -> "FP32"; TYPE_INVALID (or unknown) -> "INVALID"."""
    return ENUM_TO_WIRE.get(data_type, "INVALID")


def config_datatype(wire: str) -> int:
    """ "FP32" -> TYPE_FP32; unknown names -> TYPE_INVALID."""
    return WIRE_TO_ENUM.get(wire, mc.TYPE_INVALID)


def datatype_name(data_type: int) -> str:
    """The config spelling, e.g. "TYPE_FP32" (used in error messages)."""
    return str(mc.DataType.Name(data_type))
