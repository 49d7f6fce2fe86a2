"""ONNX auto-complete (rules of Triton's onnxruntime backend) on real ONNX files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonx.config import ModelConfig, complete_from_onnx, load_model_config
from tritonx.config._pb import mc
from tritonx.errors import InvalidArgumentError

from .conftest import MakeModel

Dims = Sequence[int | str]


def identity_model(
    in_dims: Dims,
    out_dims: Dims | None = None,
    elem: int = TensorProto.FLOAT,
    *,
    with_initializer: bool = False,
) -> bytes:
    """X -> Identity -> Y; optionally an extra graph input backed by an
    initializer (added to Y so it is used)."""
    inputs = [helper.make_tensor_value_info("X", elem, list(in_dims))]
    outputs = [
        helper.make_tensor_value_info(
            "Y", elem, list(in_dims if out_dims is None else out_dims)
        )
    ]
    nodes = [helper.make_node("Identity", ["X"], ["Y"])]
    initializers = []
    if with_initializer:
        import numpy as np

        inputs.append(helper.make_tensor_value_info("BIAS", elem, [1]))
        initializers.append(numpy_helper.from_array(np.zeros(1, np.float32), "BIAS"))
        nodes = [helper.make_node("Add", ["X", "BIAS"], ["Y"])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_repo(
    make_model: MakeModel, name: str, model: bytes, config: str | None = None
) -> Path:
    return make_model(name, config, files={"1/model.onnx": model})


def test_dynamic_batch_dim_enables_batching(make_model: MakeModel) -> None:
    config = load_model_config(onnx_repo(make_model, "dyn", identity_model(["N", 4])))
    assert config.backend == "onnxruntime"
    assert config.platform == "onnxruntime_onnx"
    assert config.default_model_filename == "model.onnx"
    assert config.max_batch_size == 4
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("X", mc.TYPE_FP32, [4])
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("Y", [4])]
    assert [(g.name, g.kind, g.count) for g in config.instance_group] == [
        ("dyn", mc.ModelInstanceGroup.KIND_CPU, 2)
    ]


def test_fixed_batch_dim_means_no_batching(make_model: MakeModel) -> None:
    config = load_model_config(onnx_repo(make_model, "fixed", identity_model([2, 3])))
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [2, 3]


def test_variable_dims(make_model: MakeModel) -> None:
    config = load_model_config(onnx_repo(make_model, "var", identity_model(["N", "L"])))
    assert config.max_batch_size == 4
    assert list(config.input[0].dims) == [-1]
    assert list(config.output[0].dims) == [-1]


def test_string_scalar_per_batch_item(make_model: MakeModel) -> None:
    model = identity_model(["N"], elem=TensorProto.STRING)
    config = load_model_config(onnx_repo(make_model, "str", model))
    inp = config.input[0]
    assert inp.data_type == mc.TYPE_STRING
    assert list(inp.dims) == [1]
    assert inp.HasField("reshape") and list(inp.reshape.shape) == []


def test_initializers_are_not_inputs(make_model: MakeModel) -> None:
    model = identity_model(["N", 2], with_initializer=True)
    config = load_model_config(onnx_repo(make_model, "init", model))
    assert [i.name for i in config.input] == ["X"]


def test_default_max_batch_size_from_backend_config(make_model: MakeModel) -> None:
    repo = onnx_repo(make_model, "mbs", identity_model(["N", 4]))
    config = load_model_config(
        repo, backend_config={"": {"default-max-batch-size": "8"}}
    )
    assert config.max_batch_size == 8
    config = load_model_config(
        repo, backend_config={"onnxruntime": {"default-max-batch-size": "1"}}
    )
    # Batching with max 1 does not turn the dynamic batcher on.
    assert config.max_batch_size == 1
    assert not config.HasField("dynamic_batching")
    config = load_model_config(
        repo, backend_config={"": {"default-max-batch-size": "0"}}
    )
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [-1, 4]


def test_explicit_max_batch_size_kept(make_model: MakeModel) -> None:
    repo = onnx_repo(
        make_model, "keep", identity_model(["N", 4]), "max_batch_size: 16\n"
    )
    config = load_model_config(repo)
    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [16]


def test_non_batching_model_with_max_batch_size(make_model: MakeModel) -> None:
    repo = onnx_repo(make_model, "nb", identity_model([2, 3]), "max_batch_size: 4\n")
    with pytest.raises(InvalidArgumentError) as info:
        load_model_config(repo)
    assert str(info.value) == (
        "autofill failed for model 'nb': model does not support batching while "
        "non-zero max_batch_size is specified"
    )


def test_auto_complete_off_leaves_config(make_model: MakeModel) -> None:
    repo = onnx_repo(
        make_model,
        "off",
        identity_model([2, 3]),
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 2, 3 ] } ]\n',
    )
    config = load_model_config(repo, auto_complete=False)
    assert config.max_batch_size == 0


def test_only_missing_side_is_filled(make_model: MakeModel) -> None:
    repo = onnx_repo(
        make_model,
        "half",
        identity_model(["N", 4]),
        'max_batch_size: 2\ninput [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\n',
    )
    config = load_model_config(repo)
    assert [o.name for o in config.output] == ["Y"]
    assert len(config.input) == 1


IO_FP32 = (
    'input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "max_batch_size: 2\n" + IO_FP32.replace("TYPE_FP32", "TYPE_INT32", 1),
            "unable to load model 'chk', configuration expects datatype TYPE_INT32 "
            "for input 'X', model provides TYPE_FP32",
        ),
        (
            "max_batch_size: 2\n" + IO_FP32.replace('"X"', '"Z"'),
            "unexpected inference input 'Z', allowed inputs are: X",
        ),
        (
            "max_batch_size: 2\n"
            + IO_FP32.replace("dims: [ 4 ] }", "dims: [ 5 ] }", 1),
            "model 'chk', tensor 'X': the model expects 2 dimensions (shape [-1,4]) "
            "but the model configuration specifies 2 dimensions (an initial batch "
            "dimension because max_batch_size > 0 followed by the explicit tensor "
            "shape, making complete shape [-1,5])",
        ),
    ],
)
def test_existing_entries_checked(
    make_model: MakeModel, config: str, message: str
) -> None:
    repo = onnx_repo(make_model, "chk", identity_model(["N", 4]), config)
    with pytest.raises(InvalidArgumentError) as info:
        load_model_config(repo)
    assert str(info.value) == message


def test_complete_from_onnx_directly(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(identity_model(["N", 3]))
    config = ModelConfig(name="direct", backend="onnxruntime")
    assert complete_from_onnx(config, path, default_max_batch_size=2)
    assert config.max_batch_size == 2
    assert not complete_from_onnx(config, path)  # inputs and outputs present now
