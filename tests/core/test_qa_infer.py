"""Triton's L0_infer and L0_infer_variable QA on Python-backend models, as a
differential test: add/sub models of many datatype combinations (input, OUTPUT0,
OUTPUT1: the model computes in the input's type and casts to each output's),
batching and not, fixed and variable dims, outputs swapped, a subset of the
outputs, classification mixed with raw outputs, and a model served at versions
1 and 3 only. Every request goes over HTTP (binary and JSON) and gRPC to tritonx
and, when TRITONX_REFERENCE_CMD is set, to Triton 2.51; the answers (datatype,
shape, values, or the error) must be equal case by case.

Left out: the GPU, TensorRT, ONNX, libtorch, OpenVINO and DLPack variants, the
shared-memory runs (tests/sharedmemory) and the ensembles (tests/ensemble)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, observe_both
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# OUTPUT0 = IN0 + IN1 and OUTPUT1 = IN0 - IN1 (swapped when the config says so),
# each cast to its output's datatype; BYTES inputs are read as int32 numbers, as
# in Triton's add_sub QA model.
ADD_SUB = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.types = [
            pb_utils.triton_string_to_numpy(
                pb_utils.get_output_config_by_name(config, name)["data_type"])
            for name in ("OUTPUT0", "OUTPUT1")
        ]
        params = config.get("parameters", {})
        self.swap = "swap" in params
        self.version = int(args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            if a.dtype == np.object_:
                a, b = a.astype(np.int32), b.astype(np.int32)
            add, sub = a + b, a - b
            if self.version > 1:
                add = add + np.array(self.version, dtype=add.dtype)
            if self.swap:
                add, sub = sub, add
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", add.astype(self.types[0])),
                pb_utils.Tensor("OUTPUT1", sub.astype(self.types[1])),
            ]))
        return responses
"""

TYPES = {
    "u": ("TYPE_UINT8", "UINT8", np.uint8),
    "b": ("TYPE_INT8", "INT8", np.int8),
    "s": ("TYPE_INT16", "INT16", np.int16),
    "i": ("TYPE_INT32", "INT32", np.int32),
    "l": ("TYPE_INT64", "INT64", np.int64),
    "h": ("TYPE_FP16", "FP16", np.float16),
    "f": ("TYPE_FP32", "FP32", np.float32),
    "o": ("TYPE_STRING", "BYTES", np.object_),
}

# The datatype combinations of L0_infer's raw tests (input, OUTPUT0, OUTPUT1).
COMBINATIONS = (
    "uuu bbb sss iii lll hhh fff hff bii ibb ibs fuu uff fuh iff fii ihs "
    "ooo oii oio ooi ioo iio ioi"
)

# (model name, types "in/out0/out1", max_batch_size, dims, extra config)
MODELS: list[tuple[str, str, int, str, str]] = [
    *((f"add_sub_{t}", t, 8, "[ 16 ]", "") for t in COMBINATIONS.split()),
    *((f"nobatch_{t}", t, 0, "[ 16 ]", "") for t in ("iii", "fff", "ooo", "ihs")),
    # L0_infer_variable: variable dims, batching and not
    ("var_fff", "fff", 8, "[ -1, -1 ]", ""),
    ("var_iif", "iif", 8, "[ -1 ]", ""),
    ("var_nobatch_ooi", "ooi", 0, "[ -1, -1 ]", ""),
    ("swap_fff", "fff", 8, "[ 16 ]", 'parameters { key: "swap" value { } }'),
    (
        "versioned",
        "iii",
        8,
        "[ 16 ]",
        "version_policy: { specific { versions: [ 1, 3 ] } }",
    ),
]


