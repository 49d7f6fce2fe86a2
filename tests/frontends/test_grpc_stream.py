"""gRPC streaming, cancellation and shutdown against the real ``tritonclient.grpc``
(sync and aio) and a real ``tritonx`` server (tests/frontends/conftest.py). The
held model ``slowmodel`` (tests/grpcutil.py) completes a request only when the test
releases it, so every ordering below is decided by the test, not by timing."""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from grpcutil import (
    Held,
    expect_error,
    fp32_input,
    make_input,
    pending,
    server_args,
    success_count,
    wait_until,
    write_repository,
)
from serverutil import RunningServer, run_server
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


def test_stream_answers_non_decoupled_requests_in_request_order(
    client: grpcclient.InferenceServerClient, held: Held
) -> None:
    # The quick request completes first but is answered after the slow one before
    # it, as in Triton (tests/streaming/test_stream_order.py compares the two).
    tag = held.new_tag()
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("slowmodel", [held.input(tag)], request_id="slow")
        held.started(tag)
        before = success_count(client, "identity")
        client.async_stream_infer("identity", [fp32_input()], request_id="fast")
        wait_until(
            lambda: success_count(client, "identity") > before, "the quick request"
        )
        assert results.empty()
        held.release(tag)
        first = results.get(timeout=60)
        second = results.get(timeout=60)
    finally:
        client.stop_stream()
    assert [r.get_response().id for r, e in (first, second)] == ["slow", "fast"]
    np.testing.assert_array_equal(first[0].as_numpy("OUTPUT0"), np.full((1, 4), tag))


def test_stream_outputs_of_every_size_come_back_whole(
    client: grpcclient.InferenceServerClient,
) -> None:
    # Around the size past which an output is sent from the tensor itself
    # (infer_codec.h kZeroCopyOutputBytes, 64 KiB), and well past it; several
    # outputs in flight at once.
    sizes = [0, 1, 16383, 16384, 16385, 1 << 20, 4 << 20]
    rng = np.random.default_rng(7)
    data = {
        str(i): rng.standard_normal((1, n), dtype=np.float32)
        for i, n in enumerate(sizes)
    }
    sends = [
        {"model_name": "identity", "inputs": [fp32_input(v)], "request_id": k}
        for k, v in data.items()
    ]
    got = _collect_stream(client, sends, expected=len(sends))
    assert all(error is None for _, error in got)
    for result, _ in got:
        response = result.get_response()
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data[response.id])
        assert response.parameters["triton_final_response"].bool_param


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
    # Answered in request order (a non-decoupled model), however the batcher
    # grouped and completed them.
    assert [result.get_response().id for result, _ in out] == [
        str(i) for i in range(200)
    ]
    for result, error in out:
        assert error is None
        value = int(result.get_response().id)
        assert (result.as_numpy("OUTPUT0") == value).all()


def test_stream_end_waits_for_outstanding(server: RunningServer, held: Held) -> None:
    # The client ends its request stream (half-close) while the request executes:
    # the generator returns once the model holds the request, and the model is
    # released only after that, so the response comes on a half-closed stream.
    tag = held.new_tag()
    request = service_pb2.ModelInferRequest(model_name="slowmodel", id="late")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
    request.raw_input_contents.append(np.float32(tag).tobytes())
    ended = threading.Event()

    def requests():
        yield request
        held.started(tag)
        ended.set()

    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        responses = stub.ModelStreamInfer(requests())
        assert ended.wait(60)
        held.release(tag)
        responses = list(responses)
    assert len(responses) == 1
    assert responses[0].infer_response.id == "late"
    assert responses[0].error_message == ""


def test_stream_error_carries_request_id(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
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
    server: RunningServer, client: grpcclient.InferenceServerClient, held: Held
) -> None:
    before = _fails(client, "slowmodel")
    running, queued = held.new_tag(), held.new_tag()
    blocker = threading.Thread(
        target=client.infer, args=("slowmodel", [held.input(running)])
    )
    blocker.start()
    try:
        held.started(running)
        # slowmodel has one instance: this request waits in the queue until its
        # deadline passes.
        expect_error(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            client.infer,
            "slowmodel",
            [held.input(queued)],
            client_timeout=2.0,
        )
        wait_until(lambda: pending(server, "slowmodel") == 0, "the queue to empty")
    finally:
        held.release(running)
        blocker.join(60)
    wait_until(
        lambda: _fails(client, "slowmodel") == before + 1, "the failure to be counted"
    )
    assert not held.ran(queued)


def test_aio_cancel(server: RunningServer, held: Held) -> None:
    running, queued = held.new_tag(), held.new_tag()

    async def run() -> None:
        async with aioclient.InferenceServerClient(server.grpc_url) as c:
            stats = await c.get_inference_statistics("slowmodel", as_json=True)
            before = int(
                stats["model_stats"][0]["inference_stats"]["fail"].get("count", 0)
            )
            first = asyncio.ensure_future(c.infer("slowmodel", [held.input(running)]))
            await asyncio.to_thread(held.started, running)
            second = asyncio.ensure_future(c.infer("slowmodel", [held.input(queued)]))
            await asyncio.to_thread(
                wait_until,
                lambda: pending(server, "slowmodel") == 1,
                "the second request to be queued",
            )
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            await asyncio.to_thread(
                wait_until,
                lambda: pending(server, "slowmodel") == 0,
                "the cancelled request to leave the queue",
            )
            held.release(running)
            result = await first
            assert result.as_numpy("OUTPUT0")[0, 0] == running
            stats = await c.get_inference_statistics("slowmodel", as_json=True)
            after = stats["model_stats"][0]["inference_stats"]["fail"].get("count", 0)
            assert int(after) == before + 1

    try:
        asyncio.run(run())
    finally:
        held.release(running)
    assert not held.ran(queued)


def test_aio_infer_and_stream(server: RunningServer) -> None:
    async def run() -> None:
        async with aioclient.InferenceServerClient(server.grpc_url) as c:
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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_waits_for_in_flight_request(tmp_path: Path, signum: int) -> None:
    repo = write_repository(tmp_path, ["slowmodel"])
    held = Held(repo)
    tag = held.new_tag()
    with run_server(
        repo, *server_args(["slowmodel"]), "--allow-http=false", "--allow-metrics=false"
    ) as server:
        c = grpcclient.InferenceServerClient(server.grpc_url)
        results: list = []
        thread = threading.Thread(
            target=lambda: results.append(c.infer("slowmodel", [held.input(tag)]))
        )
        thread.start()
        held.started(tag)
        server.process.send_signal(signum)
        # The server is draining and counts the held request as in flight; only
        # then does the model answer it.
        wait_until(
            lambda: (
                "Found 1 model versions that have in-flight inferences"
                in server.log_text()
            ),
            "the server to wait for the request",
        )
        assert server.process.poll() is None
        held.release(tag)
        thread.join(60)
        assert server.process.wait(60) == 0
        c.close()
    assert results and results[0].as_numpy("OUTPUT0")[0, 0] == tag
    log = server.log_text()
    assert log.index("Waiting for in-flight requests") < log.index(
        "All models are stopped"
    )
