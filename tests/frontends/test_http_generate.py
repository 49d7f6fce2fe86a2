"""Triton's generate extension (``POST .../generate`` and ``.../generate_stream``) on
both HTTP engines (``--http-engine=native`` and ``python``), through the wire with raw
HTTP. Each test that states Triton's behaviour runs against the reference Triton too
when $TRITONX_REFERENCE_CMD names one (python-backend models only); cancellation, the
slow-reader bound and HTTP/1.0 streams are tritonx's own."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tritonx._native", reason="core not built")
from serverutil import (
    REFERENCE_CMD_ENV,
    RunningServer,
    reference_command,
    run_reference,
    run_server,
)
from testmodels import REPEAT_CONFIG, REPEAT_MODEL

from tritonx import _native

# "gen" is testmodels' decoupled `repeat` model (MODE 0-5) under another name.
GEN_CONFIG = REPEAT_CONFIG.replace('name: "repeat"', 'name: "gen"')

# Not decoupled: reports what it received (shapes, types, values, parameters).
PROBE_CONFIG = """
name: "probe"
backend: "python"
max_batch_size: 0
input [
  { name: "text_input", data_type: TYPE_STRING, dims: [ 1 ] },
  { name: "V", data_type: TYPE_FP32, dims: [ -1 ], optional: true },
  { name: "M", data_type: TYPE_INT64, dims: [ 2, 2 ], optional: true },
  { name: "B", data_type: TYPE_BOOL, dims: [ 1 ], optional: true }
]
output [
  { name: "text_output", data_type: TYPE_STRING, dims: [ 1 ] },
  { name: "INFO", data_type: TYPE_STRING, dims: [ 1 ] },
  { name: "VOUT", data_type: TYPE_FP32, dims: [ -1 ] }
]
"""
PROBE_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for r in requests:
            info = {"params": json.loads(r.parameters())}
            for name in ("text_input", "V", "M", "B"):
                t = pb_utils.get_input_tensor_by_name(r, name)
                if t is not None:
                    a = t.as_numpy()
                    values = [x.decode() for x in a.flatten()] if a.dtype == object \\
                        else a.flatten().tolist()
                    info[name] = [list(a.shape), values]
            v = pb_utils.get_input_tensor_by_name(r, "V")
            vout = v.as_numpy() if v is not None else np.array([1.5, 2.5], np.float32)
            text = pb_utils.get_input_tensor_by_name(r, "text_input").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("text_output", text),
                pb_utils.Tensor("INFO", np.array([json.dumps(info).encode()], object)),
                pb_utils.Tensor("VOUT", vout)]))
        return responses
"""

BATCH_CONFIG = """
name: "batch"
backend: "python"
max_batch_size: 4
input [ { name: "X", data_type: TYPE_INT32, dims: [ 2 ] } ]
output [ { name: "Y", data_type: TYPE_INT32, dims: [ 2 ] } ]
"""
BATCH_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
            for r in requests]
"""

# A batching model with a variable dim: answers the shape it was given.
SHAPES_CONFIG = """
name: "shapes"
backend: "python"
max_batch_size: 2
input [ { name: "X", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "SHAPE", data_type: TYPE_INT64, dims: [ -1 ] } ]
"""
SHAPES_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("SHAPE", np.array(
            [pb_utils.get_input_tensor_by_name(r, "X").as_numpy().shape], np.int64))])
            for r in requests]
"""

# Decoupled, from a thread: up to COUNT responses of 1 MiB each, stopping when the
# request is cancelled; marks how it ended.
FLOOD_CONFIG = """
name: "flood"
backend: "python"
max_batch_size: 0
input [ { name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "BIG", data_type: TYPE_STRING, dims: [ 1 ] } ]
model_transaction_policy { decoupled: true }
"""
FLOOD_MODEL = """
import os
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
BIG = np.array([b"x" * (1 << 20)], dtype=object)


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
        self.threads = []

    def _flood(self, sender, count):
        end = "done"
        for _ in range(count):
            if sender.is_cancelled():
                end = "cancelled"
                break
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("BIG", BIG)]))
        open(os.path.join(self.dir, end), "w").close()
        sender.send(flags=FINAL)

    def execute(self, requests):
        for r in requests:
            count = int(pb_utils.get_input_tensor_by_name(r, "COUNT").as_numpy()[0])
            thread = threading.Thread(
                target=self._flood, args=(r.get_response_sender(), count))
            thread.start()
            self.threads.append(thread)
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=30)
"""

