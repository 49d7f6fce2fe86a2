"""A gRPC stream whose client stops reading: the server queues the decoupled model's
responses for it (as Triton 2.51 does: HTTP/2 flow control holds them back) up to
--grpc-max-stream-backlog-bytes, past which it cancels the stream (Triton has no
bound), and once the client goes the memory they took goes back to the OS, not only
to the allocator. Before, a client that asked for 300 x 1 MB responses and never read them
left the server's resident size ~300 MB higher for good (Triton 2.51: the same, and
a second such client added as much again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


# Sends IN[0] responses of 1 MiB until its request is cancelled, then logs how many
# it sent to the file "sent" beside its config.
COUNTED_MODEL = """
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.log = os.path.join(args["model_repository"], "sent")

    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            sender = request.get_response_sender()
            sent = 0
            while sent < count and not sender.is_cancelled():
                out = pb_utils.Tensor("OUT", np.full(1 << 20, sent % 256, np.uint8))
                sender.send(pb_utils.InferenceResponse([out]))
                sent += 1
            with open(self.log, "a") as log:
                log.write(f"{sent} {sender.is_cancelled()}\\n")
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def test_a_stream_whose_client_stops_reading_is_cancelled_at_the_bound(
    tmp_path: Path,
) -> None:
    """--grpc-max-stream-backlog-bytes: once 16 MiB of responses wait behind the one
    being written, the stream is cancelled with its request, the model sees the
    cancellation and stops, and other clients are served as before. Unbounded (as
    Triton), the 2,000 responses asked for would have taken ~2 GB."""
    write_model(tmp_path, "big", BIG, COUNTED_MODEL)
    sent_log = tmp_path / "big" / "sent"
    with run_server(tmp_path, f"--grpc-max-stream-backlog-bytes={16 * MIB}") as server:
        channel = grpc.insecure_channel(
            server.grpc_url, options=[("grpc.max_receive_message_length", -1)]
        )
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelStreamInfer(iter([_request(2000)]))  # never read
        try:
            assert _wait_for(sent_log.exists, 60), server.log_text()
            sent, cancelled = sent_log.read_text().split()
            assert cancelled == "True" and int(sent) < 500, (sent, cancelled)
            # Reading now, the client gets what had reached it before the
            # cancellation (no more than flow control let through), then the end.
            read = 0
            with pytest.raises(grpc.RpcError) as ended:
                for _ in call:
                    read += 1
            assert ended.value.code() == grpc.StatusCode.CANCELLED
            assert read < int(sent), (read, sent)
        finally:
            call.cancel()
            channel.close()
        log = server.log_text()
        assert "--grpc-max-stream-backlog-bytes 16777216): stream cancelled" in log, log
        assert "ModelStreamInfer from ipv4:127.0.0.1:" in log, log

        # Another client gets every response, on the same server. (Fewer than the
        # bound: the bound counts what waits, however fast the client reads, so a
        # client slower than its model by more than the bound is cancelled too.)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        received: list[object] = []
        client.start_stream(
            callback=lambda result, error: received.append(error or result)
        )
        tensor = grpcclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([8], np.int32))
        client.async_stream_infer("big", [tensor])
        assert _wait_for(lambda: len(received) == 8, 60), received
        assert all(not isinstance(r, Exception) for r in received), received
        client.stop_stream()
        client.close()
