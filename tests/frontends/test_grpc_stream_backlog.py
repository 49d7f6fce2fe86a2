"""A gRPC stream whose client stops reading: the server queues the decoupled model's
responses for it (as Triton 2.51 does: HTTP/2 flow control holds them back), and
once the client goes the memory they took goes back to the OS, not only to the
allocator. Before, a client that asked for 300 x 1 MB responses and never read them
left the server's resident size ~300 MB higher for good (Triton 2.51: the same, and
a second such client added as much again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from serverutil import RunningServer, run_server
from testmodels import write_model
from tritonclient.grpc import service_pb2, service_pb2_grpc

pytestmark = pytest.mark.timeout(180)

MIB = 1 << 20

BIG = """
name: "big"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_UINT8, dims: [ -1 ] } ]
"""
# IN[0] responses of 1 MiB each.
BIG_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            sender = request.get_response_sender()
            for i in range(count):
                out = pb_utils.Tensor("OUT", np.full(1 << 20, i % 256, np.uint8))
                sender.send(pb_utils.InferenceResponse([out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("backlog")
    write_model(repo, "big", BIG, BIG_MODEL)
    with run_server(repo) as running:
        yield running


def _request(count: int) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="big")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "IN", "INT32"
    tensor.shape.append(1)
    request.raw_input_contents.append(np.array([count], np.int32).tobytes())
    return request


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False


def test_memory_of_an_unread_backlog_goes_back_to_the_os(server: RunningServer) -> None:
    process = psutil.Process(server.process.pid)

    def rss() -> int:
        return int(process.memory_info().rss)

    # A first, read stream warms the paths up before the baseline.
    client = grpcclient.InferenceServerClient(server.grpc_url)
    received: list[object] = []
    client.start_stream(callback=lambda result, error: received.append(error or result))
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([4], np.int32))
    client.async_stream_infer("big", [tensor])
    assert _wait_for(lambda: len(received) == 4, 60), received
    client.stop_stream()
    time.sleep(2)
    baseline = rss()

    channel = grpc.insecure_channel(
        server.grpc_url, options=[("grpc.max_receive_message_length", -1)]
    )
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    call = stub.ModelStreamInfer(iter([_request(300)]))  # never read
    try:
        assert _wait_for(lambda: rss() - baseline > 200 * MIB, 60), (
            f"the backlog did not build up: +{(rss() - baseline) // MIB} MiB"
        )
    finally:
        call.cancel()
        channel.close()
    # Handed back about 1.5 s after the stream ends.
    assert _wait_for(lambda: rss() - baseline < 64 * MIB, 30), (
        f"RSS stayed {(rss() - baseline) // MIB} MiB above the baseline"
    )
    # And the server serves streams as before.
    received.clear()
    client.start_stream(callback=lambda result, error: received.append(error or result))
    client.async_stream_infer("big", [tensor])
    assert _wait_for(lambda: len(received) == 4, 60), received
    assert all(not isinstance(r, Exception) for r in received), received
    client.stop_stream()
    client.close()
