"""BLS in Triton's L0_backend_python/bls QA that tests/bls did not cover yet, as a
differential test: parameters handed down a chain of BLS calls of a model to
itself (bls_parameters), and BLS called from ``initialize`` (the load fails) and
from ``finalize`` (logged at unload). The same requests go to tritonx (in-process
and in stub processes) and to Triton 2.51; every case asserts the same concrete
answers on each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import PYTHON_MODEL_SERVERS, RunningServer, run_python_model_server
from testmodels import write_model
from tritonclient.utils import InferenceServerException

REFUSAL = "BLS is only supported during the 'execute' function."

PARAMS_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "STEPS", data_type: TYPE_UINT8, dims: [ 1 ] } ]
output [ { name: "PARAMS", data_type: TYPE_STRING, dims: [ 1 ] } ]
instance_group [ { count: 4, kind: KIND_CPU } ]
"""

# STEPS = n > 0 adds bool_n, int_n and str_n to the request's parameters and asks
# itself for the rest with n - 1 (by BLS, handing them on); STEPS = 0 answers the
# parameters it got, as JSON.
PARAMS_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            steps = int(pb_utils.get_input_tensor_by_name(request, "STEPS").as_numpy()[0])
            params = json.loads(request.parameters())
            if steps == 0:
                out = np.array([json.dumps(params, sort_keys=True)], dtype=np.object_)
                responses.append(
                    pb_utils.InferenceResponse([pb_utils.Tensor("PARAMS", out)])
                )
                continue
            params[f"bool_{steps}"] = steps % 2 == 1
            params[f"int_{steps}"] = steps * 10
            params[f"str_{steps}"] = f"step {steps}"
            call = pb_utils.InferenceRequest(
                model_name="params_chain",
                inputs=[pb_utils.Tensor("STEPS", np.array([steps - 1], np.uint8))],
                requested_output_names=["PARAMS"],
                parameters=params,
            )
            answer = call.exec()
            if answer.has_error():
                responses.append(pb_utils.InferenceResponse(error=answer.error()))
            else:
                responses.append(pb_utils.InferenceResponse(answer.output_tensors()))
        return responses
"""

SQUARE_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""

SQUARE_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() ** 2)])
            for r in requests
        ]
"""

# Calls "square" by BLS in initialize or in finalize (whichever is named).
OUTSIDE_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


def call_square():
    request = pb_utils.InferenceRequest(
        model_name="square",
        inputs=[pb_utils.Tensor("IN", np.array([3], np.int32))],
        requested_output_names=["OUT"],
    )
    request.exec()


class TritonPythonModel:
    def initialize(self, args):
        if "{hook}" == "initialize":
            call_square()

    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in requests]

    def finalize(self):
        if "{hook}" == "finalize":
            call_square()
"""


@pytest.fixture(scope="module", params=list(PYTHON_MODEL_SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp(f"bls_{request.param}")
    write_model(repo, "params_chain", PARAMS_CONFIG, PARAMS_MODEL)
    write_model(repo, "square", SQUARE_CONFIG, SQUARE_MODEL)
    for hook in ("initialize", "finalize"):
        write_model(
            repo, f"bls_in_{hook}", SQUARE_CONFIG, OUTSIDE_MODEL.replace("{hook}", hook)
        )
    with run_python_model_server(
        request.param,
        repo,
        "--model-control-mode=explicit",
        "--load-model=params_chain",
        "--load-model=square",
    ) as running:
        yield running


def _chain(server: RunningServer, steps: int, parameters: dict[str, Any]) -> Any:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        tensor = grpcclient.InferInput("STEPS", [1], "UINT8")
        tensor.set_data_from_numpy(np.array([steps], np.uint8))
        result = client.infer("params_chain", [tensor], parameters=parameters)
    return json.loads(result.as_numpy("PARAMS")[0])


def test_parameters_handed_down_a_chain_of_bls_calls(server: RunningServer) -> None:
    """Three levels of the model calling itself (it has four instances), each
    adding its parameters to those it got from its caller."""
    expected = {"client": "yes"}
    for step in (1, 2, 3):
        expected |= {
            f"bool_{step}": step % 2 == 1,
            f"int_{step}": step * 10,
            f"str_{step}": f"step {step}",
        }
    assert _chain(server, 3, {"client": "yes"}) == expected
    # No steps: what the client sent comes back as it was.
    assert _chain(server, 0, {"n": 7, "flag": False}) == {"flag": False, "n": 7}


def test_bls_in_initialize_fails_the_load(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as info:
        client.load_model("bls_in_initialize")
    assert REFUSAL in info.value.message()
    assert not client.is_model_ready("bls_in_initialize")
    assert client.is_model_ready("square")
    client.close()


def test_bls_in_finalize_is_refused_and_logged(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    client.load_model("bls_in_finalize")
    assert client.is_model_ready("bls_in_finalize")
    before = server.log_text().count(REFUSAL)  # (the initialize case logs it too)
    client.unload_model("bls_in_finalize")
    wait_until(lambda: server.log_text().count(REFUSAL) > before, "the refusal logged")
    wait_until(
        lambda: not client.is_model_ready("bls_in_finalize"), "the model unloaded"
    )
    # The server serves on.
    tensor = httpclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([5], np.int32))
    assert client.infer("square", [tensor]).as_numpy("OUT").tolist() == [25]
    client.close()
