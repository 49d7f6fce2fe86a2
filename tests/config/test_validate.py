"""Triton's normalization and validation rules. Every message below was taken from
the Triton 2.51 reference server loading the same config.pbtxt (python backend);
"poll" errors are the ones Triton reports while polling the repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tritonx.config import ConfigPollError, ModelConfig, load_model_config
from tritonx.config.loader import check_model_tensors
from tritonx.errors import InvalidArgumentError

from .conftest import MakeModel

IO = (
    'input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    'output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
)
OUT = 'output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
PY = 'backend: "python"\n'

POLL_CASES = [
    (
        'name: "other"\n' + PY + IO,
        "unexpected directory name 'm' for model 'other', directory name must equal "
        "model name",
    ),
    (
        PY + "max_batch_size: -1\n" + IO,
        "'max_batch_size' must be non-negative value for m",
    ),
    (
        PY
        + "max_batch_size: 4\n"
        + IO
        + "dynamic_batching { preferred_batch_size: [ 8 ] }",
        "dynamic batching preferred size must be <= max batch size for m",
    ),
    (
        PY
        + "max_batch_size: 4\n"
        + IO
        + "dynamic_batching { preferred_batch_size: [ 0 ] }",
        "dynamic batching preferred size must be positive for m",
    ),
    (
        PY + "max_batch_size: 4\n" + IO + "dynamic_batching { priority_levels: 2 }",
        "default priority level must be in range [1, 2] for m",
    ),
    (
        PY
        + "max_batch_size: 4\n"
        + IO
        + "dynamic_batching { priority_levels: 2 default_priority_level: 1 "
        "priority_queue_policy { key: 3 value: {} } }",
        "priority queue policy must have priority level in range [1, 2] for m",
    ),
    (
        PY
        + "max_batch_size: 4\n"
        + IO
        + "dynamic_batching { preserve_ordering: true priority_levels: 2 "
        "default_priority_level: 1 }",
        "Only one priority level is allowed when 'preserve_ordering' is true for m",
    ),
    (
        'backend: "onnxruntime"\nplatform: "pytorch_libtorch"\n' + IO,
        "unexpected 'platform' and 'backend' pair, got:pytorch_libtorch, onnxruntime",
    ),
    (
        'platform: "ensemble"\n' + IO,
        "ensemble scheduling must be set for ensemble m whose platform is ensemble",
    ),
]


def load_checked(model_dir: Path, **kwargs: Any) -> ModelConfig:
    """``load_model_config`` and then the tensor checks a Python model's load runs
    after its auto-complete (repository/loader.py's build_version)."""
    config = load_model_config(model_dir, **kwargs)
    check_model_tensors(config)
    return config


@pytest.mark.parametrize(("text", "message"), POLL_CASES)
def test_poll_errors(make_model: MakeModel, text: str, message: str) -> None:
    with pytest.raises(ConfigPollError) as info:
        load_checked(make_model("m", text))
    assert str(info.value) == message


def _input(spec: str) -> str:
    return f'input [ {{ name: "IN0" data_type: TYPE_FP32 {spec} }} ]\n' + OUT


LOAD_CASES = [
    (
        PY + _input("dims: [ 0 ]"),
        "model input 'IN0' dimension must be integer >= 1, or -1 to indicate a "
        "variable-size dimension for m",
    ),
    (
        PY + _input("dims: [ 4 ] reshape: { shape: [ 3 ] }"),
        "model input 'IN0' has different size for dims and reshape for m",
    ),
    (
        PY + 'input [ { name: "IN0" dims: [ 4 ] } ]\n' + OUT,
        "model input 'IN0' must specify 'data_type' for m",
    ),
    (PY + _input(""), "model input 'IN0' must specify 'dims' for m"),
    (
        PY + "input [ { data_type: TYPE_FP32 dims: [ 4 ] } ]\n" + OUT,
        "model input must specify 'name' for m",
    ),
    (
        PY + _input("dims: [ 1 ] reshape: { }"),
        "model input 'IN0' cannot have empty reshape for non-batching model as "
        "scalar tensors are not supported for m",
    ),
    (
        PY
        + 'input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        + 'output [ { name: "OUT0" data_type: TYPE_FP32 dims: [ -2 ] } ]\n',
        "model output 'OUT0' dimension must be integer >= 1, or -1 to indicate a "
        "variable-size dimension for m",
    ),
    (
        PY + _input("dims: [ 4 ] is_shape_tensor: true"),
        "shape tensors are only supported for TensorRT platform for m",
    ),
    (
        PY + _input("dims: [ 4 ] format: FORMAT_NHWC"),
        "model input NHWC/NCHW require 3 dims for m",
    ),
    (
        PY
        + "max_batch_size: 4\n"
        + IO
        + 'batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "X" '
        'data_type: TYPE_FP32 source_input: "NOPE" } ]',
        "unknown source input name 'NOPE' for m",
    ),
    (
        PY + IO + "instance_group [ { kind: KIND_GPU } ]",
        "instance group m_0 of model m has kind KIND_GPU but no GPUs are available",
    ),
    (
        PY + IO + "instance_group [ { kind: KIND_MODEL gpus: [0] } ]",
        "instance group m_0 of model m has kind KIND_MODEL but specifies one or "
        "more GPUs",
    ),
    (
        PY + IO + "instance_group [ { kind: KIND_CPU gpus: [0] } ]",
        "instance group m_0 of model m has kind KIND_CPU but specifies one or more "
        "GPUs",
    ),
    (
        PY + IO + 'instance_group [ { kind: KIND_CPU profile: ["0"] } ]',
        "instance group m_0 of model m and platform specifies profile field which "
        "is only supported for TensorRT models",
    ),
]


@pytest.mark.parametrize(("text", "message"), LOAD_CASES)
def test_load_errors(make_model: MakeModel, text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        load_checked(make_model("m", text))
    assert not isinstance(info.value, ConfigPollError)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "reshape",
    [
        "dims: [ 2, 4, -1, 6 ] reshape: { shape: [ 8, -1, 1, 6 ] }",
        "dims: [ 1 ] reshape: { }",
    ],
)
def test_valid_reshapes(make_model: MakeModel, reshape: str) -> None:
    text = PY + "max_batch_size: 2\n" + _input(reshape)
    load_checked(make_model("m", text))


def test_variable_reshape_chunks_must_match(make_model: MakeModel) -> None:
    text = PY + _input("dims: [ 2, -1 ] reshape: { shape: [ -1, 2 ] }")
    with pytest.raises(InvalidArgumentError) as info:
        load_checked(make_model("m", text))
    assert str(info.value) == (
        "model input 'IN0' has different size for dims and reshape for m"
    )


def test_sequence_control_needs_two_values(make_model: MakeModel) -> None:
    text = (
        PY + "max_batch_size: 4\n" + IO + "sequence_batching { control_input [ "
        '{ name: "S" control [ { kind: CONTROL_SEQUENCE_START '
        "int32_false_true: [ 1 ] } ] } ] }"
    )
    # Rejected while polling, as Triton does (checked against Triton 2.51).
    with pytest.raises(ConfigPollError) as info:
        load_checked(make_model("m", text))
    assert str(info.value) == (
        "sequence batching control 'int32_false_true' must have exactly 2 entries "
        "for CONTROL_SEQUENCE_START for m"
    )


def test_duplicate_input_names_rejected(make_model: MakeModel) -> None:
    text = (
        PY + 'input [ { name: "IN0" data_type: TYPE_FP32 dims: [ 4 ] }, '
        '{ name: "IN0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n' + OUT
    )
    with pytest.raises(InvalidArgumentError, match="specified more than once"):
        load_checked(make_model("m", text))


def test_defaults_filled(make_model: MakeModel) -> None:
    text = (
        PY
        + "max_batch_size: 4\n"
        + IO
        + "dynamic_batching { }\n"
        + ('instance_group [ { name: "grp" }, { count: -1 } ]')
    )
    config = load_checked(make_model("m", text))
    assert config.version_policy.latest.num_versions == 1
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.optimization.input_pinned_memory.enable
    assert config.optimization.output_pinned_memory.enable
    groups = [(g.name, g.kind, g.count) for g in config.instance_group]
    assert groups == [("grp", 2, 1), ("m_1", 2, 1)]  # KIND_CPU, count 1


def test_onnxruntime_cpu_groups_default_to_two(make_model: MakeModel) -> None:
    text = 'backend: "onnxruntime"\n' + IO
    from tritonx.config import (
        finalize_model_config,
        parse_config_text,
        poll_model_config,
    )

    config = parse_config_text(text, "x")
    poll_model_config(config, "m")
    finalize_model_config(config)
    assert config.platform == "onnxruntime_onnx"
    assert config.default_model_filename == "model.onnx"
    assert [(g.name, g.count) for g in config.instance_group] == [("m", 2)]


def test_gpu_groups_with_gpus(make_model: MakeModel) -> None:
    text = (
        PY + IO + "instance_group [ { kind: KIND_GPU }, { kind: KIND_GPU gpus: [3] } ]"
    )
    with pytest.raises(InvalidArgumentError) as info:
        load_checked(make_model("m", text), gpu_ids=[0, 1])
    assert str(info.value) == (
        "instance group m_1 of model m specifies invalid or unsupported gpu id 3. "
        "GPUs with at least the minimum required CUDA compute compatibility of "
        "6.000000 are: 0, 1"
    )


def test_auto_kind_resolves_to_gpu_when_available(make_model: MakeModel) -> None:
    config = load_checked(make_model("m", PY + IO), gpu_ids=[0, 1])
    group = config.instance_group[0]
    assert (group.kind, list(group.gpus)) == (1, [0, 1])  # KIND_GPU on all GPUs
