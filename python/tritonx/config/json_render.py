"""Triton's JSON rendering of a ModelConfig (what GET /v2/models/X/config returns).

Triton prints the proto with field names as declared and all no-presence fields,
then turns a fixed list of 64-bit fields back from JSON strings into numbers. Only
that list is fixed: other 64-bit fields (secondary_devices.device_id, CUDA graph
shapes, and sequence_batching.state.initial_state.dims, which Triton's fix-up looks
for in the wrong place) stay strings, and map keys stay strings.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import descriptor, json_format

from tritonx.config._pb import ModelConfig


def _ints(obj: dict[str, Any], key: str) -> None:
    if key in obj:
        obj[key] = [int(v) for v in obj[key]]


def _int(obj: dict[str, Any], key: str) -> None:
    if key in obj:
        obj[key] = int(obj[key])


_FLOAT_TYPES = (
    descriptor.FieldDescriptor.TYPE_FLOAT,
    descriptor.FieldDescriptor.TYPE_DOUBLE,
)


def _float(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value


def _declaration_order(
    doc: dict[str, Any], desc: descriptor.Descriptor
) -> dict[str, Any]:
    """Keys in the order Triton's C++ printer emits them: declaration order,
    except that set scalar oneof members come last (in field-number order).
    Integral floats print as integers there ("0", not "0.0")."""
    out: dict[str, Any] = {}
    scalar_oneof = [f for f in desc.fields if f.containing_oneof and not f.message_type]
    fields = [f for f in desc.fields if f not in scalar_oneof]
    fields += sorted(scalar_oneof, key=lambda f: f.number)
    for field in fields:
        if field.name not in doc:
            continue
        value = doc[field.name]
        if field.type in _FLOAT_TYPES:
            value = (
                [_float(v) for v in value] if isinstance(value, list) else _float(value)
            )
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            value_desc = sub.fields_by_name["value"].message_type
            if value_desc is not None:
                value = {k: _declaration_order(v, value_desc) for k, v in value.items()}
        elif sub is not None:
            if isinstance(value, list):
                value = [_declaration_order(v, sub) for v in value]
            else:
                value = _declaration_order(value, sub)
        out[field.name] = value
    return out


def config_to_json_dict(config: ModelConfig) -> dict[str, Any]:
    """The config as Triton's JSON object (empty config -> {})."""
    if config.ByteSize() == 0:
        return {}
    doc: dict[str, Any] = json_format.MessageToDict(
        config,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
    )
    for key in ("input", "output"):
        for io in doc.get(key, []):
            _ints(io, "dims")
            if "reshape" in io:
                _ints(io["reshape"], "shape")
    specific = doc.get("version_policy", {}).get("specific")
    if specific is not None:
        _ints(specific, "versions")
    db = doc.get("dynamic_batching")
    if db is not None:
        for key in (
            "max_queue_delay_microseconds",
            "priority_levels",
            "default_priority_level",
        ):
            _int(db, key)
        if "default_queue_policy" in db:
            _int(db["default_queue_policy"], "default_timeout_microseconds")
        for policy in db.get("priority_queue_policy", {}).values():
            _int(policy, "default_timeout_microseconds")
    sb = doc.get("sequence_batching")
    if sb is not None:
        _int(sb, "max_sequence_idle_microseconds")
        for key in ("oldest", "direct"):
            if key in sb:
                _int(sb[key], "max_queue_delay_microseconds")
        for state in sb.get("state", []):
            _ints(state, "dims")
    ensemble = doc.get("ensemble_scheduling")
    if ensemble is not None:
        for step in ensemble.get("step", []):
            _int(step, "model_version")
        # A newer field than Triton 2.51's config: shown only when set.
        if not ensemble.get("max_inflight_requests"):
            ensemble.pop("max_inflight_requests", None)
    for warmup in doc.get("model_warmup", []):
        for spec in warmup.get("inputs", {}).values():
            _ints(spec, "dims")
    return _declaration_order(doc, ModelConfig.DESCRIPTOR)


def config_to_json(config: ModelConfig) -> str:
    """Compact JSON text like Triton's (no spaces); empty config -> ""."""
    doc = config_to_json_dict(config)
    if not doc:
        return ""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
