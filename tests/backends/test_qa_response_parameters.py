"""Response parameters set by Python models, after Triton's
L0_backend_python/parameters QA: the parameters clients see over gRPC and HTTP
(returned, sent from a decoupled model, read back by a BLS caller) and the errors
of parameters that pb_utils refuses.

tritonx only, not differential: Triton 2.51's ``InferenceResponse`` takes no
``parameters`` (its constructor refuses the keyword); tritonx supports them as
later Tritons do (docs/backends.md), so the expectations are those of the
upstream QA, which later Tritons pass. (A list instead of a dict is left out:
the QA checks only part of that text.)"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_server
from testmodels import write_model
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "PARAMS", data_type: TYPE_STRING, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT", data_type: TYPE_STRING, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{extra}
"""

# PARAMS: JSON of the parameters to set (keys made only of digits become ints);
# a list of them for the decoupled model (one response each). What pb_utils
# refuses becomes an INVALID_ARG error response with its text.
COMMON = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


def parameters_of(request):
    text = pb_utils.get_input_tensor_by_name(request, "PARAMS").as_numpy()
    value = json.loads(text.reshape(-1)[0])
    if isinstance(value, dict):
        value = {int(k) if k.isdigit() else k: v for k, v in value.items()}
    return value


def response(parameters):
    out = pb_utils.Tensor("OUTPUT", np.array([[json.dumps(parameters)]], np.object_))
    try:
        return pb_utils.InferenceResponse([out], parameters=parameters)
    except Exception as e:
        error = pb_utils.TritonError(str(e), pb_utils.TritonError.INVALID_ARG)
        return pb_utils.InferenceResponse(error=error)
"""

RETURNING_MODEL = (
    COMMON
    + """

class TritonPythonModel:
    def execute(self, requests):
        return [response(parameters_of(request)) for request in requests]
"""
)

SENDING_MODEL = (
    COMMON
    + """

class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            for parameters in parameters_of(request):
                sender.send(response(parameters))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""
)

# Calls the returning model (PARAMS as given) and the sending one (a list), and
# answers with what the BLS responses' parameters() said, as a JSON list.
BLS_MODEL = (
    COMMON
    + """

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            params = pb_utils.get_input_tensor_by_name(request, "PARAMS")
            seen = []
            for model, decoupled in (("returning", False), ("sending", True)):
                tensor = params
                if decoupled:
                    text = json.dumps([json.loads(params.as_numpy().reshape(-1)[0])])
                    tensor = pb_utils.Tensor("PARAMS", np.array([[text]], np.object_))
                call = pb_utils.InferenceRequest(
                    model_name=model,
                    inputs=[tensor],
                    requested_output_names=["OUTPUT"],
                )
                answers = call.exec(decoupled=decoupled)
                for answer in [answers] if not decoupled else answers:
                    if answer.has_error():
                        seen.append(["error", answer.error().message()])
                    else:
                        seen.append(["ok", answer.parameters()])
            text = json.dumps(seen)
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT", np.array([[text]], np.object_))]))
        return out
"""
)

ACCEPTED = [
    {},
    {"many_elements": False},
    {"bool": True, "str": "Hello World!", "int": 1024},
    {"a": "1", "b": "2", "c": 3, "d": False, "e": 5, "f": ""},
    {"big": 2**62, "negative": -7, "unicode": "\u00e9\U0001f600"},
]

REFUSED = {
    "int key": {"1": "int key"},
    "float": {"int": 2, "float": 0.5},
    "null": {"bool": True, "null": None},
    "nested": {"str": "", "list": ["variable"]},
}

