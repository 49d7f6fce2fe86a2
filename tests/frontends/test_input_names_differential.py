"""Which inputs a request names: duplicates, too many, too few, unknown ones. Each
refusal is Triton 2.51's, word for word (its order of checks, its list of the given
names and its choice among unknown ones in its own hash-map order, its "]" for an
empty missing list), on HTTP and gRPC. The same expectations run against the real
Triton when TRITONX_REFERENCE_CMD is given."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serverutil import RunningServer, reference_command, run_reference, run_server
from tritonclient.utils import InferenceServerException

PAIR = """
name: "pair"
backend: "python"
max_batch_size: 0
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
OPTIONAL = """
name: "opt"
backend: "python"
max_batch_size: 0
input [
  { name: "A" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "B" data_type: TYPE_FP32 dims: [ 4 ] optional: true }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
BATCHED = """
name: "batched"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
# OUTPUT0 = the first input the model knows.
MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0")
            x = x or pb_utils.get_input_tensor_by_name(r, "A")
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", x.as_numpy())]))
        return out
"""

ID = "[request id: <id_unknown>] "
ASK = ". Please provide all required input(s)."
# An input: its name, FP32 [4]; or its name and shape.
Named = str | tuple[str, list[int]]
CASES: list[tuple[str, list[Named], str]] = [
    ("pair", ["INPUT0", "INPUT0"], ID + "input 'INPUT0' already exists in request"),
    (
        "pair",
        ["EXTRA", "INPUT1", "INPUT1"],
        ID + "input 'INPUT1' already exists in request",
    ),
    (
        "pair",
        ["INPUT0", "INPUT1", "EXTRA"],
        ID + "expected 2 inputs but got 3 inputs for model 'pair'. Got input(s) "
        "['EXTRA','INPUT1','INPUT0'], but missing required input(s) ]" + ASK,
    ),
    (
        "pair",
        ["INPUT1", "INPUT0", "ZZ", "AA"],
        ID + "expected 2 inputs but got 4 inputs for model 'pair'. Got input(s) "
        "['AA','ZZ','INPUT0','INPUT1'], but missing required input(s) ]" + ASK,
    ),
    (
        "pair",
        ["EXTRA"],
        ID + "expected 2 inputs but got 1 inputs for model 'pair'. Got input(s) "
        "['EXTRA'], but missing required input(s) ['INPUT0','INPUT1']" + ASK,
    ),
    (
        "pair",
        ["INPUT0", "EXTRA"],
        "unexpected inference input 'EXTRA' for model 'pair'",
    ),
    (
        "opt",
        [],
        ID + "expected number of inputs between 1 and 2 but got 0 inputs for model "
        "'opt'. Got input(s) [], but missing required input(s) ['A']" + ASK,
    ),
    (
        "opt",
        ["A", "B", "C"],
        ID + "expected number of inputs between 1 and 2 but got 3 inputs for model "
        "'opt'. Got input(s) ['B','C','A'], but missing required input(s) ]" + ASK,
    ),
    (
        "opt",
        ["C", "D", "E"],
        ID + "expected number of inputs between 1 and 2 but got 3 inputs for model "
        "'opt'. Got input(s) ['E','D','C'], but missing required input(s) ['A']" + ASK,
    ),
    ("opt", ["A", "C"], "unexpected inference input 'C' for model 'opt'"),
    # Of several unknown inputs, the first in Triton's hash-map order is named.
    ("pair", ["OUTPUT0", "x"], "unexpected inference input 'x' for model 'pair'"),
    ("pair", ["x", "OUTPUT0"], "unexpected inference input 'OUTPUT0' for model 'pair'"),
    ("opt", ["C", "D"], "unexpected inference input 'D' for model 'opt'"),
    # The names and the batch dims are checked in one walk, in that order.
    (
        "batched",
        [("INPUT0", [2, 4]), ("INPUT1", [3, 4])],
        ID + "input 'INPUT0' batch size does not match other inputs for 'batched'",
    ),
    (
        "batched",
        [("INPUT1", [2, 4]), ("INPUT0", [3, 4])],
        ID + "input 'INPUT1' batch size does not match other inputs for 'batched'",
    ),
    (
        "batched",
        [("x", [1, 4]), ("INPUT0", [])],
        ID + "input 'INPUT0' has no shape but model requires batch dimension for "
        "'batched'",
    ),
    (
        "batched",
        [("INPUT0", []), ("x", [1, 4])],
        "unexpected inference input 'x' for model 'batched'",
    ),
]


def _shape(named: Named) -> tuple[str, list[int]]:
    return (named, [4]) if isinstance(named, str) else named


IDS = [
    f"{model}:{','.join(_shape(n)[0] for n in names) or 'none'}"
    for model, names, _ in CASES
]


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("names") / "repo"
    for name, config in (("pair", PAIR), ("opt", OPTIONAL), ("batched", BATCHED)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(MODEL)
    if request.param == "reference":
        if reference_command() is None:
            pytest.skip("TRITONX_REFERENCE_CMD is not set")
        with run_reference([repo]) as running:
            yield running
    else:
        with run_server(Path(repo)) as running:
            yield running


def _http_error(
    server: RunningServer, model: str, names: list[Named]
) -> tuple[int, bytes]:
    """The status and the raw body of the answer (Triton's bytes, compact JSON)."""
    inputs = []
    for name, shape in map(_shape, names):
        data = np.arange(np.prod(shape), dtype=np.float32).tolist()
        inputs.append({"name": name, "shape": shape, "datatype": "FP32", "data": data})
    host, port = server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST",
            f"/v2/models/{model}/infer",
            body=json.dumps({"inputs": inputs}),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("model", "names", "message"), CASES, ids=IDS)
def test_http(
    server: RunningServer, model: str, names: list[Named], message: str
) -> None:
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    assert _http_error(server, model, names) == (400, body)


def _grpc_inputs(names: list[Named]) -> list[grpcclient.InferInput]:
    """FP32 inputs holding 0, 1, 2, ..., named and shaped as ``names`` says."""
    inputs = []
    for name, shape in map(_shape, names):
        tensor = grpcclient.InferInput(name, shape, "FP32")
        data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize(("model", "names", "message"), CASES, ids=IDS)
def test_grpc(
    server: RunningServer, model: str, names: list[Named], message: str
) -> None:
    inputs = _grpc_inputs(names)
    with (
        grpcclient.InferenceServerClient(server.grpc_url) as client,
        pytest.raises(InferenceServerException) as raised,
    ):
        client.infer(model, inputs)
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert raised.value.message() == message


def test_the_right_names_are_served(server: RunningServer) -> None:
    """The same server answers well-formed requests (optional input left out too)."""
    for model, names in (("pair", ["INPUT1", "INPUT0"]), ("opt", ["A"])):
        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            result = client.infer(model, _grpc_inputs(names))
        assert result.as_numpy("OUTPUT0").tolist() == [0.0, 1.0, 2.0, 3.0]
