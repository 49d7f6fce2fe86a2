"""Request targets in absolute form ("POST http://host:port/v2/models/m/infer"):
RFC 9112 section 3.2.2 says a server must accept them, and a forward proxy sends
them. Both engines route them by their path, whatever the scheme, as Triton 2.51's
HTTP library does; a target with no path is not found. The differential test sends
the same targets to Triton 2.51 when a reference command is given.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import (
    RunningServer,
    needs_reference,
    run_http_only,
    run_reference,
)
from testmodels import ECHO_FP32_CONFIG, ECHO_MODEL, write_model

INFER = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}
).encode()

# (method, target, body) -> the status every server answers.
CASES = {
    ("GET", "http://proxy.example/v2/health/ready", b""): 200,
    ("GET", "HTTP://proxy.example:8000/v2/health/live", b""): 200,
    ("GET", "https://x:9/v2/models/echo/ready", b""): 200,
    ("POST", "http://x/v2/repository/index", b""): 200,
    ("POST", "http://x/v2/models/echo/infer", INFER): 200,
    ("POST", "http://x/v2/models/nope/infer", INFER): 404,
    ("GET", "http://x", b""): 404,
    ("GET", "//x/v2/health/ready", b""): 404,
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("absolute-form")
    write_model(root, "echo", ECHO_FP32_CONFIG, ECHO_MODEL)
    return root


@pytest.fixture(scope="module", params=["python", "native"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_http_only(repo, request.param) as running:
        yield running


def _status_and_body(
    port: int, method: str, target: str, body: bytes
) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_absolute_targets_are_routed_by_their_path(server: RunningServer) -> None:
    for (method, target, body), expected in CASES.items():
        status, text = _status_and_body(server.ports["http"], method, target, body)
        assert status == expected, (target, status, text)
        if target.endswith("echo/infer"):
            outputs = json.loads(text)["outputs"]
            assert outputs[0]["data"] == [1.0, 2.0], text


@needs_reference
def test_triton_routes_the_same_targets(repo: Path) -> None:
    with run_reference([repo]) as reference:
        for (method, target, body), expected in CASES.items():
            status, text = _status_and_body(
                reference.ports["http"], method, target, body
            )
            assert status == expected, (target, status, text)
