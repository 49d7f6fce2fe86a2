"""Triton's L0_infer_reshape QA on Python-backend models, as a differential test:
identity models whose inputs and outputs carry a `reshape` (to a scalar per batch
row, to other fixed shapes, with variable dims, inputs only), batching and not,
over HTTP and gRPC, against Triton 2.51 when TRITONX_REFERENCE_CMD is set. Each
model also answers SEEN, the shapes its inputs had inside the model, so the test
checks both sides of the reshape: what the model saw and what the client got
back. Shapes that do not fit, and a model output that does not fit its reshape,
must be refused the same way.

Left out: the TensorRT, libtorch, OpenVINO and ONNX models and the reshaping
ensembles (tests/ensemble)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, observe_both
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# OUTPUTk = INPUTk as the model saw it; SEEN = those shapes, one string per row
# (or one string when the model does not batch). A "grow" parameter appends a
# value to OUTPUT0: an output the size of which fits no reshape.
IDENTITY = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.names = [i["name"] for i in config["input"]]
        self.batching = config["max_batch_size"] > 0
        self.grow = "grow" in config.get("parameters", {})

    def execute(self, requests):
        responses = []
        for request in requests:
            arrays = [
                pb_utils.get_input_tensor_by_name(request, n).as_numpy()
                for n in self.names
            ]
            seen = ";".join(str(list(a.shape)) for a in arrays).encode()
            rows = arrays[0].shape[0] if self.batching else 1
            shape = (rows, 1) if self.batching else (1,)
            outs = [pb_utils.Tensor("SEEN", np.full(shape, seen, dtype=np.object_))]
            for k, array in enumerate(arrays):
                if self.grow and k == 0:
                    array = np.append(array, array.flat[0])
                outs.append(pb_utils.Tensor(f"OUTPUT{k}", array))
            responses.append(pb_utils.InferenceResponse(outs))
        return responses
"""


def dims(shape: list[int]) -> str:
    return "[ " + ", ".join(map(str, shape)) + " ]"


def io(
    kind: str, index: int, dtype: str, shape: list[int], model: list[int] | None
) -> str:
    reshape = "" if model is None else f" reshape: {{ shape: {dims(model)} }}"
    return (
        f'{{ name: "{kind}{index}" data_type: {dtype} dims: {dims(shape)}{reshape} }}'
    )


# name: (datatype, max_batch_size, [(client shape, model shape)] for the inputs,
# outputs as the same list or None for "as the inputs", extra config)
Spec = tuple[
    str,
    int,
    list[tuple[list[int], list[int]]],
    list[tuple[list[int], list[int] | None]] | None,
    str,
]
MODELS: dict[str, Spec] = {
    # ff1 / oo1: a [1] per row, a scalar per row inside (the model sees [batch])
    "zero_1_float32": ("TYPE_FP32", 8, [([1], [])], None, ""),
    "zero_1_object": ("TYPE_STRING", 8, [([1], [])], None, ""),
    # ff2
    "zero_2_float32": ("TYPE_FP32", 8, [([1], []), ([8], [4, 1, 2])], None, ""),
    # ff3, batching and not
    **{
        name: (
            "TYPE_FP32",
            batch,
            [([4, 4], [16]), ([2], [1, 2]), ([2, 2, 3], [3, 2, 2])],
            None,
            "",
        )
        for name, batch in (("reshape_3_float32", 8), ("nobatch_3_float32", 0))
    },
    # ff4: inputs reshaped, the outputs declared in the model's shapes
    "inputs_only_float32": (
        "TYPE_FP32",
        8,
        [([4, 4], [16]), ([2], [1, 2]), ([2, 2, 3], [3, 2, 2]), ([1], [1])],
        [([16], None), ([1, 2], None), ([3, 2, 2], None), ([1], None)],
        "",
    ),
    # ii1 / ii3: variable dims on both sides of the reshape
    "var_1_int32": ("TYPE_INT32", 8, [([2, 4, -1, 6], [8, -1, 1, 6])], None, ""),
    "nobatch_var_1_int32": (
        "TYPE_INT32",
        0,
        [([2, 4, -1, 6], [8, -1, 1, 6])],
        None,
        "",
    ),
    "var_3_int32": (
        "TYPE_INT32",
        8,
        [([1, -1, 1], [-1]), ([-1], [1, -1, 1]), ([2, 2, 3], [3, 2, 2])],
        None,
        "",
    ),
    # ii2: variable inputs reshaped, outputs not
    "var_inputs_only_int32": (
        "TYPE_INT32",
        8,
        [([-1, 1], [1, -1]), ([2], [1, 2])],
        [([1, -1], None), ([1, 2], None)],
        "",
    ),
    # two variable dims, moved apart by the reshape
    "two_var_int32": ("TYPE_INT32", 8, [([-1, -1], [-1, 1, -1])], None, ""),
    "nobatch_two_var_int32": (
        "TYPE_INT32",
        0,
        [([-1, -1], [-1, -1, 1])],
        None,
        "",
    ),
    # the model answers one value too many for OUTPUT0's reshape
    "grow_float32": (
        "TYPE_FP32",
        8,
        [([4, 4], [16])],
        None,
        'parameters { key: "grow" value { } }',
    ),
}


