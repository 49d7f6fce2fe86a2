"""ONNX auto-complete and config/model consistency checks (the rules of Triton's
onnxruntime backend), read from the graph with the ``onnx`` package."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tritonx.config._pb import ModelConfig, ModelInput, ModelOutput, mc
from tritonx.config.datatypes import datatype_name, wire_datatype
from tritonx.config.normalize import normalize_model_config
from tritonx.errors import InvalidArgumentError

# Triton passes default-max-batch-size=4 to every backend unless overridden.
DEFAULT_MAX_BATCH_SIZE = 4

# onnx.TensorProto element type -> config data type.
_ONNX_TO_CONFIG: dict[int, int] = {
    1: mc.TYPE_FP32,
    2: mc.TYPE_UINT8,
    3: mc.TYPE_INT8,
    4: mc.TYPE_UINT16,
    5: mc.TYPE_INT16,
    6: mc.TYPE_INT32,
    7: mc.TYPE_INT64,
    8: mc.TYPE_STRING,
    9: mc.TYPE_BOOL,
    10: mc.TYPE_FP16,
    11: mc.TYPE_FP64,
    12: mc.TYPE_UINT32,
    13: mc.TYPE_UINT64,
    16: mc.TYPE_BF16,
}


@dataclass(frozen=True)
class OnnxTensor:
    name: str
    data_type: int  # config DataType; TYPE_INVALID when unsupported
    dims: tuple[int, ...]  # -1 for symbolic/unknown dims


@dataclass(frozen=True)
class OnnxSignature:
    inputs: tuple[OnnxTensor, ...]
    outputs: tuple[OnnxTensor, ...]
    # Graph inputs backed by an initializer: optional request inputs.
    overridable: tuple[OnnxTensor, ...]


def _tensor(value_info: object) -> OnnxTensor:
    ttype = value_info.type.tensor_type  # type: ignore[attr-defined]
    dims: tuple[int, ...] = ()
    if ttype.HasField("shape"):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim
        )
    return OnnxTensor(
        name=value_info.name,  # type: ignore[attr-defined]
        data_type=_ONNX_TO_CONFIG.get(ttype.elem_type, mc.TYPE_INVALID),
        dims=dims,
    )


def read_onnx_signature(path: Path) -> OnnxSignature:
    """Inputs (initializers excluded), outputs and overridable initializers."""
    import onnx

    model_file = path / "model.onnx" if path.is_dir() else path
    try:
        model = onnx.load(str(model_file), load_external_data=False)
    except Exception as exc:  # onnx raises several types for a bad file
        raise InvalidArgumentError(
            f"failed to load ONNX model '{model_file}': {exc}"
        ) from exc
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [_tensor(v) for v in graph.input]
    return OnnxSignature(
        inputs=tuple(t for t in inputs if t.name not in initializers),
        outputs=tuple(_tensor(v) for v in graph.output),
        overridable=tuple(t for t in inputs if t.name in initializers),
    )


def complete_from_onnx(
    config: ModelConfig,
    onnx_path: Path,
    *,
    default_max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> bool:
    """Fill max_batch_size, inputs and outputs from the ONNX graph.

    Nothing changes when the config already lists inputs (or batch inputs) and
    outputs. Batching is assumed possible only when every input and output has a
    variable first dimension; then a zero max_batch_size becomes
    ``default_max_batch_size`` and, above 1, an empty dynamic_batching block is
    added unless a scheduler is configured. Returns whether anything was filled.
    """
    input_cnt = len(config.input) + len(config.batch_input)
    output_cnt = len(config.output)
    if input_cnt > 0 and output_cnt > 0:
        return False
    sig = read_onnx_signature(onnx_path)
    tensors = sig.inputs + sig.outputs
    can_batch = all(len(t.dims) > 0 and t.dims[0] == -1 for t in tensors)
    if can_batch:
        if config.max_batch_size == 0:
            config.max_batch_size = max(default_max_batch_size, 0)
        if config.max_batch_size > 1 and config.WhichOneof("scheduling_choice") is None:
            config.dynamic_batching.SetInParent()
    elif config.max_batch_size != 0:
        raise InvalidArgumentError(
            f"autofill failed for model '{config.name}': model does not support "
            "batching while non-zero max_batch_size is specified"
        )
    if input_cnt == 0:
        _fill(config.input, sig.inputs, config.max_batch_size)
    if output_cnt == 0:
        _fill(config.output, sig.outputs, config.max_batch_size)
    # Triton re-normalizes after a backend updates the config.
    normalize_model_config(config)
    return True


def _fill(target: object, tensors: Sequence[OnnxTensor], max_batch_size: int) -> None:
    for t in tensors:
        io = target.add()  # type: ignore[attr-defined]
        io.name = t.name
        io.data_type = t.data_type
        dims = t.dims[1:] if max_batch_size > 0 else t.dims
        if dims:
            io.dims.extend(dims)
        else:
            # A scalar: dims [1]; with batching it needs an empty reshape.
            io.dims.append(1)
            if max_batch_size > 0:
                io.reshape.SetInParent()


def _shape(dims: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def check_onnx_consistency(config: ModelConfig, onnx_path: Path) -> None:
    """Check that the config's tensors exist in the graph with matching types and
    shapes (what Triton's onnxruntime backend checks when creating instances)."""
    sig = read_onnx_signature(onnx_path)
    name = config.name
    expected = sum(1 for i in config.input if not i.optional) + len(config.batch_input)
    if config.HasField("sequence_batching"):
        # The sequence batcher feeds its control tensors and implicit states to
        # the graph as inputs too (Triton counts them in this check).
        sb = config.sequence_batching
        expected += len(sb.control_input) + len(sb.state)
    if len(sig.inputs) != expected:
        raise InvalidArgumentError(
            f"unable to load model '{name}', configuration expects {expected} "
            f"inputs, model provides {len(sig.inputs)}"
        )
    model_inputs = {t.name: t for t in sig.inputs + sig.overridable}
    for io in config.input:
        if io.optional and config.max_batch_size != 0:
            raise InvalidArgumentError(
                f"unable to load model '{name}', optional input '{io.name}' is not "
                "supported for models that support batching"
            )
        if io.allow_ragged_batch:
            _check_ragged(config, io, model_inputs)
        else:
            _check_tensor(config, io, model_inputs, "input")
    model_outputs = {t.name: t for t in sig.outputs}
    # A batch output holds the whole batch's elements: its config dims describe
    # one request's share, not the graph's tensor (Triton skips the comparison).
    scattered = {name for bo in config.batch_output for name in bo.target_name}
    for out in config.output:
        _check_tensor(config, out, model_outputs, "output", out.name not in scattered)


def _check_ragged(
    config: ModelConfig, io: ModelInput, model: dict[str, OnnxTensor]
) -> None:
    """A ragged input reaches the graph as one 1-D tensor of the whole batch's
    elements, so the graph must take shape [-1] (Triton's onnxruntime backend)."""
    _check_tensor(config, io, model, "input", compare_dims=False)
    dims = list(model[io.name].dims)
    if dims != [-1]:
        raise InvalidArgumentError(
            f"unable to load model '{config.name}', configuration expects model "
            f"provides input with shape [-1]  for ragged input '{io.name}', model "
            f"provides {_shape(dims)}"
        )


def _check_tensor(
    config: ModelConfig,
    io: ModelInput | ModelOutput,
    model: dict[str, OnnxTensor],
    kind: str,
    compare_dims: bool = True,
) -> None:
    name = config.name
    tensor = model.get(io.name)
    if tensor is None:
        allowed = ", ".join(sorted(model))
        raise InvalidArgumentError(
            f"unexpected inference {kind} '{io.name}', allowed {kind}s are: {allowed}"
        )
    if io.data_type != tensor.data_type:
        provided = wire_datatype(tensor.data_type)
        raise InvalidArgumentError(
            f"unable to load model '{name}', configuration expects datatype "
            f"{datatype_name(io.data_type)} for {kind} '{io.name}', model provides "
            f"TYPE_{provided}"
        )
    if not compare_dims:
        return
    dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
    if not tensor.dims:
        if any(d != 1 for d in dims):
            raise InvalidArgumentError(
                f"unable to load model '{name}', scalar tensor '{io.name}', should "
                "only provide 1 in the model configuration when the model doesn't "
                f"support batching. Model configuration provided: {_shape(dims)}."
            )
        return
    _compare_dims(name, io.name, tensor.dims, dims, config.max_batch_size)


def _compare_dims(
    model_name: str,
    tensor_name: str,
    model_dims: Sequence[int],
    config_dims: Sequence[int],
    max_batch_size: int,
) -> None:
    batching = max_batch_size > 0
    full = [-1, *config_dims] if batching else list(config_dims)
    if batching and (not model_dims or model_dims[0] != -1):
        raise InvalidArgumentError(
            f"model '{model_name}', tensor '{tensor_name}': for the model to "
            "support batching the shape should have at least 1 dimension and the "
            f"first dimension must be -1; but shape expected by the model is "
            f"{_shape(model_dims)}"
        )
    # A variable model dim accepts anything; a fixed one must match exactly.
    if len(model_dims) != len(full) or any(
        m != -1 and m != c for m, c in zip(model_dims, full, strict=True)
    ):
        where = (
            "dimensions (an initial batch dimension because max_batch_size > 0 "
            "followed by the explicit tensor shape, making complete shape "
            if batching
            else "dimensions (shape "
        )
        raise InvalidArgumentError(
            f"model '{model_name}', tensor '{tensor_name}': the model expects "
            f"{len(model_dims)} dimensions (shape {_shape(model_dims)}) but the "
            f"model configuration specifies {len(full)} {where}{_shape(full)})"
        )