# The text pb_utils gives each refusal (the upstream QA's words).
REFUSED_TEXT = {
    "int key": "Expect parameters keys to have type str, found type <class 'int'>",
    "float": "Expect parameters values to have type bool/int/str, found type "
    "<class 'float'>",
    "null": "Expect parameters values to have type bool/int/str, found type "
    "<class 'NoneType'>",
    "nested": "Expect parameters values to have type bool/int/str, found type "
    "<class 'list'>",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_response_parameters") / "repo"
    write_model(
        root, "returning", CONFIG.format(name="returning", extra=""), RETURNING_MODEL
    )
    write_model(
        root,
        "sending",
        CONFIG.format(
            name="sending", extra="model_transaction_policy { decoupled: true }"
        ),
        SENDING_MODEL,
    )
    write_model(root, "bls", CONFIG.format(name="bls", extra=""), BLS_MODEL)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server([repo]) as running:
        yield running


def _grpc_parameters(response: Any) -> dict[str, Any]:
    seen = {}
    for key, value in response.parameters.items():
        kind = value.WhichOneof("parameter_choice")
        seen[key] = (kind, getattr(value, kind))
    return seen


def _typed(parameters: dict[str, Any]) -> dict[str, Any]:
    kinds = {bool: "bool_param", int: "int64_param", str: "string_param"}
    return {k: (kinds[type(v)], v) for k, v in parameters.items()}


def _params_input(module: Any, value: Any) -> list[Any]:
    data = np.array([[json.dumps(value)]], dtype=np.object_)
    inputs = [module.InferInput("PARAMS", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(data)
    return inputs


@pytest.mark.parametrize("index", range(len(ACCEPTED)))
def test_returned_response_parameters(server: RunningServer, index: int) -> None:
    parameters = ACCEPTED[index]
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer("returning", _params_input(grpcclient, parameters))
    assert _grpc_parameters(result.get_response()) == _typed(parameters)
    assert result.as_numpy("OUTPUT").tolist() == [[json.dumps(parameters).encode()]]
    with httpclient.InferenceServerClient(server.http_url) as client:
        result = client.infer("returning", _params_input(httpclient, parameters))
    response = result.get_response()
    if parameters:
        assert response["parameters"] == parameters
    else:
        assert "parameters" not in response


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_response_parameters(server: RunningServer, case: str) -> None:
    grpc_client = grpcclient.InferenceServerClient(server.grpc_url)
    http_client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as grpc_error:
        grpc_client.infer("returning", _params_input(grpcclient, REFUSED[case]))
    with pytest.raises(InferenceServerException) as http_error:
        http_client.infer("returning", _params_input(httpclient, REFUSED[case]))
    grpc_client.close()
    http_client.close()
    assert (grpc_error.value.status(), grpc_error.value.message()) == (
        "StatusCode.INVALID_ARGUMENT",
        REFUSED_TEXT[case],
    )
    assert (http_error.value.status(), http_error.value.message()) == (
        "400",
        REFUSED_TEXT[case],
    )


def test_sent_response_parameters(server: RunningServer) -> None:
    """Each sent response carries its parameters, plus triton_final_response
    (false: FINAL comes alone, as an empty response the client does not see)."""
    plan = [{"bool": False, "int": 2048}, {"str": "Hello World!"}, {}]
    got: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.start_stream(callback=lambda result, error: got.put((result, error)))
        client.async_stream_infer("sending", _params_input(grpcclient, plan))
        seen = []
        for _ in plan:
            result, error = got.get(timeout=60)
            assert error is None
            seen.append(_grpc_parameters(result.get_response()))
    finally:
        client.stop_stream()
        client.close()
    assert got.empty()
    final = {"triton_final_response": ("bool_param", False)}
    assert seen == [_typed(p) | final for p in plan]


def test_bls_responses_carry_the_parameters(server: RunningServer) -> None:
    parameters = {"bool": False, "int": 2048, "str": "Hello World!"}
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer("bls", _params_input(grpcclient, parameters))
    seen = json.loads(result.as_numpy("OUTPUT").reshape(-1)[0])
    # parameters() is JSON text; the decoupled call also ends with the empty
    # FINAL response (no parameters: "{}")
    decoded = [[kind, json.loads(text)] for kind, text in seen]
    assert decoded == [["ok", parameters], ["ok", parameters], ["ok", {}]]


def test_bls_responses_with_refused_parameters(server: RunningServer) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer("bls", _params_input(grpcclient, {"x": 0.5}))
    text = REFUSED_TEXT["float"]
    assert json.loads(result.as_numpy("OUTPUT").reshape(-1)[0]) == [
        ["error", text],
        ["error", text],
        ["ok", "{}"],
    ]
