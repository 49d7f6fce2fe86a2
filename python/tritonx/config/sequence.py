"""The sequence batcher's settings: Triton's control-input and state checks (its
messages) and their conversion into the core's ``SequenceBatching``."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tritonx.config._pb import ModelConfig, mc
from tritonx.config.datatypes import wire_datatype
from tritonx.errors import InvalidArgumentError

if TYPE_CHECKING:
    from tritonx import _native

_Control = mc.ModelSequenceBatching.Control
_BOOLEAN_KINDS = (
    _Control.CONTROL_SEQUENCE_START,
    _Control.CONTROL_SEQUENCE_END,
    _Control.CONTROL_SEQUENCE_READY,
)
_CORRID_TYPES = (
    mc.TYPE_UINT64,
    mc.TYPE_INT64,
    mc.TYPE_UINT32,
    mc.TYPE_INT32,
    mc.TYPE_STRING,
)


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


def _controls_of_kind(
    config: ModelConfig, kind: int
) -> list[tuple[str, mc.ModelSequenceBatching.Control]]:
    """Triton's per-kind walk: names present and unique, the kind at most once."""
    name = config.name
    kind_name = _Control.Kind.Name(kind)
    seen_tensors: set[str] = set()
    found: list[tuple[str, mc.ModelSequenceBatching.Control]] = []
    for control_input in config.sequence_batching.control_input:
        if not control_input.name:
            raise _bad(f"sequence batching control tensor must have a name for {name}")
        if control_input.name in seen_tensors:
            raise _bad(
                f"sequence batching control tensor '{control_input.name}' is "
                f"specified for multiple control kinds for {name}"
            )
        seen_tensors.add(control_input.name)
        for control in control_input.control:
            if control.kind != kind:
                continue
            if found:
                raise _bad(
                    f"sequence batching specifies multiple {kind_name} tensors "
                    f"for {name}"
                )
            found.append((control_input.name, control))
    return found


def validate_sequence_controls(config: ModelConfig) -> None:
    """Triton's checks of the control inputs (raised at load time)."""
    name = config.name
    for kind in _BOOLEAN_KINDS:
        kind_name = _Control.Kind.Name(kind)
        for _, control in _controls_of_kind(config, kind):
            counts = {
                "int32_false_true": len(control.int32_false_true),
                "fp32_false_true": len(control.fp32_false_true),
                "bool_false_true": len(control.bool_false_true),
            }
            given = [k for k, n in counts.items() if n > 0]
            if not given:
                raise _bad(
                    "sequence batching must specify either 'int32_false_true', "
                    f"'fp32_false_true' or 'bool_false_true' for {kind_name} for "
                    f"{name}"
                )
            if len(given) > 1:
                raise _bad(
                    "sequence batching specifies more than one from "
                    "'int32_false_true', 'fp32_false_true' and 'bool_false_true' "
                    f"for {kind_name} for {name}"
                )
            if counts[given[0]] != 2:
                raise _bad(
                    f"sequence batching control '{given[0]}' must have exactly 2 "
                    f"entries for {kind_name} for {name}"
                )
    for _, control in _controls_of_kind(config, _Control.CONTROL_SEQUENCE_CORRID):
        if (
            control.int32_false_true
            or control.fp32_false_true
            or control.bool_false_true
        ):
            raise _bad(
                "sequence batching must not specify either 'int32_false_true', "
                "'fp32_false_true' or 'bool_false_true' for "
                f"CONTROL_SEQUENCE_CORRID for {name}"
            )
        if control.data_type not in _CORRID_TYPES:
            raise _bad(
                "unexpected data type for control CONTROL_SEQUENCE_CORRID for "
                f"{name}. Allowed data types are TYPE_UINT64, TYPE_INT64, "
                "TYPE_UINT32, TYPE_INT32 and TYPE_STRING"
            )
    # Triton 2.51 loads state blocks without further checks (a state named like a
    # model input or output, or without input_name, loads); so does tritonx.