# Not decoupled: answers with response parameters (a tritonx extension of
# pb_utils.InferenceResponse, as later Triton releases have), two of them named
# like a reserved field and an output.
PARAMS_CONFIG = """
name: "params"
backend: "python"
max_batch_size: 0
input [ { name: "text_input", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "text_output", data_type: TYPE_STRING, dims: [ 1 ] } ]
"""
PARAMS_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        text = pb_utils.Tensor("text_output", np.array([b"out"], dtype=np.object_))
        parameters = {"note": "hi", "flag": True, "n": -3, "model_name": "mine",
                      "text_output": 7}
        return [pb_utils.InferenceResponse([text], parameters=parameters)
                for _ in requests]
"""

# Decoupled: COUNT responses, the odd ones 100,000 elements (400 KB: rendered by a
# JSON helper on the Python engine), the even ones one; every element holds i.
SIZES_CONFIG = """
name: "sizes"
backend: "python"
max_batch_size: 0
input [ { name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] } ]
model_transaction_policy { decoupled: true }
"""
SIZES_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            sender = r.get_response_sender()
            count = int(pb_utils.get_input_tensor_by_name(r, "COUNT").as_numpy()[0])
            for i in range(count):
                out = np.full(100_000 if i % 2 else 1, i, np.float32)
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
            sender.send(flags=FINAL)
        return None
"""

SSE_TYPE = "text/event-stream; charset=utf-8"
ONE_RESPONSE = (
    "generate expects model to produce exactly 1 response, use generate stream for "
    "model that generates various number of responses"
)


def _write_models(repo: Path) -> None:
    for name, config, code in (
        ("gen", GEN_CONFIG, REPEAT_MODEL),
        ("probe", PROBE_CONFIG, PROBE_MODEL),
        ("batch", BATCH_CONFIG, BATCH_MODEL),
        ("flood", FLOOD_CONFIG, FLOOD_MODEL),
        ("shapes", SHAPES_CONFIG, SHAPES_MODEL),
        ("params", PARAMS_CONFIG, PARAMS_MODEL),
        ("sizes", SIZES_CONFIG, SIZES_MODEL),
    ):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(code)


# A build without the C++ HTTP server has the Python engine only.
ENGINES = ("native", "python") if _native.HttpServer is not None else ("python",)


@pytest.fixture(scope="module")
def started(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], tuple[RunningServer, Path]]]:
    """A tritonx server per HTTP engine, started when first asked for, each with
    its own repository (models mark how their requests ended there)."""
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[RunningServer, Path]] = {}

        def get(engine: str) -> tuple[RunningServer, Path]:
            if engine not in servers:
                root = tmp_path_factory.mktemp(f"generate_{engine}")
                _write_models(root)
                running = stack.enter_context(
                    run_server(
                        root,
                        f"--http-engine={engine}",
                        "--http-thread-count=2",
                        "--allow-grpc=false",
                    )
                )
                servers[engine] = (running, root)
            return servers[engine]

        yield get


@pytest.fixture(scope="module", params=ENGINES)
def engine(
    request: pytest.FixtureRequest,
    started: Callable[[str], tuple[RunningServer, Path]],
) -> tuple[RunningServer, Path]:
    """A tritonx server (each HTTP engine in turn) and its repository."""
    return started(request.param)


