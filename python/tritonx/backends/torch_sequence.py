"""The sequence batcher's tensors for the pytorch backend: control inputs and
implicit state.

The sequence batcher adds its control tensors (``control_input``) and each state's
``input_name`` to a request's inputs, and keeps each state's ``output_name`` from
every run, none of them listed in the config's ``input`` / ``output``. Triton's
libtorch backend (r24.10) places them by the ``<name>__<index>`` convention only,
and counts them among the inputs a module must take:

- a control's name must be ``<name>__<index>``; a CORRID control's data type must
  be one torch carries;
- a model with state must name every config input and output, and each state's
  ``input_name`` and ``output_name``, by that convention (not by forward argument
  names, not in config order);
- the state output is computed on every run, whether or not a request asked for
  an output of that name.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonx.backends import torch_io
from tritonx.config._pb import ModelConfig
from tritonx.config.datatypes import datatype_name
from tritonx.config.sequence import control_tensors
from tritonx.errors import InternalError, InvalidArgumentError


@dataclass(frozen=True)
class SequenceTensor:
    name: str
    position: int  # among the module's inputs (or returned values)
    data_type: int  # config data type


@dataclass(frozen=True)
class SequenceTensors:
    """What a sequence model's module takes and returns beyond the config's I/O."""

    inputs: tuple[SequenceTensor, ...] = ()  # controls, then state inputs
    state_outputs: tuple[SequenceTensor, ...] = ()


def _indexed(name: str) -> int | None:
    """The index of ``<name>__<digits>``; None otherwise."""
    try:
        return torch_io.index_of(name)
    except ValueError:
        return None


def control_inputs(config: ModelConfig) -> list[SequenceTensor]:
    """The control tensors a module takes (kinds in Triton's order), checked as
    Triton checks them when an instance is created (before the input count)."""
    if not config.HasField("sequence_batching"):
        return []
    supported = torch_io.torch_dtypes()
    out = []
    for name, data_type in control_tensors(config):
        index = _indexed(name)
        if index is None:
            raise InternalError(
                f"input '{name}' does not follow <name>__<index> naming convention."
            )
        if data_type not in supported:
            raise InternalError(
                f"input '{name}' type '{datatype_name(data_type)}' is not supported "
                "by PyTorch."
            )
        out.append(SequenceTensor(name, index, data_type))
    return out


def state_count(config: ModelConfig) -> int:
    return len(config.sequence_batching.state)


def check_state_naming(
    model_name: str, config: ModelConfig, convention: str, kind: str
) -> None:
    """A model with state must use ``<name>__<index>`` for its ``kind`` ("input" or
    "output") names and its states' names of that kind (Triton's messages)."""
    states = config.sequence_batching.state
    if not states:
        return
    if convention != torch_io.NAMED_INDEX:
        raise InvalidArgumentError(
            f"PyTorch model '{model_name}' is using sequence batching with state "
            "but not all inputs and outputs follow the <name>__<index> naming "
            "convention. "
        )
    for state in states:
        name = state.input_name if kind == "input" else state.output_name
        if _indexed(name) is None:
            raise InvalidArgumentError(
                f"PyTorch model '{model_name}' is using sequence batching with "
                f"state but state '{name}' does not follow the <name>__<index> "
                "naming convention. "
            )


def _states(model_name: str, config: ModelConfig, kind: str) -> list[SequenceTensor]:
    """Each state's ``kind`` ("input" or "output") tensor, its data type checked
    (Triton says "input state" for the one and "state" for the other)."""
    shown = "input state" if kind == "input" else "state"
    out = []
    for state in config.sequence_batching.state:
        name = state.input_name if kind == "input" else state.output_name
        if state.data_type not in torch_io.torch_dtypes():
            raise InternalError(
                f"unsupported datatype {datatype_name(state.data_type)} for {shown} "
                f"'{name}' for model '{model_name}'"
            )
        index = _indexed(name)
        assert index is not None  # check_state_naming ran first
        out.append(SequenceTensor(name, index, state.data_type))
    return out


def state_inputs(model_name: str, config: ModelConfig) -> list[SequenceTensor]:
    return _states(model_name, config, "input")


def state_outputs(model_name: str, config: ModelConfig) -> list[SequenceTensor]:
    return _states(model_name, config, "output")