def control_tensors(config: ModelConfig) -> list[tuple[str, int]]:
    """(tensor name, config data type) of each configured control, kinds in the
    order START, END, READY, CORRID (the order backends check them in)."""
    out = []
    for kind in (*_BOOLEAN_KINDS, _Control.CONTROL_SEQUENCE_CORRID):
        for name, control in _controls_of_kind(config, kind):
            if kind == _Control.CONTROL_SEQUENCE_CORRID:
                out.append((name, int(control.data_type)))
            else:
                datatype = _value_bytes(control)[0]
                out.append((name, int(mc.DataType.Value(f"TYPE_{datatype}"))))
    return out


def _value_bytes(control: mc.ModelSequenceBatching.Control) -> tuple[str, bytes, bytes]:
    if control.int32_false_true:
        off, on = control.int32_false_true
        return "INT32", struct.pack("<i", off), struct.pack("<i", on)
    if control.fp32_false_true:
        off_f, on_f = control.fp32_false_true
        return "FP32", struct.pack("<f", off_f), struct.pack("<f", on_f)
    off_b, on_b = control.bool_false_true
    return "BOOL", bytes([int(off_b)]), bytes([int(on_b)])


def _initial_state(
    state: mc.ModelSequenceBatching.State, model_dir: Path | None, model: str
) -> tuple[list[int] | None, bytes | None]:
    if not state.initial_state:
        return None, None
    init = state.initial_state[0]
    dims = [int(d) for d in init.dims]
    datatype = wire_datatype(state.data_type)
    count = int(np.prod(dims)) if dims else 1
    if init.WhichOneof("state_data") == "data_file":
        if model_dir is None:
            raise _bad(f"initial state data file '{init.data_file}' needs a model dir")
        path = model_dir / "initial_state" / init.data_file
        try:
            data = path.read_bytes()
        except OSError as err:
            raise _bad(
                f"failed to read initial state file '{path}' for {model}: {err}"
            ) from err
        return dims, data
    element = 4 if datatype == "BYTES" else np.dtype(_NUMPY[datatype]).itemsize
    return dims, bytes(element * count)


_NUMPY = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "BF16": "uint16",
    "FP32": "float32",
    "FP64": "float64",
}


def sequence_batching_from_config(
    config: ModelConfig, model_dir: Path | None
) -> _native.SequenceBatching:
    """The core's sequence batcher settings for a (validated) config."""
    from tritonx import _native

    validate_sequence_controls(config)
    sb = config.sequence_batching
    controls: list[tuple[str, str, str, bytes, bytes]] = []
    known_kinds = set(_Control.Kind.values())
    for control_input in sb.control_input:
        for control in control_input.control:
            if control.kind not in known_kinds:
                continue  # a kind Triton does not know: it never looks for it
            kind = _Control.Kind.Name(control.kind)
            if control.kind == _Control.CONTROL_SEQUENCE_CORRID:
                controls.append(
                    (
                        kind,
                        control_input.name,
                        wire_datatype(control.data_type),
                        b"",
                        b"",
                    )
                )
            else:
                datatype, off, on = _value_bytes(control)
                controls.append((kind, control_input.name, datatype, off, on))
    states = []
    for state in sb.state:
        shape, data = _initial_state(state, model_dir, config.name)
        states.append(
            (
                state.input_name,
                state.output_name,
                wire_datatype(state.data_type),
                [int(d) for d in state.dims],
                shape,
                data,
            )
        )
    oldest = sb.HasField("oldest")
    return _native.SequenceBatching(
        strategy="oldest" if oldest else "direct",
        max_sequence_idle_us=sb.max_sequence_idle_microseconds,
        max_queue_delay_us=(
            sb.oldest.max_queue_delay_microseconds
            if oldest
            else sb.direct.max_queue_delay_microseconds
        ),
        minimum_slot_utilization=sb.direct.minimum_slot_utilization,
        max_candidate_sequences=sb.oldest.max_candidate_sequences,
        preferred_batch_sizes=list(sb.oldest.preferred_batch_size),
        preserve_ordering=sb.oldest.preserve_ordering,
        controls=controls,
        states=states,
        iterative_sequence=sb.iterative_sequence,
    )
