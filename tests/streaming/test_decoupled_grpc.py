"""Decoupled Python models over gRPC ModelStreamInfer, with the real tritonclient.

A request answers 0..N responses and then FINAL, from execute or from threads the
model started; each carries `triton_final_response`; an empty FINAL is written only
when the request asks for it; errors travel on the stream without closing it.
"""

from __future__ import annotations

import queue
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serverutil import RunningServer

FINAL_PARAM = "triton_final_response"


def _inputs(count: int, mode: int) -> list[Any]:
    import tritonclient.grpc as grpcclient

    tensors = []
    for name, value in (("COUNT", count), ("MODE", mode)):
        tensor = grpcclient.InferInput(name, [1], "INT32")
        tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
        tensors.append(tensor)
    return tensors


class Stream:
    """One gRPC stream; collects (request id, OUT value | None, final, error)."""

    def __init__(self, url: str) -> None:
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(url)
        self.events: queue.Queue[tuple[str, int | None, bool, str | None]] = (
            queue.Queue()
        )
        self.client.start_stream(callback=self._on_response)

    def _on_response(self, result: Any, error: Any) -> None:
        if error is not None:
            self.events.put(("", None, False, error.message()))
            return
        response = result.get_response()
        final = response.parameters[FINAL_PARAM].bool_param
        out = result.as_numpy("OUT")
        value = None if out is None else int(out[0])
        self.events.put((response.id, value, final, None))

    def send(
        self,
        request_id: str,
        count: int,
        mode: int,
        empty_final: bool,
        model: str = "repeat",
    ) -> None:
        inputs = _inputs(count, mode)
        self.client.async_stream_infer(
            model,
            inputs if model == "repeat" else inputs[:1],
            request_id=request_id,
            enable_empty_final_response=empty_final,
        )

    def collect(self, n: int) -> list[tuple[str, int | None, bool, str | None]]:
        return [self.events.get(timeout=30) for _ in range(n)]

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


@pytest.mark.parametrize("mode", [0, 1], ids=["from-execute", "from-thread"])
@pytest.mark.parametrize("count", [0, 1, 5])
def test_responses_then_final(
    streaming_server: tuple[RunningServer, Path], count: int, mode: int
) -> None:
    server, _ = streaming_server
    stream = Stream(server.grpc_url)
    try:
        stream.send("with-empty", count, mode, empty_final=True)
        events = stream.collect(count + 1)
        assert [e[1] for e in events] == [*range(count), None]
        assert [e[2] for e in events] == [False] * count + [True]
        assert {e[0] for e in events} == {"with-empty"}

        # Without the flag the FINAL alone is not written: only the data responses.
        stream.send("without", count, mode, empty_final=False)
        stream.send("marker", 1, 0, empty_final=True)
        events = stream.collect(count + 2)
        data = [e for e in events if e[0] == "without"]
        assert [e[1] for e in data] == list(range(count))
        assert all(not e[2] for e in data)
        assert [e[1:3] for e in events if e[0] == "marker"] == [
            (0, False),
            (None, True),
        ]
        assert stream.events.empty()
    finally:
        stream.close()