def config(name: str, spec: Spec) -> str:
    dtype, max_batch, ins, outs, extra = spec
    outputs = outs if outs is not None else ins
    seen = '{ name: "SEEN" data_type: TYPE_STRING dims: [ 1 ] }'
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [ {", ".join(io("INPUT", k, dtype, c, m) for k, (c, m) in enumerate(ins))} ]
output [ {seen}, {
        ", ".join(io("OUTPUT", k, dtype, c, m) for k, (c, m) in enumerate(outputs))
    } ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
{extra}
"""


def write_repo(repo: Path) -> None:
    for name, spec in MODELS.items():
        write_model(repo, name, config(name, spec), IDENTITY)


# A case: protocol, model, the shape sent for each input (batch dim included).
Case = tuple[str, str, tuple[tuple[int, ...], ...]]


def concrete(shape: list[int], fill: int) -> tuple[int, ...]:
    return tuple(fill if d == -1 else d for d in shape)


def cases() -> list[Case]:
    out: list[Case] = []
    for name, (_, max_batch, ins, _, _) in MODELS.items():
        for fill in (3, 1, 0) if any(-1 in c for c, _ in ins) else (0,):
            shapes = [concrete(c, fill) for c, _ in ins]
            sizes = (1, 2) if max_batch else (0,)
            for batch in sizes:
                full = tuple((batch, *s) if batch else s for s in shapes)
                for protocol in ("http", "grpc"):
                    out.append((protocol, name, full))
    # Shapes that do not fit the declared dims.
    out.append(("http", "reshape_3_float32", ((1, 4, 5), (1, 2), (1, 2, 2, 3))))
    out.append(("grpc", "reshape_3_float32", ((1, 16), (1, 2), (1, 2, 2, 3))))
    out.append(("http", "var_1_int32", ((1, 2, 4, 3, 5),)))
    out.append(("grpc", "nobatch_var_1_int32", ((2, 4, 0, 6),)))
    out.append(("http", "zero_1_float32", ((2,),)))
    out.append(("grpc", "var_3_int32", ((1, 1, 5, 1), (1, 4), (1, 2, 2, 3))))
    return out


CASES = cases()


def ask(clients: dict[str, Any], case: Case) -> Any:
    """Each output's (name, datatype, shape, values), or the error."""
    protocol, model, shapes = case
    module: Any = grpcclient if protocol == "grpc" else httpclient
    dtype = MODELS[model][0]
    tensors = []
    for k, shape in enumerate(shapes):
        count = int(np.prod(shape))
        if dtype == "TYPE_STRING":
            data = np.array(
                [str(v).encode() for v in range(count)], dtype=np.object_
            ).reshape(shape)
            wire = "BYTES"
        elif dtype == "TYPE_INT32":
            data = (np.arange(count, dtype=np.int32) + 100 * k).reshape(shape)
            wire = "INT32"
        else:
            data = (np.arange(count, dtype=np.float32) + 100 * k).reshape(shape)
            wire = "FP32"
        tensor = module.InferInput(f"INPUT{k}", list(shape), wire)
        tensor.set_data_from_numpy(data)
        tensors.append(tensor)
    try:
        result = clients[protocol].infer(model, tensors)
    except InferenceServerException as error:
        return ("error", str(error.status()), error.message())
    response = result.get_response()
    if protocol == "grpc":
        pairs = [(o.name, o.datatype) for o in response.outputs]
    else:
        pairs = [(o["name"], o["datatype"]) for o in response["outputs"]]
    answer = []
    for name, datatype in sorted(pairs):
        try:
            values = result.as_numpy(name)
        except ValueError as error:  # a shape that does not hold the data
            answer.append((name, datatype, "unreadable", str(error)))
            continue
        answer.append((name, datatype, list(values.shape), repr(values.tolist())))
    return answer


def transcript(server: RunningServer) -> list[Any]:
    clients = {
        "http": httpclient.InferenceServerClient(server.http_url),
        "grpc": grpcclient.InferenceServerClient(server.grpc_url),
    }
    try:
        return [ask(clients, case) for case in CASES]
    finally:
        for client in clients.values():
            client.close()


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    repo = tmp_path_factory.mktemp("qa_reshape") / "repo"
    write_repo(repo)
    return observe_both(repo, transcript)


def case_id(case: Case) -> str:
    protocol, model, shapes = case
    return "-".join([protocol, model, *("x".join(map(str, s)) for s in shapes)])


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case_id(c) for c in CASES])
def test_answer_matches_triton(answers: dict[str, list[Any]], index: int) -> None:
    if "reference" not in answers:
        pytest.skip("TRITONX_REFERENCE_CMD is not set")
    assert answers["tritonx"][index] == answers["reference"][index]


