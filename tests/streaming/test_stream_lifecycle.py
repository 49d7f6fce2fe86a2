"""Streams and the server's life: SIGTERM waits for streams in flight, then ends
every stream the clients keep open (UNAVAILABLE) instead of waiting for them for
the whole exit timeout; a decoupled model with ``async def execute`` streams like
a synchronous one."""

from __future__ import annotations

import queue
import signal
from pathlib import Path
from typing import Any

import numpy as np
from serverutil import RunningServer, run_server

ASYNC_CONFIG = """
name: "async_repeat"
backend: "python"
max_batch_size: 0
input [ { name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
model_transaction_policy { decoupled: true }
"""

ASYNC_MODEL = """
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy()[0])
            sender = request.get_response_sender()
            for i in range(count):
                await asyncio.sleep(0)
                sender.send(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("OUT", np.array([i], dtype=np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def _stream(url: str) -> tuple[Any, queue.Queue[tuple[Any, Any]]]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    return client, events


def _inputs(count: int, mode: int | None) -> list[Any]:
    import tritonclient.grpc as grpcclient

    tensors = []
    names = [("COUNT", count)] + ([] if mode is None else [("MODE", mode)])
    for name, value in names:
        tensor = grpcclient.InferInput(name, [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
        tensors.append(tensor)
    return tensors


def _values(events: queue.Queue[tuple[Any, Any]], n: int) -> list[int | None]:
    values: list[int | None] = []
    for _ in range(n):
        result, error = events.get(timeout=60)
        assert error is None, error
        out = result.as_numpy("OUT")
        values.append(None if out is None else int(out[0]))
    return values


def _sigterm_mid_stream(
    server: RunningServer,
    client: Any,
    events: queue.Queue[tuple[Any, Any]],
    count: int,
) -> None:
    """Streams ``count`` responses of one request, sends SIGTERM after the first
    five, and checks that the rest arrive: nothing lost, FINAL last."""
    client.async_stream_infer(
        "repeat", _inputs(count, 1), enable_empty_final_response=True
    )
    first = _values(events, 5)
    server.process.send_signal(signal.SIGTERM)
    rest = _values(events, count + 1 - 5)
    assert first + rest == [*range(count), None]


def test_sigterm_waits_for_streams_in_flight(repeat_repo: Path) -> None:
    count = 300  # sent from a thread, 2 ms apart: still streaming at SIGTERM
    with run_server(repeat_repo, "--exit-timeout-secs=30") as server:
        client, events = _stream(server.grpc_url)
        _sigterm_mid_stream(server, client, events, count)
        client.stop_stream()
        client.close()
        assert server.process.wait(timeout=60) == 0


def test_sigterm_ends_streams_the_clients_keep_open(repeat_repo: Path) -> None:
    # Triton 2.51 waits for such a stream to close, past its exit timeout (rc 1
    # once the client gives up). With an exit timeout of ten minutes, an exit
    # within the wait below means the open streams did not hold the shutdown.
    count = 300
    with run_server(repeat_repo, "--exit-timeout-secs=600") as server:
        idle, idle_events = _stream(server.grpc_url)
        idle.async_stream_infer("repeat", _inputs(2, 1))
        assert _values(idle_events, 2) == [0, 1]
        busy, busy_events = _stream(server.grpc_url)
        _sigterm_mid_stream(server, busy, busy_events, count)
        assert server.process.wait(timeout=60) == 0  # both streams still open
        for events in (idle_events, busy_events):
            result, error = events.get(timeout=60)
            assert result is None
            assert "Server is shutting down" in str(error), error
        for client in (idle, busy):
            client.stop_stream()
            client.close()


def test_async_execute_decoupled_model(tmp_path: Path) -> None:
    (tmp_path / "async_repeat" / "1").mkdir(parents=True)
    (tmp_path / "async_repeat" / "config.pbtxt").write_text(ASYNC_CONFIG)
    (tmp_path / "async_repeat" / "1" / "model.py").write_text(ASYNC_MODEL)
    with run_server(tmp_path) as server:
        client, events = _stream(server.grpc_url)
        for _ in range(3):
            client.async_stream_infer(
                "async_repeat", _inputs(4, None), enable_empty_final_response=True
            )
            assert _values(events, 5) == [0, 1, 2, 3, None]
        client.stop_stream()
        client.close()


def test_unload_waits_for_streams_in_flight(repeat_repo: Path) -> None:
    import tritonclient.http as httpclient

    count = 300
    with run_server(
        repeat_repo, "--model-control-mode=explicit", "--load-model=repeat"
    ) as server:
        client, events = _stream(server.grpc_url)
        client.async_stream_infer(
            "repeat", _inputs(count, 1), enable_empty_final_response=True
        )
        first = _values(events, 5)
        control = httpclient.InferenceServerClient(server.http_url)
        control.unload_model("repeat")  # drains: the stream is not cut short
        rest = _values(events, count + 1 - 5)
        assert first + rest == [*range(count), None]
        assert not control.is_model_ready("repeat")
        control.close()
        client.stop_stream()
        client.close()