@pytest.fixture(scope="module", params=[*ENGINES, "triton"])
def server(
    request: pytest.FixtureRequest,
    started: Callable[[str], tuple[RunningServer, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """tritonx (each HTTP engine), and the reference Triton when one is given: the
    same assertions hold for all."""
    if request.param != "triton":
        yield started(request.param)[0]
        return
    if reference_command() is None:
        pytest.skip(f"{REFERENCE_CMD_ENV} not set: no reference Triton")
    ref_repo = tmp_path_factory.mktemp("generate_ref_repo")
    _write_models(ref_repo)
    with run_reference([ref_repo]) as running:
        yield running


def _post(
    server: RunningServer, path: str, body: Any
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    return conn.getresponse(), conn


def generate(server: RunningServer, model: str, body: Any) -> tuple[int, Any]:
    reply, conn = _post(server, f"/v2/models/{model}/generate", body)
    try:
        data = reply.read()
        assert reply.getheader("Content-Type") == "application/json"
        return reply.status, json.loads(data)
    finally:
        conn.close()


def read_events(reply: http.client.HTTPResponse) -> Iterator[Any]:
    """The `data:` payloads of a Server-Sent Events reply, parsed, as they come."""
    data: list[str] = []
    while line := reply.readline():
        text = line.decode().rstrip("\n")
        if text.startswith("data: "):
            data.append(text[len("data: ") :])
        elif text == "" and data:
            yield json.loads("\n".join(data))
            data = []
    assert not data, "an event was cut off"


def stream(server: RunningServer, model: str, body: Any) -> tuple[int, list[Any]]:
    reply, conn = _post(server, f"/v2/models/{model}/generate_stream", body)
    try:
        if reply.getheader("Content-Type") == "application/json":
            return reply.status, [json.loads(reply.read())]
        assert reply.getheader("Content-Type") == SSE_TYPE
        assert reply.getheader("Transfer-Encoding") == "chunked"
        return reply.status, list(read_events(reply))
    finally:
        conn.close()


def _out(model: str, **outputs: Any) -> dict[str, Any]:
    return {"model_name": model, "model_version": "1", **outputs}


# --- what Triton does (both servers) ----------------------------------------------


def test_stream_sends_each_response_as_an_event(server: RunningServer) -> None:
    for mode in (0, 1):
        status, events = stream(server, "gen", {"COUNT": 3, "MODE": mode})
        assert status == 200
        assert events == [_out("gen", OUT=i) for i in range(3)]
    # No response before FINAL: an empty stream.
    assert stream(server, "gen", {"COUNT": 0, "MODE": 0}) == (200, [])
    # The request id comes back in every event; keys are in byte order.
    reply, conn = _post(
        server,
        "/v2/models/gen/generate_stream",
        {"COUNT": [2], "MODE": [0], "id": "q1"},
    )
    lines = [line for line in reply.read().split(b"\n") if line]
    conn.close()
    assert lines == [
        b'data: {"OUT":%d,"id":"q1","model_name":"gen","model_version":"1"}' % i
        for i in range(2)
    ]


def test_error_mid_stream_is_an_event(server: RunningServer) -> None:
    status, events = stream(server, "gen", {"COUNT": 0, "MODE": 2})
    assert status == 200
    assert events == [
        _out("gen", OUT=0),
        {"error": "mid-stream failure"},
        _out("gen", OUT=2),
    ]


def test_generate_wants_exactly_one_response(server: RunningServer) -> None:
    assert generate(server, "gen", {"COUNT": 1, "MODE": 0}) == (200, _out("gen", OUT=0))
    for count in (0, 3):
        assert generate(server, "gen", {"COUNT": count, "MODE": 0}) == (
            200,
            {"error": ONE_RESPONSE},
        )
    # A model that is not decoupled streams its one response.
    body = {"text_input": "hi"}
    status, events = stream(server, "probe", body)
    assert status == 200 and len(events) == 1
    assert events[0] == generate(server, "probe", body)[1]


def test_routes_versions_and_unknown_models(server: RunningServer) -> None:
    reply, conn = _post(server, "/v2/models/batch/versions/1/generate", {"X": [1, 2]})
    assert (reply.status, json.loads(reply.read())) == (200, _out("batch", Y=[1, 2]))
    conn.close()
    assert generate(server, "nope", {"X": 1}) == (
        404,
        {"error": "Request for unknown model: 'nope' is not found"},
    )
    assert stream(server, "batch/versions/2", {"X": 1}) == (
        404,
        [{"error": "Request for unknown model: 'batch' version 2 is not found"}],
    )


def test_inputs_take_the_config_shape(server: RunningServer) -> None:
    status, body = generate(
        server,
        "probe",
        {"text_input": ["hi"], "V": [1, 2, 3], "M": [1, 2, 3, 4], "B": True},
    )
    assert status == 200
    assert json.loads(body.pop("INFO")) == {
        "params": {},
        "text_input": [[1], ["hi"]],
        "V": [[3], [1.0, 2.0, 3.0]],
        "M": [[2, 2], [1, 2, 3, 4]],
        "B": [[1], [True]],
    }
    assert body == _out("probe", text_output="hi", VOUT=[1.0, 2.0, 3.0])
    # One element: a scalar, in and out; none: an empty list.
    status, body = generate(server, "probe", {"text_input": "a", "V": 2.5})
    assert json.loads(body["INFO"])["V"] == [[1], [2.5]] and body["VOUT"] == 2.5
    status, body = generate(server, "probe", {"text_input": "a", "V": []})
    assert json.loads(body["INFO"])["V"] == [[0], []] and body["VOUT"] == []
    # The batch dim comes first and takes the elements left over.
    assert generate(server, "batch", {"X": [1, 2, 3, 4]}) == (
        200,
        _out("batch", Y=[1, 2, 3, 4]),
    )


def test_variable_dims_take_the_elements_not_the_batch(server: RunningServer) -> None:
    """The innermost variable dim takes the elements, the batch dim is 1: more
    elements than max_batch_size (2) are one request, and none is a valid one."""
    assert generate(server, "shapes", {"X": [1, 2, 3]}) == (
        200,
        _out("shapes", SHAPE=[1, 3]),
    )
    assert generate(server, "shapes", {"X": []}) == (200, _out("shapes", SHAPE=[1, 0]))
    assert generate(server, "shapes", {"X": 7}) == (200, _out("shapes", SHAPE=[1, 1]))


def test_other_keys_become_parameters(server: RunningServer) -> None:
    status, body = generate(
        server,
        "probe",
        {
            "text_input": "a",
            "parameters": {"a": 1, "b": "x", "c": True, "d": 1.5, "priority": 2},
            "extra": -5,
            "id": "r1",
            "triton_x": 3,
            "big": 18446744073709551615,
        },
    )
    assert status == 200
    assert json.loads(body.pop("INFO"))["params"] == {
        "a": 1,
        "b": "x",
        "c": True,
        "d": 1.5,
        "priority": 2,
        "extra": -5,
        "id": "r1",
        "triton_x": 3,
        "big": 1.8446744073709552e19,
    }
    assert list(body) == sorted(body)
    assert body["id"] == "r1"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (
            {"text_input": "a", "M": [[1, 2], [3, 4]]},
            400,
            "The schema can not convert input 'M' to tensor with proper shape",
        ),
        (
            {"text_input": ["a", "b"]},
            400,
            "The schema can not convert input 'text_input' to tensor with proper shape",
        ),
        (
            {"text_input": 5},
            500,
            "Unable to parse JSON bytes array: attempt to access JSON non-string as "
            "string",
        ),
        (
            {"text_input": "a", "V": [[1, 2], [3]]},
            500,
            "Unable to parse 'data': Shape does not match true shape of 'data' field",
        ),
        (
            {"text_input": "a", "B": 1},
            500,
            "Unable to parse 'data': attempt to access JSON non-boolean as boolean",
        ),
        (
            {"zz": None, "parameters": {"q": None}},
            400,
            "parameter 'zz' has invalid type. It should be either 'int', 'bool', or "
            "'string'.",
        ),
        (
            {"text_input": "a", "parameters": {"q": [1]}},
            400,
            "Converting keyword: 'parameters': parameter 'q' has invalid type. It "
            "should be either 'int', 'bool', or 'string'.",
        ),
        (
            {"text_input": "a", "parameters": 5},
            500,
            "Expected JSON object for keyword: 'parameters': attempt to access JSON "
            "non-object as object",
        ),
        (
            {"text_input": "a", "id": 5},
            500,
            "Unable to parse 'id': attempt to access JSON non-string as string",
        ),
        (  # the id is read first, whatever comes before it
            {"text_input": "a", "parameters": {"q": None}, "id": False},
            500,
            "Unable to parse 'id': attempt to access JSON non-string as string",
        ),
        (b"[1]", 500, "attempt to get members for non-object"),
        (b"nope", 500, "failed to parse the request JSON buffer: Invalid value. at 1"),
    ],
)
def test_bad_requests(
    server: RunningServer, body: Any, status: int, message: str
) -> None:
    for route in ("generate", "generate_stream"):
        reply, conn = _post(server, f"/v2/models/probe/{route}", body)
        assert reply.getheader("Content-Type") == "application/json"
        assert (reply.status, json.loads(reply.read())) == (status, {"error": message})
        conn.close()


# --- tritonx's own: cancellation and the slow-reader bound ------------------------


def _wait_for(path: Path, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


def test_disconnect_cancels_the_stream(engine: tuple[RunningServer, Path]) -> None:
    ours, repo = engine
    # Before the first response: nothing has been answered yet.
    sock = socket.create_connection(("127.0.0.1", ours.ports["http"]))
    body = b'{"COUNT": 0, "MODE": 3, "id": "before"}'
    sock.sendall(
        b"POST /v2/models/gen/generate_stream HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    time.sleep(0.2)  # the request reaches the model
    sock.close()
    assert _wait_for(repo / "gen" / "cancelled-before")
    # After the first event.
    reply, conn = _post(
        ours, "/v2/models/gen/generate_stream", {"COUNT": 0, "MODE": 5, "id": "after"}
    )
    assert reply.status == 200
    assert next(read_events(reply)) == _out("gen", OUT=0, id="after")
    conn.close()
    reply.close()
    assert _wait_for(repo / "gen" / "cancelled-after")


def test_slow_reader_is_cut_and_cancelled(engine: tuple[RunningServer, Path]) -> None:
    """A client that stops reading: past the per-connection bound (32 MiB of
    queued output) the server drops the connection and cancels the request instead
    of buffering all 400 MiB the model would send."""
    ours, repo = engine
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", ours.ports["http"]))
    body = b'{"COUNT": 400}'
    sock.sendall(
        b"POST /v2/models/flood/generate_stream HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
            (repo / "flood" / end).exists() for end in ("cancelled", "done")
        ):
            time.sleep(0.02)
        assert not (repo / "flood" / "done").exists(), "nothing bounded the stream"
        assert (repo / "flood" / "cancelled").exists()
        received = 0
        tail = b""
        sock.settimeout(30)
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
                tail = (tail + chunk)[-16:]
        except ConnectionResetError:
            pass
        print(f"received {received} bytes")
        assert received < 100 << 20
        assert not tail.endswith(b"0\r\n\r\n")  # cut, not ended
    finally:
        sock.close()
    ready = urllib.request.urlopen(
        f"http://{ours.http_url}/v2/health/ready", timeout=10
    )
    assert ready.status == 200


def test_response_parameters_are_fields(engine: tuple[RunningServer, Path]) -> None:
    """As Triton's generate: each response parameter is a field beside the outputs;
    of two fields of one name, a reserved one wins over a parameter, which wins
    over an output."""
    ours, _ = engine
    for route in ("generate", "generate_stream"):
        if route == "generate":
            status, body = generate(ours, "params", {"text_input": "a"})
        else:
            status, events = stream(ours, "params", {"text_input": "a"})
            (body,) = events
        assert status == 200
        assert body == _out("params", text_output=7, note="hi", flag=True, n=-3)
        assert list(body) == sorted(body)


def _raw_post(path: str, body: bytes, version: str = "1.1") -> bytes:
    return b"POST %s HTTP/%s\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        version.encode(),
        len(body),
        body,
    )


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(60)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_http10_stream_ends_with_the_connection(
    engine: tuple[RunningServer, Path],
) -> None:
    """HTTP/1.0 has no chunked encoding: the events come as they are and the server
    closes the connection after the last."""
    ours, _ = engine
    with socket.create_connection(("127.0.0.1", ours.ports["http"])) as sock:
        body = b'{"COUNT": 2, "MODE": 0}'
        sock.sendall(_raw_post("/v2/models/gen/generate_stream", body, "1.0"))
        head, _, rest = _read_until_closed(sock).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0].split(b" ")[1] == b"200"
    assert b"Content-Type: " + SSE_TYPE.encode() in lines
    assert not any(line.lower().startswith(b"transfer-encoding") for line in lines)
    assert rest == b"".join(
        b'data: {"OUT":%d,"model_name":"gen","model_version":"1"}\n\n' % i
        for i in range(2)
    )


def test_pipelined_requests_wait_for_the_stream(
    engine: tuple[RunningServer, Path],
) -> None:
    """A request pipelined behind a stream on one connection is answered after
    the stream's last chunk, in order."""
    ours, _ = engine
    with socket.create_connection(("127.0.0.1", ours.ports["http"])) as sock:
        stream_body = b'{"COUNT": 3, "MODE": 1}'
        sock.sendall(
            _raw_post("/v2/models/gen/generate_stream", stream_body)
            + _raw_post("/v2/models/gen/generate", b'{"COUNT": 1, "MODE": 0}')
            + b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = _read_until_closed(sock)
    first, _, rest = data.partition(b"0\r\n\r\n")
    assert first.count(b"data: ") == 3
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    generated, _, ready = rest.partition(b'"model_version":"1"}')
    assert generated.endswith(b'{"OUT":0,"model_name":"gen",')
    assert ready.startswith(b"HTTP/1.1 200 OK\r\n")


def test_half_close_mid_stream_cancels(engine: tuple[RunningServer, Path]) -> None:
    """A client that half-closes once its stream has begun counts as gone (nothing
    can tell it apart from one that left): its request is cancelled."""
    ours, repo = engine
    with socket.create_connection(("127.0.0.1", ours.ports["http"])) as sock:
        body = b'{"COUNT": 0, "MODE": 5, "id": "halfclosed"}'
        sock.sendall(_raw_post("/v2/models/gen/generate_stream", body))
        sock.settimeout(60)
        seen = b""
        while b"data: " not in seen:
            seen += sock.recv(65536)
        sock.shutdown(socket.SHUT_WR)
        assert _wait_for(repo / "gen" / "cancelled-halfclosed")


def test_large_bodies(server: RunningServer) -> None:
    """Bodies past 256 KiB (decoded in a JSON helper process by the Python engine)
    take the same rules and words as small ones."""
    values = [0.5 + i for i in range(60_000)]
    status, body = generate(server, "probe", {"text_input": "a", "V": values})
    assert status == 200
    assert json.loads(body["INFO"])["V"] == [[60_000], values]
    assert body["VOUT"] == values
    pad = "x" * 300_000
    status, events = stream(server, "probe", {"text_input": 5, "pad": pad})
    assert (status, events) == (
        500,
        [
            {
                "error": "Unable to parse JSON bytes array: attempt to access JSON "
                "non-string as string"
            }
        ],
    )


def test_large_outputs_keep_their_order(server: RunningServer) -> None:
    """Large and small responses alternate; the events come in the model's order
    (the Python engine renders the large ones in a JSON helper)."""
    status, events = stream(server, "sizes", {"COUNT": 6})
    assert status == 200
    assert [e["OUT"] for e in events] == [
        [float(i)] * 100_000 if i % 2 else float(i) for i in range(6)
    ]
    status, body = generate(server, "sizes", {"COUNT": 1})
    assert (status, body) == (200, _out("sizes", OUT=0.0))


@pytest.mark.parametrize(
    ("body", "params", "rid"),
    [
        (b'{"text_input":"a","x":1,"x":"two"}', {"x": 1}, None),
        (
            b'{"text_input":"a","parameters":{"q":1},"parameters":{"r":2}}',
            {"q": 1},
            None,
        ),
        (b'{"text_input":"a","parameters":{"q":1,"q":2}}', {"q": 1}, None),
        (b'{"text_input":"a","parameters":{"r":2},"parameters":5}', {"r": 2}, None),
        (b'{"text_input":"a","parameters":{"x":1},"x":2}', {"x": 2}, None),
        (b'{"text_input":"a","x":2,"parameters":{"x":1}}', {"x": 1}, None),
        (b'{"text_input":"a","id":"a","id":"b"}', {"id": "a"}, "a"),
        (b'{"text_input":"a","id":"a","id":3}', {"id": "a"}, "a"),
    ],
)
def test_repeated_names_take_their_first_value(
    server: RunningServer, body: bytes, params: dict[str, Any], rid: str | None
) -> None:
    """Triton reads each member name in order, repeats included, with the value of
    its first member; of one parameter set twice, the backend sees the last set."""
    status, answer = generate(server, "probe", body)
    assert status == 200
    assert json.loads(answer["INFO"])["params"] == params
    assert answer.get("id") == rid


def test_repeated_input_is_refused(server: RunningServer) -> None:
    """An input named twice is added twice: refused (both engines walk the
    body's members themselves, repeats included)."""
    status, answer = generate(server, "probe", b'{"text_input":"a","text_input":"b"}')
    assert (status, answer) == (
        400,
        {
            "error": "[request id: <id_unknown>] input 'text_input' already exists in request"
        },
    )
