"""Which inputs a request names: duplicates, too many, too few, unknown ones. Each
refusal is Triton 2.51's, word for word (its order of checks, its list of the given
names in its own hash-map order, its "]" for an empty missing list), on HTTP and
gRPC. The same expectations run against the real Triton when
TRITONX_REFERENCE_CMD is given."""

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
CASES: list[tuple[str, list[str], str]] = [
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
]
IDS = [f"{model}:{','.join(names) or 'none'}" for model, names, _ in CASES]


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("names") / "repo"
    for name, config in (("pair", PAIR), ("opt", OPTIONAL)):
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
    server: RunningServer, model: str, names: list[str]
) -> tuple[int, bytes]:
    """The status and the raw body of the answer (Triton's bytes, compact JSON)."""
    inputs = [
        {"name": n, "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}
        for n in names
    ]
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
    server: RunningServer, model: str, names: list[str], message: str
) -> None:
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    assert _http_error(server, model, names) == (400, body)


def _grpc_inputs(names: list[str]) -> list[grpcclient.InferInput]:
    """FP32 [4] inputs holding 0, 1, 2, 3, named ``names``."""
    inputs = []
    for name in names:
        tensor = grpcclient.InferInput(name, [4], "FP32")
        tensor.set_data_from_numpy(np.arange(4, dtype=np.float32))
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize(("model", "names", "message"), CASES, ids=IDS)
def test_grpc(
    server: RunningServer, model: str, names: list[str], message: str
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
