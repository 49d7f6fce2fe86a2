"""How the pytorch backend maps config tensors onto a module's inputs and outputs.

Triton's rules (pytorch_backend), applied to TorchScript modules and, with the same
names, to ``torch.export`` programs:

- inputs: when every config input is a ``forward`` argument name, by name
  (FORWARD_ARGUMENT); else, when every name is ``<name>__<index>``, by that index
  (NAMED_INDEX); else in config order (STRICT_CONFIG_ORDERING, with a warning). A
  forward taking one ``Dict[str, Tensor]`` gets every input by its config name.
- outputs: ``<name>__<index>`` picks the index-th returned value (NAMED_INDEX), else
  config order. A module returning a dict (tritonx only; Triton refuses dicts) is
  read by key, the config output names being the keys.

Also here: torch <-> config data types, the checks of what a module returned, and
auto-complete for exported programs, whose graph carries names, data types and
(symbolic) shapes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tritonx.config._pb import ModelConfig, mc
from tritonx.config.datatypes import datatype_name
from tritonx.errors import InternalError, InvalidArgumentError

log = logging.getLogger("tritonx.backends.pytorch")

NAMED_INDEX = "NAMED_INDEX"
FORWARD_ARGUMENT = "FORWARD_ARGUMENT"
STRICT_CONFIG_ORDERING = "STRICT_CONFIG_ORDERING"
DICT = "DICT"


def torch_dtypes() -> dict[int, Any]:
    """Config data type -> torch dtype for what the backend can carry.

    Like Triton, UINT16/32/64 are refused (torch's support for them is partial) and
    STRING only exists as a TorchScript List[str]; BF16 is accepted (tritonx).
    """
    import torch

    return {
        mc.TYPE_BOOL: torch.bool,
        mc.TYPE_UINT8: torch.uint8,
        mc.TYPE_INT8: torch.int8,
        mc.TYPE_INT16: torch.int16,
        mc.TYPE_INT32: torch.int32,
        mc.TYPE_INT64: torch.int64,
        mc.TYPE_FP16: torch.float16,
        mc.TYPE_FP32: torch.float32,
        mc.TYPE_FP64: torch.float64,
        mc.TYPE_BF16: torch.bfloat16,
    }


def config_dtype_of(dtype: Any) -> int:
    """torch dtype -> config data type (TYPE_INVALID when unsupported)."""
    for config_type, torch_type in torch_dtypes().items():
        if torch_type == dtype:
            return config_type
    return int(mc.TYPE_INVALID)


def _index_of(name: str) -> int | None:
    """The index of ``<name>__<index>``; None when the name has no ``__``.
    Raises ValueError when the part after ``__`` is not a number."""
    pos = name.find("__")
    if pos < 0:
        return None
    digits = name[pos + 2 :]
    if not digits.isdigit() and digits != "":
        raise ValueError(name)
    return int(digits) if digits else 0


def index_of(name: str) -> int | None:
    """The index of ``<name>__<index>`` (None without ``__``; ValueError when the
    part after it is not a number)."""
    return _index_of(name)


def input_convention(
    model_name: str, names: Sequence[str], arguments: Sequence[str]
) -> str:
    if all(n in arguments for n in names):
        return FORWARD_ARGUMENT
    return _indexed_convention(model_name, names, "input")


def output_convention(model_name: str, names: Sequence[str]) -> str:
    return _indexed_convention(model_name, names, "output")


def _indexed_convention(model_name: str, names: Sequence[str], kind: str) -> str:
    for name in names:
        try:
            if _index_of(name) is None:
                return STRICT_CONFIG_ORDERING
        except ValueError:
            if kind == "input":
                log.warning(
                    "input '%s' or previous input(s) are neither an input argument "
                    "to the model '%s' nor do they follow the <name>__<index> naming "
                    "convention. Falling back to enforcing strict ordering from "
                    "model configuration.",
                    name,
                    model_name,
                )
            else:
                log.warning(
                    "output '%s' or previous output(s) of the model '%s' do not "
                    "follow the <name>__<index> naming convention. Falling back to "
                    "enforcing strict ordering from model configuration.",
                    name,
                    model_name,
                )
            return STRICT_CONFIG_ORDERING
    return NAMED_INDEX


def positions(
    convention: str, names: Sequence[str], arguments: Sequence[str]
) -> list[int]:
    """The position of each config tensor among the module's inputs/outputs."""
    if convention == FORWARD_ARGUMENT:
        return [list(arguments).index(n) for n in names]
    if convention == NAMED_INDEX:
        return [_index_of(n) or 0 for n in names]
    return list(range(len(names)))


@dataclass(frozen=True)
class Signature:
    """What a loaded module tells about its inputs (and, exported, its outputs)."""

    arguments: tuple[str, ...]  # forward argument names, self excluded
    dict_input: bool  # forward(self, x: Dict[str, Tensor])
    # Exported programs only: (name, config dtype, dims with -1 for symbolic).
    input_tensors: tuple[tuple[str, int, tuple[int, ...]], ...] = ()
    output_tensors: tuple[tuple[str, int, tuple[int, ...]], ...] = ()
    output_keys: tuple[str, ...] | None = None  # the dict keys a dict output has
    # Exported with keyword arguments: the last len(keywords) of ``arguments`` are
    # passed by these names (torch checks the call against the exported spec).
    keywords: tuple[str, ...] = ()


def script_signature(module: Any) -> Signature:
    """Argument names and kinds of a TorchScript module's forward (Triton's checks)."""
    arguments = list(module.forward.schema.arguments)
    if arguments and arguments[0].type.kind() == "ClassType":
        arguments = arguments[1:]
    kinds = [a.type.kind() for a in arguments]
    if len(arguments) == 1 and kinds[0] == "DictType":
        return Signature(arguments=(arguments[0].name,), dict_input=True)
    if kinds.count("DictType") > 1:
        raise InternalError(
            "Multiple inputs of kind DictType were detected. Only a single input of "
            "type Dict(str, Tensor) is supported."
        )
    for arg, kind in zip(arguments, kinds, strict=True):
        if kind not in ("TensorType", "ListType"):
            raise InternalError(
                f"An input of type '{arg.type}' was detected in the model. Only a "
                "single input of type Dict(str, Tensor) or input(s) of type Tensor "
                "are supported."
            )
    return Signature(arguments=tuple(a.name for a in arguments), dict_input=False)


def _dims(value: Any) -> tuple[int, ...]:
    import torch

    return tuple(-1 if isinstance(d, torch.SymInt) else int(d) for d in value.shape)


def exported_signature(program: Any) -> Signature:
    """Names, data types and shapes of an ExportedProgram's user inputs/outputs."""
    sig = program.graph_signature
    user_inputs = list(sig.user_inputs)
    nodes = {n.name: n for n in program.graph.nodes}
    inputs = []
    for name in user_inputs:
        val = nodes[name].meta.get("val")
        if val is None or not hasattr(val, "dtype"):
            raise InternalError(
                f"exported program input '{name}' is not a tensor; only tensor "
                "inputs are supported"
            )
        inputs.append((name, config_dtype_of(val.dtype), _dims(val)))
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    values = output_node.args[0]
    user_outputs = set(sig.user_outputs)
    out_vals = [v for v in values if getattr(v, "name", None) in user_outputs]
    out_spec = program.call_spec.out_spec
    keys: tuple[str, ...] | None = None
    if out_spec is not None and out_spec.type is dict:
        keys = tuple(str(k) for k in out_spec.context)
    outputs = []
    for i, node in enumerate(out_vals):
        val = node.meta.get("val")
        name = keys[i] if keys is not None and i < len(keys) else f"OUTPUT__{i}"
        if val is None or not hasattr(val, "dtype"):
            raise InternalError(f"exported program output {i} is not a tensor")
        outputs.append((name, config_dtype_of(val.dtype), _dims(val)))
    return Signature(
        arguments=tuple(user_inputs),
        dict_input=False,
        input_tensors=tuple(inputs),
        output_tensors=tuple(outputs),
        output_keys=keys,
        keywords=_keyword_names(program, len(user_inputs)),
    )


def _keyword_names(program: Any, count: int) -> tuple[str, ...]:
    """The keyword arguments a program was exported with, in the order of its
    user inputs (they come after the positional ones); () when it takes none."""
    spec = program.call_spec.in_spec
    if spec is None or spec.type is not tuple or spec.num_children != 2:
        return ()
    args, kwargs = spec.children_specs
    if kwargs.type is not dict or kwargs.num_children == 0:
        return ()
    leaves = list(args.children_specs) + list(kwargs.children_specs)
    if not all(leaf.is_leaf() for leaf in leaves) or len(leaves) != count:
        raise InternalError(
            "exported program inputs must be tensors passed one per argument; "
            "nested arguments are not supported"
        )
    return tuple(str(name) for name in kwargs.context)


def complete_from_signature(
    config: ModelConfig, sig: Signature, default_max_batch_size: int
) -> ModelConfig | None:
    """A copy of ``config`` with max_batch_size, inputs and outputs filled from an
    exported program (the ONNX rules: batching when every tensor's first dim is
    symbolic); None when the config already lists inputs and outputs."""
    if len(config.input) > 0 and len(config.output) > 0:
        return None
    updated = ModelConfig()
    updated.CopyFrom(config)
    tensors = sig.input_tensors + sig.output_tensors
    can_batch = all(len(d) > 0 and d[0] == -1 for _, _, d in tensors)
    if can_batch:
        if updated.max_batch_size == 0:
            updated.max_batch_size = max(default_max_batch_size, 0)
        if (
            updated.max_batch_size > 1
            and updated.WhichOneof("scheduling_choice") is None
        ):
            updated.dynamic_batching.SetInParent()
    elif updated.max_batch_size != 0:
        raise InvalidArgumentError(
            f"autofill failed for model '{config.name}': model does not support "
            "batching while non-zero max_batch_size is specified"
        )
    batching = updated.max_batch_size > 0
    if len(config.input) == 0:
        _fill(updated.input, sig.input_tensors, batching)
    if len(config.output) == 0:
        _fill(updated.output, sig.output_tensors, batching)
    return updated


def _fill(
    target: Any, tensors: Sequence[tuple[str, int, tuple[int, ...]]], batching: bool
) -> None:
    for name, dtype, dims in tensors:
        io = target.add()
        io.name = name
        io.data_type = dtype
        shown = dims[1:] if batching else dims
        if shown:
            io.dims.extend(shown)
        else:
            io.dims.append(1)
            if batching:
                io.reshape.SetInParent()


def returned_values(result: Any) -> list[Any] | dict[str, Any]:
    """What a module returned, as a list of values by position (or a dict by
    key), checked as Triton checks it."""
    import torch

    if isinstance(result, dict):
        return result
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, list) and all(isinstance(v, str) for v in result):
        return [result]
    if isinstance(result, tuple | list):
        for i, value in enumerate(result):
            if isinstance(value, list) and not all(isinstance(v, str) for v in value):
                raise InternalError(
                    f"PyTorch execute failure: output at index {i} must be of "
                    "type Tensor or List[str]"
                )
        return list(result)
    raise InternalError(
        "PyTorch execute failure: output must be of type Tensor, List[str] or "
        "Tuple containing one of these two types. It should not be a List / "
        "Dictionary of Tensors or a Scalar"
    )


