"""Out of memory: large HTTP requests the server cannot hold are refused, and the
server goes on serving.

The server's address-space limit (RLIMIT_AS, prlimit on its pid after start-up) is
lowered to a little above what it maps, then a burst of 60 MB requests arrives at
once on the native HTTP engine. Allocations then fail: the body's contiguous copy
(libevent's evbuffer_pullup returns null), the parse pool's new thread (its stack),
numpy arrays. The engine used to dereference the null copy, and the pool let the
std::system_error of a thread that could not start end the process (SIGSEGV or
SIGABRT on the first burst). The Python engine answered 400 "Bad Request" (the
MemoryError raised in httptools' body callback read as a parse error). Now such a
request gets 503 "failed to allocate memory for the request body (N bytes)" on
either engine, the pool runs the parse on the caller's thread when it has none, and
once the burst is over the same server answers again.
(A container's memory cgroup kills rather than failing malloc, but a pids limit
fails thread creation the same way, and hosts without overcommit fail malloc.)
"""

from __future__ import annotations

import http.client
import json
import resource
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")
from serverutil import run_server
from testmodels import ECHO_FP32_CONFIG, ECHO_MODEL, write_model

from tritonx import _native

pytestmark = pytest.mark.timeout(300)

ELEMENTS = 15 * (1 << 20)  # 60 MiB of FP32 per request
BURST = 12
HEADROOM = 256 << 20


def _virtual_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def _post(port: int, body: bytes, header_length: int) -> str:
    """One binary infer; the outcome as a short label."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(
            "POST",
            "/v2/models/echo/infer",
            body,
            {"Inference-Header-Content-Length": str(header_length)},
        )
        response = conn.getresponse()
        text = response.read()
    except (ConnectionError, http.client.HTTPException, OSError):
        return "connection dropped"  # libevent could not read the body: it closes
    finally:
        conn.close()
    if response.status == 200:
        return "ok"
    message = str(json.loads(text).get("error", ""))
    if "failed to allocate memory for the request body" in message:
        assert response.status == 503, (response.status, message)
        return "503 no memory for the body"
    if "MemoryError" in message:  # the model's numpy arrays
        return "500 MemoryError"
    return f"unexpected {response.status}: {message[:200]}"


def _request(elements: int) -> tuple[bytes, int]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [elements],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": elements * 4},
                }
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
        }
    ).encode()
    data = np.ones(elements, dtype=np.float32).tobytes()
    return header + data, len(header)


@pytest.mark.parametrize("engine", ["native", "python"])
def test_large_requests_without_memory_are_refused_and_the_server_goes_on(
    tmp_path: Path, engine: str
) -> None:
    if engine == "native" and getattr(_native, "HttpServer", None) is None:
        pytest.skip("built without the C++ HTTP server")
    write_model(tmp_path, "echo", ECHO_FP32_CONFIG, ECHO_MODEL)
    body, header_length = _request(ELEMENTS)
    small, small_header = _request(4)
    with run_server(tmp_path, f"--http-engine={engine}") as server:
        pid = server.process.pid
        port = server.ports["http"]
        assert _post(port, small, small_header) == "ok"
        soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
        resource.prlimit(
            pid, resource.RLIMIT_AS, (_virtual_bytes(pid) + HEADROOM, hard)
        )
        outcomes: Counter[str] = Counter()
        try:
            for _ in range(3):
                results: list[str] = []

                def send(into: list[str] = results) -> None:
                    into.append(_post(port, body, header_length))

                threads = [threading.Thread(target=send) for _ in range(BURST)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                outcomes.update(results)
                assert server.process.poll() is None, (outcomes, server.log_text())
        finally:
            if server.process.poll() is None:
                resource.prlimit(pid, resource.RLIMIT_AS, (soft, hard))
        assert not [o for o in outcomes if o.startswith("unexpected")], outcomes
        if outcomes["ok"] == sum(outcomes.values()):
            pytest.skip(f"the limit did not bite on this machine: {outcomes}")
        # The same process answers once the burst is over.
        assert _post(port, small, small_header) == "ok"
        assert _post(port, body, header_length) == "ok"
