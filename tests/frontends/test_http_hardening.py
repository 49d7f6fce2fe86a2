"""Hostile HTTP input against a real server: large JSON bodies and heads must not
stall the event loop, keep memory, or reach the core as values it cannot take.

Liveness is measured as health checks answered on another connection *while* the
hostile request is in flight (generous 1 s bound each). Before the JSON offload a
30 MB JSON tensor stalled health for ~1.8 s and a million tiny inputs for ~10 s;
a 128 MB header was read whole (~2 s) and answered 200.
"""

# The server fixture is imported by name for pytest to find; the tests' same-named
# parameters are that fixture, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil
import pytest

pytest.importorskip("tritonx._native", reason="core not built")
from hardeningutil import (  # noqa: F401 (the server fixture)
    FP32_INPUT,
    IDENTITY_CONFIG,
    error_text,
    post,
    server,
)
from serverutil import RunningServer, run_http_only
from testmodels import ECHO_MODEL

from tritonx import _native
from tritonx.frontends.http_infer import MAX_TENSORS

HEALTH_BOUND_S = 1.0


def _health_during(
    server: RunningServer, hostile: Callable[[], object], overlap: bool = True
) -> object:
    """Runs ``hostile`` on a thread and polls /v2/health/live on one keep-alive
    connection until it returns; asserts no poll answered in flight waited for the
    hostile request (and, with ``overlap``, that some were answered in flight).

    A poll stalled behind it would take about as long as the hostile request has
    left, so the bound is a share of the hostile request's own duration (never
    under ``HEALTH_BOUND_S``): a loaded machine slows both alike."""
    outcome: list[object] = []
    took_hostile: list[float] = []

    def run_hostile() -> None:
        start = time.monotonic()
        outcome.append(hostile())
        took_hostile.append(time.monotonic() - start)

    thread = threading.Thread(target=run_hostile, daemon=True)
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    in_flight: list[float] = []
    thread.start()
    try:
        while thread.is_alive():
            start = time.monotonic()
            conn.request("GET", "/v2/health/live")
            reply = conn.getresponse()
            reply.read()
            took = time.monotonic() - start
            assert reply.status == 200
            if thread.is_alive():
                in_flight.append(took)
            time.sleep(0.02)
        thread.join()
    finally:
        conn.close()
    assert outcome, "the hostile request raised"
    if overlap:
        assert in_flight, "the hostile request finished before any health check"
    bound = max(HEALTH_BOUND_S, took_hostile[0] / 3)
    assert max(in_flight, default=0.0) < bound, (in_flight, took_hostile)
    return outcome[0]


def _tensor_body(count: int, binary_output: bool) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [count],
                    "data": [1.2345678] * count,
                }
            ],
            "parameters": {"binary_data_output": binary_output},
        }
    ).encode()


def _many_inputs_body(count: int) -> bytes:
    inputs = [
        {"name": f"I{i}", "datatype": "FP32", "shape": [1], "data": [1.5]}
        for i in range(count)
    ]
    return json.dumps({"inputs": inputs}).encode()


def test_health_answers_during_30mb_json_tensor(server: RunningServer) -> None:
    count = 3_000_000  # ~30 MB of JSON in, ~60 MB of JSON out
    body = _tensor_body(count, binary_output=False)
    status, data = _health_during(  # type: ignore[misc]
        server, lambda: post(server, "/v2/models/identity/infer", body)
    )
    assert status == 200
    out = json.loads(data)["outputs"][0]
    assert out["shape"] == [count]
    assert len(out["data"]) == count and out["data"][0] == pytest.approx(1.2345678)


def test_large_gzip_response_while_health_answers(server: RunningServer) -> None:
    count = 1_000_000
    body = _tensor_body(count, binary_output=True)

    def call() -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(
            "127.0.0.1", server.ports["http"], timeout=120
        )
        try:
            conn.request(
                "POST", "/v2/models/identity/infer", body, {"Accept-Encoding": "gzip"}
            )
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()

    status, headers, data = _health_during(server, call)  # type: ignore[misc]
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    plain = gzip.decompress(data)
    hlen = int(headers["Inference-Header-Content-Length"])
    assert json.loads(plain[:hlen])["outputs"][0]["parameters"] == {
        "binary_data_size": count * 4
    }
    values = np.frombuffer(plain[hlen:], dtype=np.float32)
    assert values.shape == (count,) and values[-1] == np.float32(1.2345678)


def test_too_many_inputs_is_400_and_health_answers(server: RunningServer) -> None:
    count = 200_000  # ~12 MB of JSON
    body = _many_inputs_body(count)
    status, data = _health_during(  # type: ignore[misc]
        server, lambda: post(server, "/v2/models/identity/infer", body)
    )
    assert status == 400
    assert error_text(data) == (
        f"the request has {count} inputs, more than the {MAX_TENSORS} this server "
        "accepts in one request"
    )


