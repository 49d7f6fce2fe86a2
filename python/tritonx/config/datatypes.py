"""Conversions between config data types (TYPE_FP32) and wire names (FP32)."""

from __future__ import annotations

from tritonx.config._pb import mc

# The wire name is the enum name without TYPE_, except STRING which is BYTES.
_WIRE_BY_ENUM: dict[int, str] = {
    mc.TYPE_BOOL: "BOOL",
    mc.TYPE_UINT8: "UINT8",
    mc.TYPE_UINT16: "UINT16",
    mc.TYPE_UINT32: "UINT32",
    mc.TYPE_UINT64: "UINT64",
    mc.TYPE_INT8: "INT8",
    mc.TYPE_INT16: "INT16",
    mc.TYPE_INT32: "INT32",
    mc.TYPE_INT64: "INT64",
    mc.TYPE_FP16: "FP16",
    mc.TYPE_FP32: "FP32",
    mc.TYPE_FP64: "FP64",
    mc.TYPE_STRING: "BYTES",
    mc.TYPE_BF16: "BF16",
}
_ENUM_BY_WIRE: dict[str, int] = {v: k for k, v in _WIRE_BY_ENUM.items()}


def wire_datatype(data_type: int) -> str:
    """TYPE_FP32 -> "FP32"; TYPE_INVALID (or unknown) -> "INVALID"."""
    return _WIRE_BY_ENUM.get(data_type, "INVALID")


def config_datatype(wire: str) -> int:
    """ "FP32" -> TYPE_FP32; unknown names -> TYPE_INVALID."""
    return _ENUM_BY_WIRE.get(wire, mc.TYPE_INVALID)


def datatype_name(data_type: int) -> str:
    """The config spelling, e.g. "TYPE_FP32" (used in error messages)."""
    return str(mc.DataType.Name(data_type))