def to_output(name: str, value: Any, dtype: Any, config_type: int) -> Any:
    """A returned value as the core takes it: a numpy BYTES array for List[str],
    else the tensor itself, checked against the config's data type."""
    import numpy as np
    import torch

    if isinstance(value, list):
        if config_type != mc.TYPE_STRING:
            raise InvalidArgumentError(
                f"configuration expects datatype {datatype_name(config_type)} "
                f"for output '{name}', model provides TYPE_STRING"
            )
        array = np.empty(len(value), dtype=object)
        array[:] = [s.encode("utf-8") for s in value]
        return array
    if not isinstance(value, torch.Tensor):
        raise InvalidArgumentError(
            f"output '{name}' must be of type Tensor or List[str]."
        )
    if value.dtype != dtype:
        provided = datatype_name(config_dtype_of(value.dtype))
        raise InvalidArgumentError(
            f"configuration expects datatype {datatype_name(config_type)} for "
            f"output '{name}', model provides {provided}"
        )
    if value.dim() == 0:
        raise InvalidArgumentError(
            f"output '{name}' is a scalar which is not supported."
        )
    # The tensor itself goes to the core, through DLPack (bfloat16 as BF16),
    # where it lives: a GPU output stays on the device (its work is done: the
    # instance's _call waited for the batch's event) until a consumer needs host bytes, then the
    # core copies the whole batch's output device->host once, into its pinned
    # arena (tensor_memory.h), never through torch's pinned allocator.
    return value.detach().contiguous()
