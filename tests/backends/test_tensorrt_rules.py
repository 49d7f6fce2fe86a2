"""The tensorrt backend's decisions over an engine's description (no TensorRT or GPU
needed): config auto-complete, the load-time checks of a written config, which
optimization profiles an instance uses and which one runs a batch, each with the
texts of Triton's tensorrt backend. tests/gpu/test_tensorrt.py runs real engines."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from tritonx.backends.tensorrt_engine import (
    EngineDescription,
    EngineTensor,
    ProfileShapes,
    auto_complete,
    check_config,
    choose_profile,
    data_type_of,
    instance_profiles,
    require_gpu_instances,
)
from tritonx.config._pb import mc
from tritonx.errors import InvalidArgumentError

FP32 = mc.TYPE_FP32

# INPUT0 [-1, 16] with profile 0 taking batches 1..8 (opt 4) and profile 1 1..32
# (opt 16); OUTPUT0 [-1, 16].
DYNAMIC = EngineDescription(
    tensors=(
        EngineTensor(
            "INPUT0",
            True,
            FP32,
            (-1, 16),
            (
                ProfileShapes((1, 16), (4, 16), (8, 16)),
                ProfileShapes((1, 16), (16, 16), (32, 16)),
            ),
        ),
        EngineTensor("OUTPUT0", False, FP32, (-1, 16)),
    ),
    num_profiles=2,
)


def config(text: str = "") -> mc.ModelConfig:
    message = text_format.Parse(
        'name: "m" platform: "tensorrt_plan" ' + text, mc.ModelConfig()
    )
    return message


def refusal(call, *args) -> str:
    with pytest.raises(InvalidArgumentError) as info:
        call(*args)
    return str(info.value)


def test_types_without_a_triton_type_are_invalid() -> None:
    assert data_type_of("FLOAT") == mc.TYPE_FP32
    assert data_type_of("BF16") == mc.TYPE_BF16
    assert data_type_of("BOOL") == mc.TYPE_BOOL
    assert data_type_of("FP8") == mc.TYPE_INVALID
    assert data_type_of("INT4") == mc.TYPE_INVALID


def test_empty_config_is_filled_from_profile_zero() -> None:
    done = auto_complete(config(), DYNAMIC)
    assert done.max_batch_size == 8  # profile 0's largest dim 0
    assert done.HasField("dynamic_batching")
    assert [(t.name, t.data_type, list(t.dims)) for t in done.input] == [
        ("INPUT0", FP32, [16])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in done.output] == [
        ("OUTPUT0", FP32, [16])
    ]


def test_the_largest_batch_of_the_named_profiles_wins() -> None:
    named = config('instance_group [ { kind: KIND_GPU profile: [ "0", "1" ] } ]')
    assert auto_complete(named, DYNAMIC).max_batch_size == 32
    one = config('instance_group [ { kind: KIND_GPU profile: [ "1" ] } ]')
    assert auto_complete(one, DYNAMIC).max_batch_size == 32


def test_a_smaller_configured_batch_is_kept_a_larger_refused() -> None:
    assert auto_complete(config("max_batch_size: 2"), DYNAMIC).max_batch_size == 2
    assert refusal(auto_complete, config("max_batch_size: 64"), DYNAMIC) == (
        "autofill failed for model 'm': configuration specified max-batch 64 but "
        "TensorRT engine only supports max-batch 8"
    )


def test_an_invalid_profile_fails_the_autofill() -> None:
    bad = config('instance_group [ { kind: KIND_GPU profile: [ "5" ] } ]')
    assert refusal(auto_complete, bad, DYNAMIC) == (
        "unable to autofill for 'm', configuration specified invalid profile 5 . "
        "Number of profiles supported by TensorRT engine: 2"
    )


def test_dims_naming_every_engine_dim_mean_no_batching() -> None:
    full = config('input [ { name: "INPUT0" dims: [ -1, 16 ] } ]')
    done = auto_complete(full, DYNAMIC)
    assert done.max_batch_size == 0
    assert not done.HasField("dynamic_batching")
    assert list(done.input[0].dims) == [-1, 16]
    assert done.input[0].data_type == FP32  # the missing type is filled
    assert list(done.output[0].dims) == [-1, 16]  # filled without a batch dim


def test_contradicting_hints_are_refused() -> None:
    mixed = config(
        'input [ { name: "INPUT0" dims: [ 16 ] } ] '
        'output [ { name: "OUTPUT0" dims: [ -1, 16 ] } ]'
    )
    assert refusal(auto_complete, mixed, DYNAMIC) == (
        "unable to autofill for 'm', model tensor configurations are contradicting "
        "each other in terms of whether batching is supported"
    )


def test_a_batching_hint_on_an_engine_without_batches_is_refused() -> None:
    scalar = EngineDescription(
        tensors=(
            EngineTensor("X", True, FP32, (), (ProfileShapes((), (), ()),)),
            EngineTensor("Y", False, FP32, ()),
        ),
        num_profiles=1,
    )
    ragged = config('input [ { name: "X" allow_ragged_batch: true } ]')
    assert refusal(auto_complete, ragged, scalar) == (
        "autofill failed for model 'm': model tensor shape configuration hints for "
        "dynamic batching but the underlying engine doesn't support batching."
    )
    done = auto_complete(config(), scalar)
    assert done.max_batch_size == 0
    # A tensor with no dims is shown as [1] reshaped to a scalar.
    assert list(done.output[0].dims) == [1] and done.output[0].HasField("reshape")


def test_names_the_engine_lacks_are_refused() -> None:
    wrong = config('input [ { name: "NOPE" dims: [ 16 ] } ]')
    assert refusal(auto_complete, wrong, DYNAMIC) == (
        "unexpected inference input 'NOPE', allowed inputs are: INPUT0"
    )


CHECKED = """
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
"""


def test_a_matching_config_passes() -> None:
    check_config(config(CHECKED), DYNAMIC, [0], "m_0")
    check_config(config(CHECKED.replace("8", "32")), DYNAMIC, [1], "m_0")


INPUT_LINE = 'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]'
OUTPUT_LINE = 'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]'


@pytest.mark.parametrize(
    ("old", "new", "text"),
    [
        (
            INPUT_LINE,
            INPUT_LINE.replace("FP32", "FP16"),
            "unexpected datatype TYPE_FP32 for inference input 'INPUT0', expecting "
            "TYPE_FP16 for m_0",
        ),
        (OUTPUT_LINE, "", "expected configuration for output 'OUTPUT0' for m_0"),
        (
            INPUT_LINE,
            INPUT_LINE.replace("[ 16 ]", "[ 4, 4 ]"),
            "model 'm', tensor 'INPUT0': the model expects 2 dimensions (shape "
            "[-1,16]) but the model configuration specifies 3 dimensions (an initial "
            "batch dimension because max_batch_size > 0 followed by the explicit "
            "tensor shape, making complete shape [-1,4,4])",
        ),
        (
            "max_batch_size: 8",
            "max_batch_size: 16",
            "unable to load model 'm': configuration specified max-batch 16 but "
            "TensorRT engine only supports max-batch 8",
        ),
        (
            INPUT_LINE,
            INPUT_LINE.replace("FP32", "STRING"),
            "unsupported datatype TYPE_STRING for input 'INPUT0' for model 'm'",
        ),
    ],
    ids=["datatype", "missing_output", "dims", "max_batch", "bytes"],
)
def test_config_refusals(old: str, new: str, text: str) -> None:
    assert old in CHECKED
    bad = config(CHECKED.replace(old, new))
    assert refusal(check_config, bad, DYNAMIC, [0], "m_0") == text


def test_more_inputs_than_the_engine_has() -> None:
    extra = config(
        CHECKED.replace(
            "input [ {", 'input [ { name: "EXTRA" data_type: TYPE_FP32 dims: [1] }, {'
        )
    )
    assert refusal(check_config, extra, DYNAMIC, [0], "m_0") == (
        "unable to load model 'm', configuration expects 2 inputs, model provides at "
        "most 1"
    )


def test_fixed_config_dims_outside_every_profile() -> None:
    wide = EngineDescription(
        tensors=(
            EngineTensor(
                "INPUT0",
                True,
                FP32,
                (-1, -1),
                (ProfileShapes((1, 2), (4, 8), (8, 64)),),
            ),
            EngineTensor("OUTPUT0", False, FP32, (-1, -1)),
        ),
        num_profiles=1,
    )
    ok = CHECKED.replace("dims: [ 16 ]", "dims: [ -1 ]")
    check_config(config(ok), wide, [0], "m_0")
    bad = config(
        ok.replace(
            '"INPUT0" data_type: TYPE_FP32 dims: [ -1 ]',
            '"INPUT0" data_type: TYPE_FP32 dims: [ 128 ]',
        )
    )
    assert refusal(check_config, bad, wide, [0], "m_0") == (
        "model configuration specified invalid shape for input 'INPUT0' for model m. "
        "Error details: model expected the shape of dimension 1 to be between 2 and "
        "64 but received 128"
    )


def test_shape_tensors_and_non_linear_formats_are_refused_clearly() -> None:
    for flag, words in (
        ({"shape_tensor": True}, "is a shape tensor"),
        ({"linear": False}, "uses a non-linear IO format"),
    ):
        engine = EngineDescription(
            tensors=(
                EngineTensor(
                    "INPUT0", True, FP32, (-1, 16), DYNAMIC.tensors[0].profiles, **flag
                ),
                DYNAMIC.tensors[1],
            ),
            num_profiles=2,
        )
        assert words in refusal(check_config, config(CHECKED), engine, [0], "m_0")


def test_instance_profiles() -> None:
    assert instance_profiles([], 2, "m_0") == [0]
    assert instance_profiles(["1", "0", "1"], 2, "m_0") == [1, 0]
    assert refusal(instance_profiles, [""], 2, "m_0") == (
        "profile name must not be empty"
    )
    assert refusal(instance_profiles, ["x"], 2, "m_0") == "unable to parse 'x': stoi"
    assert refusal(instance_profiles, ["3"], 2, "m_0") == (
        "Can not set the specified optimization profile 3[3] for m_0. Expected "
        "optimization profile index range 0-1"
    )


def test_the_profile_nearest_its_opt_shapes_runs_the_batch() -> None:
    assert choose_profile(DYNAMIC, [0, 1], {"INPUT0": (4, 16)}, "m_0") == 0
    assert choose_profile(DYNAMIC, [0, 1], {"INPUT0": (12, 16)}, "m_0") == 1
    assert choose_profile(DYNAMIC, [0, 1], {"INPUT0": (20, 16)}, "m_0") == 1
    assert choose_profile(DYNAMIC, [1, 0], {"INPUT0": (7, 16)}, "m_0") == 0


def test_a_batch_no_profile_takes_fails_with_tritons_text() -> None:
    assert refusal(choose_profile, DYNAMIC, [0, 1], {"INPUT0": (40, 16)}, "m_0") == (
        "request specifies invalid shape for input 'INPUT0' for m_0. Error details: "
        "model expected the shape of dimension 0 to be between 1 and 8 but received 40"
    )
    assert refusal(choose_profile, DYNAMIC, [1], {"INPUT0": (4, 3, 2)}, "m_0") == (
        "request specifies invalid shape for input 'INPUT0' for m_0. Error details: "
        "model expected 2 dimensions but received 3 dimensions"
    )


def test_only_gpu_instances() -> None:
    require_gpu_instances(config("instance_group [ { kind: KIND_GPU } ]"))
    assert (
        refusal(require_gpu_instances, config("instance_group [ { kind: KIND_CPU } ]"))
        == "unable to load model 'm', TensorRT backend supports only GPU device"
    )