def config(name: str, types: str, max_batch: int, dims: str, extra: str) -> str:
    tin, t0, t1 = (TYPES[c][0] for c in types)
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch}
input [
  {{ name: "INPUT0" data_type: {tin} dims: {dims} }},
  {{ name: "INPUT1" data_type: {tin} dims: {dims} }}
]
output [
  {{ name: "OUTPUT0" data_type: {t0} dims: {dims}
     label_filename: "output0_labels.txt" }},
  {{ name: "OUTPUT1" data_type: {t1} dims: {dims} }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
{extra}
"""


def write_repo(repo: Path) -> None:
    labels = "".join(f"label{i}\n" for i in range(16))
    for name, types, max_batch, dims, extra in MODELS:
        write_model(repo, name, config(name, types, max_batch, dims, extra), ADD_SUB)
        (repo / name / "output0_labels.txt").write_text(labels)
        if name == "versioned":
            for version in ("2", "3"):
                (repo / name / version).mkdir()
                (repo / name / version / "model.py").write_text(ADD_SUB)


def inputs(types: str, shape: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """IN0 counts up from 1 (with a fraction for floats), IN1 is 3 everywhere:
    differences go negative, so unsigned and narrow outputs wrap."""
    count = int(np.prod(shape))
    kind = types[0]
    first = np.arange(1, count + 1).reshape(shape)
    second = np.full(shape, 3)
    if kind in "hf":
        return (first + 0.25).astype(TYPES[kind][2]), second.astype(TYPES[kind][2])
    if kind == "o":
        as_bytes = np.vectorize(lambda v: str(v).encode(), otypes=[np.object_])
        return as_bytes(first), as_bytes(second)
    return first.astype(TYPES[kind][2]), second.astype(TYPES[kind][2])


# A case: (protocol, model, version, shape, outputs), outputs as
# (name, class_count) pairs or None for all outputs.
Case = tuple[str, str, str, tuple[int, ...], tuple[tuple[str, int], ...] | None]


def cases() -> list[Case]:
    out: list[Case] = []
    for name, types, max_batch, dims, _extra in MODELS:
        if name == "versioned":
            continue
        shape: tuple[int, ...] = (16,)
        if "-1" in dims:  # variable: any shape of the dims' rank
            shape = (2, 8) if dims.count(",") else (12,)
        batches = [(1, *shape), (3, *shape)] if max_batch else [shape]
        for full in batches:
            out.append(("http", name, "", full, None))
            out.append(("grpc", name, "", full, None))
        first = batches[-1]
        out.append(("json", name, "", first, None))
        out.append(("grpc", name, "", first, (("OUTPUT0", 0),)))
        out.append(("http", name, "", first, (("OUTPUT1", 0),)))
        # Classification of a BYTES output crashes Triton 2.51 (tritonx refuses
        # it: tests/outputs/test_outputs.py); L0_infer classifies numbers only.
        if types[1] != "o":
            out.append(("http", name, "", first, (("OUTPUT0", 3), ("OUTPUT1", 0))))
        if "o" not in types[1:]:
            out.append(("grpc", name, "", first, (("OUTPUT0", 2), ("OUTPUT1", 2))))
        if types[2] != "o":
            out.append(("json", name, "", first, (("OUTPUT1", 1),)))
    for version in ("", "1", "2", "3", "4"):
        for protocol in ("http", "grpc"):
            out.append((protocol, "versioned", version, (2, 16), None))
    return out


CASES = cases()


def _types(model: str) -> str:
    return next(t for name, t, *_ in MODELS if name == model)


def ask(server: RunningServer, clients: dict[str, Any], case: Case) -> Any:
    """The answer to one case: each output's (name, datatype, shape, values), or
    the error's status and message."""
    protocol, model, version, shape, wanted = case
    module: Any = grpcclient if protocol == "grpc" else httpclient
    binary = protocol == "http"
    dtype = TYPES[_types(model)[0]][1]
    tensors = []
    for name, data in zip(
        ("INPUT0", "INPUT1"), inputs(_types(model), list(shape)), strict=True
    ):
        tensor = module.InferInput(name, list(shape), dtype)
        if protocol == "grpc":
            tensor.set_data_from_numpy(data)
        else:
            tensor.set_data_from_numpy(data, binary_data=binary)
        tensors.append(tensor)
    requested = None
    if wanted is not None:
        requested = []
        for name, classes in wanted:
            if protocol == "grpc":
                requested.append(module.InferRequestedOutput(name, class_count=classes))
            else:
                requested.append(
                    module.InferRequestedOutput(
                        name, binary_data=binary, class_count=classes
                    )
                )
    client = clients[protocol]
    try:
        result = client.infer(model, tensors, model_version=version, outputs=requested)
    except InferenceServerException as error:
        return ("error", str(error.status()), error.message())
    response = result.get_response()
    if protocol == "grpc":
        names = [o.name for o in response.outputs]
        dtypes = [o.datatype for o in response.outputs]
    else:
        names = [o["name"] for o in response["outputs"]]
        dtypes = [o["datatype"] for o in response["outputs"]]
    answer = []
    for name, datatype in sorted(zip(names, dtypes, strict=True)):
        values = result.as_numpy(name)
        answer.append((name, datatype, list(values.shape), repr(values.tolist())))
    return answer


def transcript(server: RunningServer) -> list[Any]:
    clients = {
        "http": httpclient.InferenceServerClient(server.http_url),
        "json": httpclient.InferenceServerClient(server.http_url),
        "grpc": grpcclient.InferenceServerClient(server.grpc_url),
    }
    try:
        return [ask(server, clients, case) for case in CASES]
    finally:
        for client in clients.values():
            client.close()


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    repo = tmp_path_factory.mktemp("qa_infer") / "repo"
    write_repo(repo)
    return observe_both(repo, transcript)


def case_id(case: Case) -> str:
    protocol, model, version, shape, wanted = case
    parts = [protocol, model, "x".join(map(str, shape))]
    if version:
        parts.append(f"v{version}")
    if wanted:
        parts.append("+".join(f"{n[-1]}c{c}" for n, c in wanted))
    return "-".join(parts)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[case_id(c) for c in CASES])
def test_answer_matches_triton(answers: dict[str, list[Any]], index: int) -> None:
    if "reference" not in answers:
        pytest.skip("TRITONX_REFERENCE_CMD is not set")
    assert answers["tritonx"][index] == answers["reference"][index]


def _find(answers: dict[str, list[Any]], match: Callable[[Case], bool]) -> Any:
    index = next(i for i, c in enumerate(CASES) if match(c))
    return answers["tritonx"][index]


def test_casts_wrap_and_strings_become_numbers(answers: dict[str, list[Any]]) -> None:
    # uint8: 1 - 3 wraps to 254; the sum keeps its type.
    uuu = _find(answers, lambda c: c[:4] == ("http", "add_sub_uuu", "", (1, 16)))
    assert uuu[0][:3] == ("OUTPUT0", "UINT8", [1, 16])
    assert uuu[1][3].startswith("[[254, 255, 0, 1,")
    # int32 sums written as BYTES: their decimal text.
    ioo = _find(answers, lambda c: c[:4] == ("grpc", "add_sub_ioo", "", (1, 16)))
    assert ioo[0][1] == "BYTES"
    assert ioo[0][3].startswith("[[b'4', b'5',")
    # BYTES in, numbers out: the strings were read as integers.
    oii = _find(answers, lambda c: c[:4] == ("json", "add_sub_oii", "", (3, 16)))
    assert oii[1][:3] == ("OUTPUT1", "INT32", [3, 16])
    assert oii[1][3].startswith("[[-2, -1, 0,")


def test_subsets_classes_and_versions(answers: dict[str, list[Any]]) -> None:
    only1 = _find(
        answers,
        lambda c: c[1] == "add_sub_fff" and c[4] == (("OUTPUT1", 0),),
    )
    assert [o[0] for o in only1] == ["OUTPUT1"]
    classes = _find(
        answers,
        lambda c: (
            c[0] == "http"
            and c[1] == "add_sub_fff"
            and c[4] == (("OUTPUT0", 3), ("OUTPUT1", 0))
        ),
    )
    assert classes[0][:3] == ("OUTPUT0", "BYTES", [3, 3])
    assert classes[0][3].startswith("[[b'19.250000:15:label15', b'18.250000:14:")
    swapped = _find(answers, lambda c: c[:4] == ("http", "swap_fff", "", (1, 16)))
    assert swapped[0][3].startswith("[[-1.75, -0.75,")
    versions = [
        _find(answers, lambda c, v=v: c[:3] == ("http", "versioned", v))
        for v in ("", "1", "2", "4")
    ]
    assert versions[0][0][3].startswith("[[7, 8,")  # latest served: 3
    assert versions[1][0][3].startswith("[[4, 5,")
    assert versions[2][0] == "error"
    assert "unavailable" in versions[2][2] or "unknown" in versions[2][2]
