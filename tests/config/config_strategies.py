"""Hypothesis strategies for the config differential fuzz: a Python-backend model's
config.pbtxt, valid first, then changed where Triton's config checks look.

A config is built as a ``ModelConfig`` message and written with protobuf's text
format, so every example parses; what differs is what the servers' checks make of
it: batch sizes, tensor names, types, dims, formats and reshapes, the dynamic and
sequence batchers' settings, instance groups, version policies, parameters, the
response cache, warmup and batch inputs. KIND_GPU is left out (the reference is a
GPU build on a machine without one; tritonx has no CUDA here).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format
from hypothesis import strategies as st

from tritonx._proto import model_config_pb2 as mc

DIMS = st.lists(st.sampled_from([-1, 0, 1, 2, 4, -2]), max_size=3)
BATCH_SIZES = st.sampled_from([-1, 0, 1, 2, 8, 2**31 - 1])
DATA_TYPES = st.sampled_from(
    ["TYPE_FP32", "TYPE_STRING", "TYPE_INVALID", "TYPE_BOOL", "TYPE_INT64", "TYPE_BF16"]
)
NAMES = st.sampled_from(["INPUT0", "INPUT1", "OUTPUT0", "", "in put", "INPUT0 "])
MICROS = st.sampled_from([0, 1, 100, 10**6, 2**63 - 1])


def _tensor(draw: Any, tensor: Any, is_input: bool) -> None:
    """One change to an input or output."""
    field = draw(
        st.sampled_from(
            ["name", "data_type", "dims", "reshape", "format", "optional", "ragged"]
        )
    )
    if field == "name":
        tensor.name = draw(NAMES)
    elif field == "data_type":
        tensor.data_type = mc.DataType.Value(draw(DATA_TYPES))
    elif field == "dims":
        del tensor.dims[:]
        tensor.dims.extend(draw(DIMS))
    elif field == "reshape":
        tensor.reshape.shape.extend(draw(DIMS))
    elif field == "format" and is_input:
        tensor.format = draw(st.sampled_from([1, 2, 3]))  # NHWC, NCHW, and past
    elif field == "optional" and is_input:
        tensor.optional = True
    elif field == "ragged" and is_input:
        tensor.allow_ragged_batch = True


def _dynamic_batching(draw: Any, config: Any) -> None:
    batching = config.dynamic_batching
    batching.SetInParent()
    field = draw(
        st.sampled_from(["preferred", "delay", "priority", "policy", "preserve"])
    )
    if field == "preferred":
        batching.preferred_batch_size.extend(
            draw(st.lists(st.sampled_from([-1, 0, 1, 4, 16]), max_size=3))
        )
    elif field == "delay":
        batching.max_queue_delay_microseconds = draw(MICROS)
    elif field == "priority":
        batching.priority_levels = draw(st.sampled_from([0, 1, 2, 3]))
        batching.default_priority_level = draw(st.sampled_from([0, 1, 2, 5]))
    elif field == "policy":
        policy = batching.default_queue_policy
        policy.timeout_action = draw(st.sampled_from([0, 1]))
        policy.default_timeout_microseconds = draw(MICROS)
        policy.max_queue_size = draw(st.sampled_from([0, 1, 4]))
        if draw(st.booleans()):
            batching.priority_levels = draw(st.sampled_from([0, 2]))
            batching.priority_queue_policy[
                draw(st.sampled_from([0, 1, 2, 3]))
            ].CopyFrom(policy)
    else:
        batching.preserve_ordering = True


def _sequence_batching(draw: Any, config: Any) -> None:
    sequence = config.sequence_batching
    sequence.SetInParent()
    field = draw(st.sampled_from(["idle", "direct", "oldest", "control", "state"]))
    if field == "idle":
        sequence.max_sequence_idle_microseconds = draw(MICROS)
    elif field == "direct":
        sequence.direct.max_queue_delay_microseconds = draw(MICROS)
        sequence.direct.minimum_slot_utilization = draw(
            st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0])
        )
    elif field == "oldest":
        sequence.oldest.max_candidate_sequences = draw(st.sampled_from([0, 1, 4]))
        sequence.oldest.preferred_batch_size.extend(
            draw(st.lists(st.sampled_from([0, 1, 2, 64]), max_size=2))
        )
    elif field == "control":
        control = sequence.control_input.add(name=draw(NAMES | st.just("START")))
        kind = draw(st.sampled_from([0, 1, 2, 3, 4]))
        entry = control.control.add(kind=kind)
        if draw(st.booleans()):
            entry.int32_false_true.extend(draw(st.lists(st.integers(0, 1), max_size=3)))
        if draw(st.booleans()):
            entry.data_type = mc.DataType.Value(draw(DATA_TYPES))
    else:
        state = sequence.state.add(
            input_name=draw(st.sampled_from(["INPUT_STATE", "INPUT0", ""])),
            output_name=draw(st.sampled_from(["OUTPUT_STATE", "OUTPUT0", ""])),
        )
        # Not TYPE_INVALID: tritonx refuses such a state at load ("unknown datatype
        # 'INVALID'"), Triton 2.51 loads a model no sequence request can use.
        state.data_type = mc.DataType.Value(
            draw(DATA_TYPES.filter(lambda name: name != "TYPE_INVALID"))
        )
        state.dims.extend(draw(DIMS))


def _other(draw: Any, config: Any) -> None:
    field = draw(
        st.sampled_from(
            [
                "instances",
                "versions",
                "parameters",
                "cache",
                "warmup",
                "batch_input",
                "name",
                "platform",
            ]
        )
    )
    if field == "instances":
        group = config.instance_group.add()
        group.kind = draw(st.sampled_from([0, 2, 3]))  # AUTO, CPU, MODEL
        group.count = draw(st.sampled_from([-1, 0, 1, 2]))
        if draw(st.booleans()):
            # No space: Triton 2.51's Python backend then fails to start the
            # instance's stub ("No module named 'model'"); tritonx loads it.
            group.name = draw(st.sampled_from(["g", "", "g-1"]))
    elif field == "versions":
        policy = config.version_policy
        choice = draw(st.sampled_from(["latest", "specific", "all"]))
        if choice == "latest":
            policy.latest.num_versions = draw(st.sampled_from([0, 1, 2]))
        elif choice == "specific":
            policy.specific.versions.extend(
                draw(st.lists(st.sampled_from([1, 2, -1, 0]), max_size=3))
            )
        else:
            policy.all.SetInParent()
    elif field == "parameters":
        key = draw(st.sampled_from(["EXECUTION_ENV_PATH", "x", ""]))
        # No relative path that exists in the model's directory: tritonx looks an
        # EXECUTION_ENV_PATH up there first (Triton only in its working directory).
        config.parameters[key].string_value = draw(
            st.sampled_from(["", "nope", "/nope"])
        )
    elif field == "cache":
        config.response_cache.enable = True
    elif field == "warmup":
        warmup = config.model_warmup.add(name=draw(st.sampled_from(["w", ""])))
        warmup.batch_size = draw(st.sampled_from([0, 1, 2]))
        data = warmup.inputs[draw(st.sampled_from(["INPUT0", "NOPE"]))]
        data.data_type = mc.DataType.Value(draw(DATA_TYPES))
        data.dims.extend(draw(DIMS))
        data.zero_data = True
    elif field == "batch_input":
        batch_input = config.batch_input.add(
            kind=draw(st.sampled_from([0, 1, 2, 3, 4, 5])),
            target_name=[draw(st.sampled_from(["B", "INPUT0"]))],
        )
        batch_input.data_type = mc.DataType.Value(draw(DATA_TYPES))
        batch_input.source_input.extend(
            draw(st.lists(st.sampled_from(["INPUT0", "NOPE"]), max_size=2))
        )
    elif field == "name":
        config.name = draw(st.sampled_from(["other", ""]))
    else:
        config.platform = draw(st.sampled_from(["onnxruntime_onnx", "python", "x"]))


@st.composite
def model_configs(draw: Any, name: str) -> str:
    """The config.pbtxt text of model ``name``: INPUT0 -> OUTPUT0, FP32 [4], then
    1-3 changes."""
    config = mc.ModelConfig(name=name, backend="python")
    config.max_batch_size = draw(st.sampled_from([0, 0, 8]))
    config.input.add(name="INPUT0", data_type=mc.TYPE_FP32, dims=[4])
    config.output.add(name="OUTPUT0", data_type=mc.TYPE_FP32, dims=[4])
    for _ in range(draw(st.integers(1, 3))):
        area = draw(st.sampled_from(["input", "output", "batch", "dynamic",
                                     "sequence", "other", "other"]))  # fmt: skip
        if area == "input":
            _tensor(draw, draw(st.sampled_from(list(config.input))), True)
        elif area == "output":
            _tensor(draw, draw(st.sampled_from(list(config.output))), False)
        elif area == "batch":
            config.max_batch_size = draw(BATCH_SIZES)
        elif area == "dynamic":
            _dynamic_batching(draw, config)
        elif area == "sequence":
            _sequence_batching(draw, config)
        else:
            _other(draw, config)
    return text_format.MessageToString(config)
