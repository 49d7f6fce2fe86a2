"""No head-of-line blocking: while one connection is in the middle of a huge request
(a 30 MB JSON tensor, a 1 MB header), other connections are served.

The hostile request is sent in two parts; between them (it is then in progress on
the server, its connection waiting for the rest) and while it is parsed and answered,
/v2/health/live on other connections answers. Timing targets (< 5 ms added delay)
are measured by benchmarks/bench_stall.py, not asserted here.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonx._native", reason="core not built")
from serverutil import RunningServer, run_http_only
from testmodels import ECHO_MODEL

CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stall")
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "config.pbtxt").write_text(CONFIG)
    (root / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    return root


@pytest.fixture(scope="module", params=["python", "native"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_http_only(repo, request.param) as running:
        yield running


def _live(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/v2/health/live")
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(1 << 20):
            received += chunk
    except OSError:
        pass  # reset after an unanswered refusal
    return received


def test_health_served_during_a_30mb_json_tensor(server: RunningServer) -> None:
    port = server.ports["http"]
    count = 3_000_000
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [count],
                    "data": [1.5] * count,
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    head = (
        b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head + body[: len(body) // 2])
        # Half the body is on the server; the request is in progress.
        assert _live(port) == 200
        statuses: list[int] = []
        reader = threading.Thread(target=lambda: statuses.append(_live(port)))
        sock.sendall(body[len(body) // 2 :])
        reader.start()  # while the rest is read, parsed and executed
        reply = _read_all(sock)
        reader.join()
    assert statuses == [200]
    assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:200]
    header, _, _ = reply.partition(b"\r\n\r\n")
    assert b"Inference-Header-Content-Length" in header


def test_health_served_during_a_1mb_header(server: RunningServer) -> None:
    port = server.ports["http"]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096
        )
        # The header line is open on the server.
        assert _live(port) == 200
        try:
            for _ in range(256):
                sock.sendall(b"a" * 4096)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # refused part-way and closed: expected
        assert _live(port) == 200
        received = _read_all(sock)
    # Past Triton's 8 KiB field limit: dropped unanswered, or refused with a 4xx.
    assert received == b"" or received.startswith(b"HTTP/1.1 4"), received[:200]
    assert _live(port) == 200
