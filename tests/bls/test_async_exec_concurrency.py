"""``await request.async_exec(decoupled=True)`` completes at the first response, as
Triton's does, so that a plain ``for`` over the responses does not hold up the
instance's event loop, where its other executes run meanwhile.

``gather`` (decoupled, async) answers each request only once two have arrived (or
after 20 s, alone); ``caller`` (decoupled, async) forwards each of its requests to
``gather`` by BLS. Two requests to ``caller`` are answered "2" only when the second
execute's BLS call was made while the first one waited for its response.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from serverutil import RunningServer, run_server

IO = """
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "SEEN", data_type: TYPE_INT32, dims: [ 1 ] } ]
model_transaction_policy { decoupled: true }
"""

GATHER = """
import asyncio
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    arrived = 0

    async def execute(self, requests):
        TritonPythonModel.arrived += len(requests)
        for _ in range(2000):  # 20 s at most
            if TritonPythonModel.arrived >= 2:
                break
            await asyncio.sleep(0.01)
        seen = np.array([TritonPythonModel.arrived], np.int32)
        for request in requests:
            request.get_response_sender().send(
                pb_utils.InferenceResponse([pb_utils.Tensor("SEEN", seen)]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""

CALLER = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        for request in requests:
            call = pb_utils.InferenceRequest(
                model_name="gather",
                inputs=[pb_utils.get_input_tensor_by_name(request, "IN")],
                requested_output_names=["SEEN"])
            responses = await call.async_exec(decoupled=True)
            sender = request.get_response_sender()
            for response in responses:  # a plain for, on the loop's thread
                seen = pb_utils.get_output_tensor_by_name(response, "SEEN")
                if seen is not None:
                    sender.send(pb_utils.InferenceResponse([seen]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""


@pytest.fixture(scope="module", params=["in-process", "process"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    for name, source in (("gather", GATHER), ("caller", CALLER)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(
            f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n{IO}'
        )
        (repo / name / "1" / "model.py").write_text(source)
    mode = f"--backend-config=python,execution-mode={request.param}"
    with run_server([repo], mode) as running:
        yield running


def test_two_executes_wait_for_their_calls_at_once(server: RunningServer) -> None:
    import tritonclient.grpc as grpcclient

    got: queue.Queue[Any] = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        client.start_stream(
            callback=lambda result, error: got.put(error or result.as_numpy("SEEN"))
        )
        for _ in range(2):
            tensor = grpcclient.InferInput("IN", [1], "INT32")
            tensor.set_data_from_numpy(np.array([1], np.int32))
            client.async_stream_infer("caller", [tensor])
        client.stop_stream()
    answers = [got.get_nowait() for _ in range(got.qsize())]
    assert [int(a[0]) for a in answers] == [2, 2], answers
