"""Decoupled models that forward the responses of a decoupled BLS call, after
Triton's L0_backend_python/decoupled QA (decoupled_bls, decoupled_bls_stream), as
a differential test: the call made from a thread the model starts (execute
returns at once) or from execute itself, several requests on one stream, a
request that gets no response but FINAL. The same requests go to tritonx
(in-process and in stub processes) and to Triton 2.51; every case asserts the
same concrete answers on each.

Left out: an error response from the called model, which Triton 2.51's decoupled
BLS iterator never ends (tests/bls/test_bls_differential.py)."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serverutil import PYTHON_MODEL_SERVERS, RunningServer, run_python_model_server
from testmodels import write_model

CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
model_transaction_policy { decoupled: true }
"""

# IN = n: n responses OUT = n, then FINAL alone.
REPEAT = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            sender = request.get_response_sender()
            for _ in range(int(value[0])):
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value)]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

# Calls "repeat" with its request's IN (decoupled) and sends each OUT on, then
# FINAL, or an error response with FINAL if the count is not IN. THREADED: from a
# thread of its own per request; else from execute.
FORWARD = """
import threading

import triton_python_backend_utils as pb_utils

THREADED = {threaded}


def forward(sender, value):
    call = pb_utils.InferenceRequest(
        model_name="repeat",
        inputs=[pb_utils.Tensor("IN", value)],
        requested_output_names=["OUT"],
    )
    count = 0
    for response in call.exec(decoupled=True):
        out = pb_utils.get_output_tensor_by_name(response, "OUT")
        if out is not None:
            count += 1
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out.as_numpy())]))
    if count != int(value[0]):
        sender.send(
            pb_utils.InferenceResponse(error=pb_utils.TritonError(f"got {{count}}")),
            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
        )
    else:
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            sender = request.get_response_sender()
            if THREADED:
                thread = threading.Thread(target=forward, args=(sender, value))
                thread.start()
                self.threads.append(thread)
            else:
                forward(sender, value)
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join()
"""


@pytest.fixture(scope="module", params=list(PYTHON_MODEL_SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp(f"decoupled_bls_{request.param}")
    write_model(repo, "repeat", CONFIG, REPEAT)
    write_model(repo, "forward_thread", CONFIG, FORWARD.format(threaded=True))
    write_model(repo, "forward_inline", CONFIG, FORWARD.format(threaded=False))
    with run_python_model_server(request.param, repo) as running:
        yield running


def _stream(server: RunningServer, model: str, values: list[int]) -> dict[str, Any]:
    """Sends IN = each value (request id = its index) on one stream; per request
    id, the OUT values it got and whether its last response was an empty FINAL."""
    answers: queue.Queue[Any] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for index, value in enumerate(values):
        tensor = grpcclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], np.int32))
        client.async_stream_infer(
            model, [tensor], request_id=str(index), enable_empty_final_response=True
        )
    got: dict[str, Any] = {str(i): [] for i in range(len(values))}
    open_ids = set(got)
    while open_ids:
        result, error = answers.get(timeout=60)
        # The message shows in the failure (conftest skips the reference's stub
        # failing under load by it).
        assert error is None, f"request failed: {error}"
        response = result.get_response()
        out = result.as_numpy("OUT")
        if out is not None:
            got[response.id].append(int(out[0]))
        if response.parameters["triton_final_response"].bool_param:
            got[response.id].append("FINAL" if out is None else "FINAL+OUT")
            open_ids.discard(response.id)
    client.stop_stream()
    client.close()
    return got


@pytest.mark.parametrize("model", ["forward_thread", "forward_inline"])
def test_forwarded_bls_responses(server: RunningServer, model: str) -> None:
    assert _stream(server, model, [4, 2, 0, 1]) == {
        "0": [4, 4, 4, 4, "FINAL"],
        "1": [2, 2, "FINAL"],
        "2": ["FINAL"],  # no response from the called model: FINAL alone
        "3": [1, "FINAL"],
    }


def test_the_called_model_directly(server: RunningServer) -> None:
    assert _stream(server, "repeat", [3, 0]) == {
        "0": [3, 3, 3, "FINAL"],
        "1": ["FINAL"],
    }