def _answer(answers: dict[str, list[Any]], case: Case) -> Any:
    return answers["tritonx"][CASES.index(case)]


def test_both_sides_of_the_reshape(answers: dict[str, list[Any]]) -> None:
    # [batch, 1] outside, [batch] inside, [batch, 1] back.
    zero = _answer(answers, ("http", "zero_1_float32", ((2, 1),)))
    assert zero[0] == ("OUTPUT0", "FP32", [2, 1], "[[0.0], [1.0]]")
    assert zero[1][3] == "[[b'[2]'], [b'[2]']]"
    # Without batching: [4, 4] -> [16] inside -> [4, 4] back.
    plain = _answer(answers, ("grpc", "nobatch_3_float32", ((4, 4), (2,), (2, 2, 3))))
    assert [o[2] for o in plain[:3]] == [[4, 4], [2], [2, 2, 3]]
    assert plain[3][3] == "[b'[16];[1, 2];[3, 2, 2]']"
    # Inputs reshaped only: the outputs come back in the model's shapes.
    inputs_only = _answer(
        answers,
        ("http", "inputs_only_float32", ((1, 4, 4), (1, 2), (1, 2, 2, 3), (1, 1))),
    )
    assert [o[2] for o in inputs_only[:4]] == [[1, 16], [1, 1, 2], [1, 3, 2, 2], [1, 1]]
    # Variable dims: [2, 4, 3, 6] -> [8, 3, 1, 6] inside -> [2, 4, 3, 6] back.
    var = _answer(answers, ("grpc", "var_1_int32", ((2, 2, 4, 3, 6),)))
    assert var[0][2] == [2, 2, 4, 3, 6]
    assert var[1][3].startswith("[[b'[2, 8, 3, 1, 6]']")
    refused = _answer(answers, ("http", "var_1_int32", ((1, 2, 4, 3, 5),)))
    assert refused[0] == "error"
    # Two variable dims: the request's values fill the reshape's -1s in order
    # ([1, 3, 2] -> [1, 3, 1, 2] inside -> [1, 3, 2] back).
    two = _answer(answers, ("grpc", "two_var_int32", ((1, 3, 3),)))
    assert two[0][2] == [1, 3, 3]
    assert two[1][3] == "[[b'[1, 3, 1, 3]']]"
    # One value too many for the reshape: Triton 2.51 (and its later cores) does
    # not check, and answers [17, 4, 4] over 17 values, which no client can read;
    # tritonx answers the same (the element count fills no -1 here).
    grown = _answer(answers, ("http", "grow_float32", ((1, 4, 4),)))
    assert grown[0][:3] == ("OUTPUT0", "FP32", "unreadable")