def test_non_decoupled_model_on_the_stream_answers_once_marked_final(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    server, _ = streaming_server
    stream = Stream(server.grpc_url)
    try:
        for i in range(3):
            stream.send(f"echo-{i}", 7 + i, 0, empty_final=True, model="echo")
        events = sorted(stream.collect(3))
        assert [e[1:] for e in events] == [
            (7, True, None),
            (8, True, None),
            (9, True, None),
        ]
    finally:
        stream.close()


def test_error_mid_stream_keeps_the_stream_open(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    server, _ = streaming_server
    stream = Stream(server.grpc_url)
    try:
        stream.send("err", 0, 2, empty_final=False)
        events = stream.collect(3)
        assert events[0][1:3] == (0, False)
        assert events[1][3] == "mid-stream failure"
        assert events[2][1:3] == (2, True)
        # The same stream still serves requests.
        stream.send("after", 2, 0, empty_final=True)
        assert [e[1] for e in stream.collect(3)] == [0, 1, None]
    finally:
        stream.close()


def test_returning_responses_from_a_decoupled_execute_is_an_error(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    server, _ = streaming_server
    stream = Stream(server.grpc_url)
    try:
        stream.send("returns", 1, 6, empty_final=False)
        [(_, value, _, error)] = stream.collect(1)
        assert value is None and error is not None
        # Both parts name the model instance, as Triton's stub does.
        match = re.fullmatch(
            r"Failed to process the request\(s\) for model '(\w+)', message: "
            r"Python model '(\w+)' is using the decoupled mode and the execute "
            r"function must return None\.",
            error,
        )
        assert match is not None, error
        assert match[1] == match[2] and match[1].startswith("repeat_0")
        stream.send("after", 1, 0, empty_final=True)
        assert [e[1] for e in stream.collect(2)] == [0, None]
    finally:
        stream.close()


def test_many_streams_many_requests_none_lost_order_kept(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    server, _ = streaming_server
    streams, requests_per_stream, count = 4, 12, 6
    failures: list[str] = []

    def one_stream(s: int) -> None:
        stream = Stream(server.grpc_url)
        try:
            for r in range(requests_per_stream):
                stream.send(f"{s}-{r}", count, r % 2, empty_final=True)
            events = stream.collect(requests_per_stream * (count + 1))
            for r in range(requests_per_stream):
                mine = [e for e in events if e[0] == f"{s}-{r}"]
                if [e[1] for e in mine] != [*range(count), None]:
                    failures.append(f"{s}-{r}: {mine}")
            if not stream.events.empty():
                failures.append(f"stream {s}: extra responses")
        finally:
            stream.close()

    threads = [threading.Thread(target=one_stream, args=(s,)) for s in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []


def test_send_after_final_raises_in_the_model(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    server, model_dir = streaming_server
    stream = Stream(server.grpc_url)
    try:
        stream.send("late", 0, 4, empty_final=False)
        assert stream.collect(1)[0][1:3] == (0, True)
        marker = model_dir / "after-final"
        for _ in range(500):
            if marker.exists() and marker.read_text():
                break
            threading.Event().wait(0.01)
        assert "Response sender has been closed" in marker.read_text()
        stream.send("still-serving", 1, 0, empty_final=True)
        assert [e[1] for e in stream.collect(2)] == [0, None]
    finally:
        stream.close()


def test_cancelling_the_stream_reaches_the_model(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    import tritonclient.grpc as grpcclient

    server, model_dir = streaming_server
    stream = Stream(server.grpc_url)
    stream.send("wait", 0, 3, empty_final=False)
    # Let the request reach execute, then cancel the whole stream from the client.
    threading.Event().wait(0.5)
    stream.client.stop_stream(cancel_requests=True)
    stream.client.close()
    marker = model_dir / "cancelled-wait"
    for _ in range(1000):
        if marker.exists():
            break
        threading.Event().wait(0.01)
    assert marker.exists()
    # The server keeps serving.
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert client.is_server_live()
    client.close()


def test_unary_infer_on_a_decoupled_model_is_unimplemented(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, _ = streaming_server
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.infer("repeat", _inputs(1, 0))
    assert info.value.status() == "StatusCode.UNIMPLEMENTED"
    assert info.value.message() == (
        "ModelInfer RPC doesn't support models with decoupled transaction policy"
    )
    client.close()


def test_http_infer_on_a_decoupled_model_is_501(
    streaming_server: tuple[RunningServer, Path],
) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    server, _ = streaming_server
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name in ("COUNT", "MODE"):
        tensor = httpclient.InferInput(name, [1], "INT32")
        tensor.set_data_from_numpy(np.array([1], dtype=np.int32))
        inputs.append(tensor)
    with pytest.raises(InferenceServerException) as info:
        client.infer("repeat", inputs)
    assert "doesn't support models with decoupled transaction policy" in str(
        info.value.message()
    )
    client.close()
