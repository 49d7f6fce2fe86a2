"""What ``--http-max-input-size`` bounds, on both HTTP engines, through real
``tritonclient.http`` and raw requests. As in Triton it bounds a request's JSON
(the whole body, or the binary extension's header part), a raw body and a body once
decompressed, but not the binary tensor data after the JSON: tritonclient's large
binary requests pass (Triton's L0_large_payload sends 1.9 GB with default flags).
Every body is bounded by the cap (2^31 - 1 bytes here), where Triton's own HTTP
server stops."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")
import tritonclient.http as httpclient
from serverutil import (
    RunningServer,
    reference_command,
    run_http_only,
    run_reference,
    run_server,
)
from testmodels import ECHO_FP32_CONFIG, ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

LIMIT = 65536
CAP = (1 << 31) - 1
RAISE = " bytes. Use --http-max-input-size to increase the limit."


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("input_size_repo")
    write_model(root, "echo", ECHO_FP32_CONFIG, ECHO_MODEL)
    return root


@pytest.fixture(scope="module", params=["python", "native"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_http_only(
        repo, request.param, f"--http-max-input-size={LIMIT}"
    ) as running:
        yield running


def _infer(
    server: RunningServer, data: np.ndarray, binary: bool = True, **kwargs: object
) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
    try:
        tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data, binary_data=binary)
        result = client.infer("echo", [tensor], **kwargs)  # type: ignore[arg-type]
        output = result.as_numpy("OUTPUT0")
        assert output is not None
        return output
    finally:
        client.close()


def _post(
    server: RunningServer, body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=120)
    try:
        conn.request("POST", "/v2/models/echo/infer", body=body, headers=headers)
        reply = conn.getresponse()
        answer = reply.read()
        if reply.status == 200:
            return 200, ""
        return reply.status, str(json.loads(answer)["error"])
    finally:
        conn.close()


@pytest.mark.parametrize("mib", [4, 40])
def test_binary_tensor_data_is_not_bounded_by_the_limit(
    server: RunningServer, mib: int
) -> None:
    """40 MiB: the native engine makes a body past 16 MiB contiguous in steps."""
    data = np.arange(mib << 18, dtype=np.float32)
    np.testing.assert_array_equal(_infer(server, data), data)


def test_json_past_the_limit_is_refused(server: RunningServer) -> None:
    data = np.arange(LIMIT // 4, dtype=np.float32)
    with pytest.raises(InferenceServerException) as refused:
        _infer(server, data, binary=False)
    message = refused.value.message()
    assert refused.value.status() == "400"
    assert message.startswith("Request JSON size of ")
    assert message.endswith(
        f" bytes exceeds the maximum allowed value of {LIMIT}{RAISE}"
    )


def test_binary_header_past_the_limit_is_refused(server: RunningServer) -> None:
    header = json.dumps(
        {
            "id": "x" * LIMIT,
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4},
                }
            ],
        }
    ).encode()
    status, message = _post(
        server,
        header + bytes(4),
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert (status, message) == (
        400,
        f"Request JSON size of {len(header)} bytes exceeds the maximum allowed value "
        f"of {LIMIT}{RAISE}",
    )


def test_raw_body_is_bounded_by_the_limit(server: RunningServer) -> None:
    raw = {"Inference-Header-Content-Length": "0"}
    assert _post(server, bytes(LIMIT), raw) == (200, "")
    assert _post(server, bytes(LIMIT + 4), raw) == (
        400,
        f"Raw input has a byte_size ({LIMIT + 4} bytes) that exceeds the maximum "
        f"allowed value of {LIMIT}{RAISE}",
    )


def test_decompressed_body_is_bounded_by_the_limit(server: RunningServer) -> None:
    data = np.zeros(LIMIT, dtype=np.float32)  # 256 KiB that gzip makes small
    with pytest.raises(InferenceServerException) as refused:
        _infer(server, data, request_compression_algorithm="gzip")
    assert refused.value.message() == (
        f"Request body size exceeds the maximum allowed value of {LIMIT}{RAISE}"
    )
    small = np.zeros(LIMIT // 8, dtype=np.float32)
    np.testing.assert_array_equal(
        _infer(server, small, request_compression_algorithm="gzip"), small
    )
    # a raw body is checked once inflated, like any other
    status, _ = _post(
        server,
        gzip.compress(bytes(LIMIT)),
        {"Inference-Header-Content-Length": "0", "Content-Encoding": "gzip"},
    )
    assert status == 200


def test_body_past_the_cap_is_refused_and_the_server_serves_on(
    server: RunningServer,
) -> None:
    """The body is sent whole (both engines drain it, keeping none), then answered."""
    block = memoryview(bytes(1 << 22))
    size = CAP + 1
    with socket.create_connection(
        ("127.0.0.1", server.ports["http"]), timeout=120
    ) as s:
        s.sendall(
            b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\n"
            b"Inference-Header-Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % size
        )
        left = size
        while left:
            left -= s.send(block[: min(left, len(block))])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert json.loads(body)["error"] == (
        f"Request body size exceeds the maximum allowed value of {CAP}{RAISE}"
    )
    data = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(_infer(server, data), data)


@pytest.mark.skipif(reference_command() is None, reason="no reference Triton")
def test_binary_data_past_64_mib_passes_with_default_flags_as_in_triton(
    repo: Path,
) -> None:
    """Differential: 80 MiB of binary tensor data with default flags, served back
    unchanged by Triton 2.51 and by tritonx (which refused it before)."""
    data = np.arange(20 << 20, dtype=np.float32)
    for start in (run_reference, run_server):
        with start([repo]) as server:
            np.testing.assert_array_equal(_infer(server, data), data)
