"""gRPC streaming, cancellation and shutdown against the real ``tritonclient.grpc``
(sync and aio); the harness is tests/grpcutil.py."""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from grpcutil import (
    Harness,
    expect_error,
    fp32_input,
    make_input,
)
from tritonclient.grpc import service_pb2, service_pb2_grpc

# -- streaming ---------------------------------------------------------------------------


def _collect_stream(
    client: grpcclient.InferenceServerClient,
    sends: list[dict],
    expected: int,
    timeout: float = 20.0,
) -> list[tuple]:
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for send in sends:
            client.async_stream_infer(**send)
        out = [results.get(timeout=timeout) for _ in range(expected)]
    finally:
        client.stop_stream()
    return out


def test_stream_infer_with_errors_mid_stream(
    client: grpcclient.InferenceServerClient,
) -> None:
    sends = [
        {"model_name": "identity", "inputs": [fp32_input()], "request_id": "a"},
        {"model_name": "nosuch", "inputs": [fp32_input()], "request_id": "b"},
        {
            "model_name": "identity",
            "inputs": [fp32_input()],
            "request_id": "c",
            "parameters": {"fail": "bad input"},
        },
        {
            "model_name": "identity",
            "inputs": [make_input("INPUT0", np.ones(3, np.float32))],
            "request_id": "d",
        },
        {"model_name": "identity", "inputs": [fp32_input()], "request_id": "e"},
    ]
    out = _collect_stream(client, sends, expected=5)
    ids = sorted(r.get_response().id for r, e in out if e is None)
    errors = sorted(str(e.message()) for r, e in out if e is not None)
    assert ids == ["a", "e"]
    assert len(errors) == 3
    assert "Request for unknown model: 'nosuch' is not found" in errors
    assert "bad input" in errors


def test_stream_out_of_order_completion(
    client: grpcclient.InferenceServerClient,
) -> None:
    sends = [
        {"model_name": "slowmodel", "inputs": [fp32_input()], "request_id": "slow"},
        {"model_name": "identity", "inputs": [fp32_input()], "request_id": "fast"},
    ]
    out = _collect_stream(client, sends, expected=2)
    assert [r.get_response().id for r, e in out] == ["fast", "slow"]


def test_stream_many_requests(client: grpcclient.InferenceServerClient) -> None:
    sends = [
        {
            "model_name": "identity",
            "inputs": [fp32_input(np.full((1, 8), i, np.float32))],
            "request_id": str(i),
        }
        for i in range(200)
    ]
    out = _collect_stream(client, sends, expected=200)
    for result, error in out:
        assert error is None
        value = int(result.get_response().id)
        assert (result.as_numpy("OUTPUT0") == value).all()


def test_stream_end_waits_for_outstanding(server: Harness) -> None:
    # Half-closing the stream right after sending must still deliver the response.
    with grpc.insecure_channel(server.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="slowmodel", id="late")
        request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
        request.raw_input_contents.append(b"\0\0\x80?")
        responses = list(stub.ModelStreamInfer(iter([request])))
    assert len(responses) == 1
    assert responses[0].infer_response.id == "late"
    assert responses[0].error_message == ""


def test_stream_error_carries_request_id(server: Harness) -> None:
    with grpc.insecure_channel(server.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        responses = list(
            stub.ModelStreamInfer(
                iter([service_pb2.ModelInferRequest(model_name="nosuch", id="zz")])
            )
        )
    assert (
        responses[0].error_message == "Request for unknown model: 'nosuch' is not found"
    )
    assert responses[0].infer_response.id == "zz"


# -- cancellation ------------------------------------------------------------------------


def _fails(client: grpcclient.InferenceServerClient, model: str) -> int:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats["inference_stats"]["fail"].get("count", 0))


def test_client_timeout_cancels_queued_request(
    client: grpcclient.InferenceServerClient,
) -> None:
    before = _fails(client, "slowmodel")
    blocker = threading.Thread(target=client.infer, args=("slowmodel", [fp32_input()]))
    blocker.start()
    time.sleep(0.1)
    # Queued behind the blocker; the deadline passes while it waits.
    expect_error(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        client.infer,
        "slowmodel",
        [fp32_input()],
        client_timeout=0.2,
    )
    blocker.join()
    deadline = time.monotonic() + 5
    while _fails(client, "slowmodel") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fails(client, "slowmodel") == before + 1


def test_aio_cancel(server: Harness) -> None:
    async def run() -> None:
        async with aioclient.InferenceServerClient(server.url) as c:
            before = (await c.get_inference_statistics("slowmodel", as_json=True))[
                "model_stats"
            ][0]["inference_stats"]["fail"].get("count", "0")
            first = asyncio.ensure_future(c.infer("slowmodel", [fp32_input()]))
            await asyncio.sleep(0.1)
            second = asyncio.ensure_future(c.infer("slowmodel", [fp32_input()]))
            await asyncio.sleep(0.1)
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            await first
            for _ in range(100):
                stats = await c.get_inference_statistics("slowmodel", as_json=True)
                after = stats["model_stats"][0]["inference_stats"]["fail"].get(
                    "count", "0"
                )
                if int(after) == int(before) + 1:
                    break
                await asyncio.sleep(0.05)
            assert int(after) == int(before) + 1

    asyncio.run(run())


def test_aio_infer_and_stream(server: Harness) -> None:
    async def run() -> None:
        async with aioclient.InferenceServerClient(server.url) as c:
            assert await c.is_server_live()
            result = await c.infer("identity", [fp32_input()], request_id="x")
            assert result.get_response().id == "x"

            async def requests():
                for i in range(5):
                    yield {
                        "model_name": "identity",
                        "inputs": [fp32_input()],
                        "request_id": str(i),
                    }

            ids = []
            async for result, error in c.stream_infer(requests()):
                assert error is None
                ids.append(result.get_response().id)
                if len(ids) == 5:
                    break
            assert sorted(ids) == [str(i) for i in range(5)]

    asyncio.run(run())


# -- lifecycle ---------------------------------------------------------------------------


def test_stop_waits_for_in_flight_request() -> None:
    harness = Harness()
    c = grpcclient.InferenceServerClient(harness.url)
    results: list = []
    thread = threading.Thread(
        target=lambda: results.append(c.infer("slowmodel", [fp32_input()]))
    )
    thread.start()
    time.sleep(0.1)
    output = harness.close()
    thread.join(10)
    assert "STOPPED" in output
    assert results and results[0].as_numpy("OUTPUT0") is not None
    c.close()
