"""Hypothesis strategies for the ensemble config differential fuzz
(test_ensemble_config_fuzz.py): an ensemble's config.pbtxt over the small Python
models ``COMPOSING`` writes, valid first, then changed where Triton's ensemble
checks look (steps, maps, tensors, batch sizes, versions, blocks an ensemble may
not have).

The valid ensemble: E0, E1 (FP32 [4]) -> ``cadd`` (sum t0, difference D) -> ``cid``
(S = t0); outputs S and D. Built as a ``ModelConfig`` message and written with
protobuf's text format, so every example parses.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format
from hypothesis import strategies as st
from testmodels import ADD_SUB_PY, ECHO_MODEL

from tritonx._proto import model_config_pb2 as mc


def _python(
    mbs: int, inputs: list[str], outputs: list[str], dtype: str, dims: str
) -> str:
    def tensors(kind: str, names: list[str]) -> str:
        body = ", ".join(
            f'{{ name: "{n}" data_type: {dtype} dims: [ {dims} ] }}' for n in names
        )
        return f"{kind} [ {body} ]\n"

    return (
        f'backend: "python"\nmax_batch_size: {mbs}\n'
        + tensors("input", inputs)
        + tensors("output", outputs)
    )


# name -> (config.pbtxt without its name, model.py)
COMPOSING = {
    "cadd": (_python(0, ["INPUT0", "INPUT1"], ["OUTPUT0", "OUTPUT1"], "TYPE_FP32", "4"),
             ADD_SUB_PY),
    "cid": (_python(0, ["INPUT0"], ["OUTPUT0"], "TYPE_FP32", "-1"), ECHO_MODEL),
    "cbatch": (_python(4, ["INPUT0"], ["OUTPUT0"], "TYPE_FP32", "4"), ECHO_MODEL),
    "cint": (_python(0, ["INPUT0"], ["OUTPUT0"], "TYPE_INT32", "4"), ECHO_MODEL),
}  # fmt: skip

MODEL_NAMES = st.sampled_from([*COMPOSING, "nope", "", "SELF"])
TENSORS = st.sampled_from(["E0", "E1", "t0", "t1", "S", "D", "INPUT0", "nope", ""])
KEYS = st.sampled_from(["INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1", "nope", ""])
DATA_TYPES = st.sampled_from(["TYPE_FP32", "TYPE_INT32", "TYPE_STRING", "TYPE_INVALID"])
DIMS = st.sampled_from([[4], [-1], [2, 2], [5], [], [1, 4], [0]])


def _step(
    ensemble: Any, model: str, inputs: dict[str, str], outputs: dict[str, str]
) -> Any:
    step = ensemble.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    step.input_map.update(inputs)
    step.output_map.update(outputs)
    return step


def _change_step(draw: Any, config: Any, name: str) -> None:
    steps = config.ensemble_scheduling.step
    if not steps:
        _step(config, "cid", {"INPUT0": "E0"}, {"OUTPUT0": "S"})
        return
    step = draw(st.sampled_from(list(steps)))
    field = draw(
        st.sampled_from(
            ["model", "version", "input_key", "input_value", "output_key",
             "output_value", "drop_input", "drop_output", "drop_step", "add_step"]
        )
    )  # fmt: skip
    if field == "model":
        model = draw(MODEL_NAMES)
        step.model_name = name if model == "SELF" else model
    elif field == "version":
        step.model_version = draw(st.sampled_from([1, -1, 2, 0, -2]))
    elif field in ("input_key", "output_key"):
        mapping = step.input_map if field == "input_key" else step.output_map
        if mapping:
            old = draw(st.sampled_from(sorted(mapping)))
            value = mapping.pop(old)
            mapping[draw(KEYS)] = value
    elif field in ("input_value", "output_value"):
        mapping = step.input_map if field == "input_value" else step.output_map
        if mapping:
            mapping[draw(st.sampled_from(sorted(mapping)))] = draw(TENSORS)
    elif field in ("drop_input", "drop_output"):
        mapping = step.input_map if field == "drop_input" else step.output_map
        if mapping:
            del mapping[draw(st.sampled_from(sorted(mapping)))]
    elif field == "drop_step":
        steps.remove(step)
    else:  # another step: identity from one tensor to another (maybe a cycle)
        _step(config, draw(st.sampled_from(["cid", "cbatch", "cint"])),
              {"INPUT0": draw(TENSORS)}, {"OUTPUT0": draw(TENSORS)})  # fmt: skip


def _new_name(draw: Any, tensors: Any) -> str:
    """A name none of ``tensors`` has: tritonx refuses a name given twice (its own
    check, config/checks.py), where Triton 2.51 loads such an ensemble."""
    taken = {tensor.name for tensor in tensors}
    return str(draw(TENSORS.filter(lambda name: name not in taken)))


def _change_io(draw: Any, config: Any) -> None:
    field = draw(
        st.sampled_from(
            ["data_type", "dims", "name", "drop", "add_input", "add_output"]
        )
    )
    tensors = list(config.input) + list(config.output)
    if field == "add_input":
        name = _new_name(draw, config.input)
        config.input.add(name=name, data_type=mc.TYPE_FP32, dims=[4])
    elif field == "add_output":
        name = _new_name(draw, config.output)
        config.output.add(name=name, data_type=mc.TYPE_FP32, dims=[4])
    elif not tensors:
        return
    elif field == "data_type":
        tensor = draw(st.sampled_from(tensors))
        tensor.data_type = mc.DataType.Value(draw(DATA_TYPES))
    elif field == "dims":
        tensor = draw(st.sampled_from(tensors))
        del tensor.dims[:]
        tensor.dims.extend(draw(DIMS))
    elif field == "name":
        tensor = draw(st.sampled_from(tensors))
        group = config.input if tensor in config.input else config.output
        tensor.name = _new_name(draw, group)
    else:
        tensor = draw(st.sampled_from(tensors))
        (config.input if tensor in config.input else config.output).remove(tensor)


def _change_other(draw: Any, config: Any) -> None:
    field = draw(
        st.sampled_from(
            ["batch", "no_scheduling", "dynamic", "instances", "platform", "sequence"]
        )
    )
    if field == "batch":
        config.max_batch_size = draw(st.sampled_from([1, 4, 8, -1]))
    elif field == "no_scheduling":
        config.ClearField("ensemble_scheduling")
    elif field == "dynamic":
        config.dynamic_batching.SetInParent()
    elif field == "instances":
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    elif field == "platform":
        config.platform = draw(st.sampled_from(["python", "", "ensembles"]))
    else:
        config.sequence_batching.SetInParent()


@st.composite
def ensemble_configs(draw: Any, name: str) -> str:
    """The config.pbtxt text of ensemble ``name``: the valid pipeline, then 1-3
    changes."""
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=0)
    for tensor in ("E0", "E1"):
        config.input.add(name=tensor, data_type=mc.TYPE_FP32, dims=[4])
    for tensor in ("S", "D"):
        config.output.add(name=tensor, data_type=mc.TYPE_FP32, dims=[4])
    _step(config, "cadd", {"INPUT0": "E0", "INPUT1": "E1"},
          {"OUTPUT0": "t0", "OUTPUT1": "D"})  # fmt: skip
    _step(config, "cid", {"INPUT0": "t0"}, {"OUTPUT0": "S"})
    for _ in range(draw(st.integers(1, 3))):
        area = draw(st.sampled_from(["step", "step", "io", "other"]))
        if area == "step":
            _change_step(draw, config, name)
        elif area == "io":
            _change_io(draw, config)
        else:
            _change_other(draw, config)
    return text_format.MessageToString(config)
