"""``--http-engine=native``: what only the C++ HTTP server does, end to end with
real ``tritonclient.http`` and raw sockets. (The shared behaviour is covered by
test_http_server/_access/_hardening, which run against both engines.)"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")
from tritonx import _native

if getattr(_native, "HttpServer", None) is None:
    pytest.skip("built without the C++ HTTP server", allow_module_level=True)

import tritonclient.http as httpclient
from serverutil import RunningServer, run_server
from testmodels import ECHO_MODEL, HELD_MODEL
from tritonclient.utils import InferenceServerException

IDENTITY_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: {dtype}, dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: {dtype}, dims: [ -1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""
DECOUPLED_CONFIG = IDENTITY_CONFIG + "model_transaction_policy {{ decoupled: true }}\n"
DECOUPLED_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            r.get_response_sender().send(
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def _model(repo: Path, name: str, dtype: str, code: str, config: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config.format(name=name, dtype=dtype))
    (repo / name / "1" / "model.py").write_text(code)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("native_repo")
    _model(root, "identity", "TYPE_FP32", ECHO_MODEL, IDENTITY_CONFIG)
    _model(root, "text", "TYPE_STRING", ECHO_MODEL, IDENTITY_CONFIG)
    _model(root, "held", "TYPE_FP32", HELD_MODEL, IDENTITY_CONFIG)
    _model(root, "decoupled", "TYPE_FP32", DECOUPLED_PY, DECOUPLED_CONFIG)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(
        repo,
        "--http-engine=native",
        "--http-thread-count=2",
        "--allow-grpc=false",
        "--http-max-input-size=1048576",
    ) as running:
        yield running


def _post(
    server: RunningServer, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    try:
        conn.request("POST", path, body, headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def _json_body(value: float) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [value]}
            ]
        }
    ).encode()


def test_binary_json_and_bytes_through_tritonclient(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    data = np.arange(16, dtype=np.float32)
    for binary in (True, False):
        tensor = httpclient.InferInput("INPUT0", [16], "FP32")
        tensor.set_data_from_numpy(data, binary_data=binary)
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
        result = client.infer("identity", [tensor], outputs=[out], request_id="r1")
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
        assert result.get_response()["id"] == "r1"
    words = np.array([b"a", "é".encode(), b""], dtype=np.object_)
    tensor = httpclient.InferInput("INPUT0", [3], "BYTES")
    tensor.set_data_from_numpy(words)
    result = client.infer("text", [tensor])
    assert list(result.as_numpy("OUTPUT0")) == list(words)
    client.close()


def test_decoupled_model_is_501(server: RunningServer) -> None:
    status, body = _post(server, "/v2/models/decoupled/infer", _json_body(1))
    assert status == 501
    assert json.loads(body) == {
        "error": "HTTP end point doesn't support models with decoupled transaction "
        "policy"
    }


def test_errors_keep_the_python_frontend_bodies(server: RunningServer) -> None:
    status, body = _post(server, "/v2/models/nope/infer", _json_body(1))
    assert status == 404
    assert body == b'{"error":"Request for unknown model: \'nope\' is not found"}'
    status, body = _post(server, "/v2/models/identity/infer", b"{}")
    assert (status, json.loads(body)["error"]) == (
        500,
        "Unable to parse 'inputs': attempt to access non-existing object member "
        "'inputs'",
    )


def test_body_limits(server: RunningServer) -> None:
    limit = 1048576
    status, body = _post(server, "/v2/models/identity/infer", b" " * (limit + 1))
    assert status == 400
    assert json.loads(body)["error"] == (
        f"Request JSON size of {limit + 1} bytes exceeds the maximum allowed value "
        f"of {limit} bytes. Use --http-max-input-size to increase the limit."
    )
    # Past twice the limit too: evhttp reads bodies up to the cap (2^31 - 1 here),
    # so the answer still names the size (test_http_input_size.py: the cap).
    status, body = _post(server, "/v2/models/identity/infer", b" " * (2 * limit + 1))
    assert status == 400
    assert json.loads(body)["error"] == (
        f"Request JSON size of {2 * limit + 1} bytes exceeds the maximum allowed value "
        f"of {limit} bytes. Use --http-max-input-size to increase the limit."
    )


def test_chunked_body_and_keep_alive(server: RunningServer) -> None:
    body = _json_body(7)
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 10]), body[i : i + 10])
        for i in range(0, len(body), 10)
    )
    request = (
        b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=10) as s:
        for _ in range(2):  # the same connection twice
            s.sendall(request)
            data = b""
            while b'"data":[7.0]}' not in data:
                chunk = s.recv(65536)
                assert chunk
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK")


def test_health_answers_while_a_model_is_busy(
    server: RunningServer, repo: Path
) -> None:
    sock = socket.create_connection(("127.0.0.1", server.ports["http"]))
    body = _json_body(5)
    sock.sendall(
        b"POST /v2/models/held/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    try:
        for _ in range(500):
            if (repo / "held" / "ran-5").exists():
                break
            time.sleep(0.01)
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=5)
        for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/held/ready"):
            start = time.monotonic()
            conn.request("GET", path)
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 200
            assert time.monotonic() - start < 1.0
        conn.close()
    finally:
        sock.close()  # cancels the held request
        for _ in range(500):
            if (repo / "held" / "cancelled-5").exists():
                break
            time.sleep(0.01)


def test_many_concurrent_clients(server: RunningServer) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            client = httpclient.InferenceServerClient(server.http_url)
            tensor = httpclient.InferInput("INPUT0", [4], "FP32")
            data = np.ones(4, dtype=np.float32)
            tensor.set_data_from_numpy(data)
            for _ in range(50):
                result = client.infer("identity", [tensor])
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
            client.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_auto_engine_serves_https_natively(tmp_path: Path) -> None:
    # HTTPS itself, on both engines, is tests/frontends/test_http_tls.py.
    from tlsutil import make_pki

    from tritonx.frontends import factory
    from tritonx.frontends.http_native import NativeHttpFrontend
    from tritonx.server import Server
    from tritonx.server_options import ServerOptions

    pki = make_pki(tmp_path)
    options = ServerOptions(
        model_repositories=[tmp_path],
        http_use_ssl=True,
        http_server_cert=pki.server_cert,
        http_server_key=pki.server_key,
    )
    server = Server(options)
    assert isinstance(factory.http_frontend(server, options), NativeHttpFrontend)


def test_unknown_model_raises_through_tritonclient(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(np.ones(1, dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("missing", [tensor])
    assert info.value.status() == "404"
    client.close()
    assert os.environ is not None


def test_half_closed_client_gets_its_answer(server: RunningServer) -> None:
    """A client that half-closes after its request (nc -N) is answered, as Triton
    does; the FIN is told apart from a client that left by an interim
    ``100 Continue`` (a gone client answers it with a reset)."""
    for value in range(10):
        with socket.create_connection(
            ("127.0.0.1", server.ports["http"]), timeout=10
        ) as s:
            body = _json_body(value)
            s.sendall(
                b"POST /v2/models/identity/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert b"HTTP/1.1 200 OK" in data, data
        assert b'"data":[%d.0]' % value in data


def test_head_requests_get_no_body(server: RunningServer) -> None:
    # A body after a HEAD answer would be read as the start of the next response.
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    try:
        for path in ("/v2", "/v2/models/identity/infer", "/v2/health/live"):
            conn.request("HEAD", path)
            reply = conn.getresponse()
            assert reply.read() == b"", path
        conn.request("GET", "/v2/health/live")
        assert conn.getresponse().status == 200  # the connection is still in step
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "status", "error"),
    [(b"FOO", 400, "Bad Request"), (b"TRACE", 405, "Method Not Allowed")],
)
def test_other_methods_get_json_answers(
    server: RunningServer, method: bytes, status: int, error: str
) -> None:
    # As the Python engine answers: evhttp's own page for these is HTML 501.
    with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=10) as s:
        s.sendall(method + b" /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": error}