def test_too_many_outputs_is_400(server: RunningServer) -> None:
    outputs = [{"name": f"O{i}"} for i in range(MAX_TENSORS + 1)]
    body = json.dumps({"inputs": [FP32_INPUT], "outputs": outputs}).encode()
    status, data = post(server, "/v2/models/identity/infer", body)
    assert status == 400
    assert f"{MAX_TENSORS + 1} outputs, more than the {MAX_TENSORS}" in error_text(data)


def _send_head(port: int, head: bytes, chunks: int = 0, chunk: bytes = b"") -> bytes:
    """Sends a request head (plus ``chunks`` more copies of ``chunk``); returns what
    came back before the server closed (b"" = closed without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for _ in range(chunks):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # the server closed while we were still sending: expected
        received = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except OSError:
            pass  # reset: the server closed with our bytes unread
        return received


def test_health_answers_during_128mb_header(
    server: RunningServer, request: pytest.FixtureRequest
) -> None:
    port = server.ports["http"]
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: "
    # The server drops the connection within the first chunks, so health checks
    # rarely overlap it; what matters is that none is slow and nothing is read
    # beyond the limit.
    received = _health_during(
        server, lambda: _send_head(port, head, 2048, b"a" * 65536), overlap=False
    )
    if request.node.callspec.params.get("server") == "native":
        # evhttp reads a head up to its own bound, then refuses it (its own 4xx
        # page) and closes.
        assert received == b"" or received.startswith(b"HTTP/1.1 4")
    else:
        assert received == b""  # closed without an answer, as Triton does


@pytest.mark.parametrize(
    ("head", "answered"),
    [
        # tritonserver 2.51 answers a header value of 8191 bytes and drops the
        # connection, unanswered, at 8192; a URL likewise.
        (b"X-V: " + b"v" * 8191 + b"\r\n", True),
        (b"X-V: " + b"v" * 8192 + b"\r\n", False),
        (b"X-" + b"n" * 8190 + b": v\r\n", False),
        (b"X-V: " + b"v" * 20000 + b"\r\n", False),
    ],
    ids=["value-8191", "value-8192", "name-8192", "value-20000"],
)
def test_header_field_limit_matches_triton(
    server: RunningServer, head: bytes, answered: bool
) -> None:
    received = _send_head(
        server.ports["http"],
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head,
    )
    assert received.startswith(b"HTTP/1.1 200 OK") if answered else received == b""


@pytest.mark.parametrize("length", [8100, 8200])
def test_url_limit_matches_triton(server: RunningServer, length: int) -> None:
    url = b"/v2/health/live?" + b"q" * (length - 16)
    received = _send_head(
        server.ports["http"], b"GET " + url + b" HTTP/1.1\r\nConnection: close"
    )
    if length < 8192:
        assert received.startswith(b"HTTP/1.1 200 OK")
    else:
        assert received == b""


@pytest.mark.parametrize(
    "fields",
    [
        [b"X-H%d: v" % i for i in range(1001)],  # more than 1000 fields
        [b"X-H%d: %s" % (i, b"v" * 5000) for i in range(14)],  # ~70 KB in all
    ],
    ids=["1001-fields", "70KB"],
)
@pytest.mark.parametrize("whole", [False, True], ids=["then-blank-line", "one-write"])
def test_oversized_head_is_431(
    server: RunningServer, fields: list[bytes], whole: bool
) -> None:
    """Also when the head's blank line comes in the same read as the bytes that
    take it over the limit (one write: the head used to be served then)."""
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join(fields)
    if whole:
        head += b"\r\n\r\n"
    received = _send_head(server.ports["http"], head)
    status, _, rest = received.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"Connection: close" in rest
    body = rest.split(b"\r\n\r\n", 1)[1]
    assert error_text(body).startswith("request header fields too large")


def test_memory_returns_after_hostile_requests(server: RunningServer) -> None:
    process = psutil.Process(server.process.pid)
    # Warm up the paths (helper process, caches) before taking the baseline.
    assert post(server, "/v2/models/identity/infer", _tensor_body(40_000, True))[0]
    time.sleep(1.5)
    baseline = process.memory_info().rss
    hostile = [
        _tensor_body(3_000_000, binary_output=True),
        _many_inputs_body(100_000),
        # 60 MB of JSON that is quick to parse: only the body's buffers count.
        b'{"inputs":[],"pad":"' + b"x" * 60_000_000 + b'"}',
    ]
    for body in hostile:
        status, _ = post(server, "/v2/models/identity/infer", body)
        assert status in (200, 400)
    del hostile
    _send_head(
        server.ports["http"],
        b"GET /v2/health/live HTTP/1.1\r\nX-Big: ",
        256,
        b"a" * 65536,
    )
    # Before the fix the bodies stayed referenced: +90 MB for these requests,
    # +250 MB for a million-input body.
    _assert_memory_returned(process, baseline)


def _assert_memory_returned(process: psutil.Process, baseline: int) -> None:
    """RSS back within 48 MiB of ``baseline``. Freed memory is handed back about a
    second after the last large request: waits up to 10 s for it."""
    deadline = time.monotonic() + 10
    growth = process.memory_info().rss - baseline
    while growth > 48 * 2**20 and time.monotonic() < deadline:
        time.sleep(0.5)
        growth = process.memory_info().rss - baseline
    assert growth < 48 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB"


def _refused_infer() -> tuple[str, bytes, dict[str, str], str]:
    # Its body parses; the model's checks refuse FP64 for an FP32 input.
    count = 500_000
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP64",
                    "shape": [count],
                    "parameters": {"binary_data_size": 8 * count},
                }
            ]
        }
    ).encode()
    message = (
        "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'FP64', "
        "but model 'identity' expects 'FP32'"
    )
    headers = {"Inference-Header-Content-Length": str(len(header))}
    return "infer", header + bytes(8 * count), headers, message


def _refused_generate(route: str) -> tuple[str, bytes, dict[str, str], str]:
    # A 4 MB parameter and no input: refused by the model's checks.
    message = (
        "[request id: <id_unknown>] expected 1 inputs but got 0 inputs for model "
        "'identity'. Got input(s) [], but missing required input(s) ['INPUT0']. "
        "Please provide all required input(s)."
    )
    return route, json.dumps({"pad": "x" * 4_000_000}).encode(), {}, message


@pytest.mark.parametrize(
    "case",
    [
        _refused_infer(),
        _refused_generate("generate"),
        _refused_generate("generate_stream"),
    ],
    ids=["infer", "generate", "generate_stream"],
)
def test_refused_requests_do_not_keep_their_bodies(
    server: RunningServer,
    case: tuple[str, bytes, dict[str, str], str],
) -> None:
    """A request the model refuses (its body parses, the model's checks fail) is
    answered 400 and its body freed. The C++ engine kept every such request, body
    included, for good (found by fuzz_http_server's leak check): 30 refused 4 MB
    bodies grew the server by 118 MiB."""
    route, body, headers, message = case

    def refused() -> str:
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
        try:
            conn.request("POST", f"/v2/models/identity/{route}", body, headers)
            reply = conn.getresponse()
            assert reply.status == 400
            return error_text(reply.read())
        finally:
            conn.close()

    process = psutil.Process(server.process.pid)
    refused()  # warm the path up before the baseline
    time.sleep(1.5)
    baseline = process.memory_info().rss
    assert {refused() for _ in range(30)} == {message}
    _assert_memory_returned(process, baseline)


def _helpers(pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(pid).children()
        if "spawn_main" in " ".join(child.cmdline())
    ]


def test_large_json_bodies_are_decoded_without_helper_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With the native reader built, the Python engine decodes a large body on a
    thread (the reader releases the GIL): no helper process, nothing pickled."""
    if _native.native_parse_infer is None:
        pytest.skip("this build has no native JSON reader (helpers decode)")
    repo = tmp_path_factory.mktemp("threads")
    (repo / "identity" / "1").mkdir(parents=True)
    (repo / "identity" / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (repo / "identity" / "1" / "model.py").write_text(ECHO_MODEL)
    body = _tensor_body(100_000, binary_output=True)  # ~1 MB: decoded off the loop
    with run_http_only(repo, "python") as server:
        status, data = post(server, "/v2/models/identity/infer", body)
        assert status == 200
        expected = np.full(100_000, 1.2345678, dtype=np.float32).tobytes()
        assert data.endswith(b'"binary_data_size":400000}}]}' + expected)
        assert not _helpers(server.process.pid)


def test_json_helpers_recover_and_never_outlive_the_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    repo = tmp_path_factory.mktemp("helpers")
    (repo / "identity" / "1").mkdir(parents=True)
    (repo / "identity" / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (repo / "identity" / "1" / "model.py").write_text(ECHO_MODEL)
    # ~1 MB in and 400 KB of output values rendered as JSON: in a helper.
    body = _tensor_body(100_000, binary_output=False)
    with run_http_only(repo, "python") as server:
        assert post(server, "/v2/models/identity/infer", body)[0] == 200
        helpers = _helpers(server.process.pid)
        assert helpers
        for helper in helpers:  # e.g. killed by the OOM killer
            helper.kill()
        psutil.wait_procs(helpers, timeout=10)
        status, data = post(server, "/v2/models/identity/infer", body)
        if status != 200:  # the job was queued before the loss was noticed
            assert (status, error_text(data)) == (
                503,
                "the JSON worker process stopped unexpectedly; retry the request",
            )
        assert post(server, "/v2/models/identity/infer", body)[0] == 200
        helpers = _helpers(server.process.pid)
        assert helpers
        server.process.kill()  # no clean-up at all
        server.process.wait()
        _, alive = psutil.wait_procs(helpers, timeout=10)
        assert not alive, "helpers outlived the server"
