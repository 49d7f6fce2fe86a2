"""Clients that go away mid-request: the server keeps serving everyone else.

HTTP clients close (FIN) or abort (RST) their socket right after sending a request
to a slow model; gRPC clients cancel their unary call or their stream. Meanwhile other clients use a fast model and
must all succeed; the server stays live and ready, logs no traceback, and the
slow model still answers later requests over both protocols.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from chaosutil import (
    Outcome,
    grpc_infer,
    grpc_request,
    http_get,
    http_infer,
    stub_for,
    wait_for_lines,
    write_echo_model,
)
from serverutil import run_server
from tritonclient.grpc import service_pb2, service_pb2_grpc

DELAY = 0.5
DROPS = 5  # per protocol
_BODY = (
    b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'
)


def _send_and_close(port: int, reset: bool) -> None:
    """Send a slow request, then close (FIN) or abort (RST) the connection."""
    request = (
        b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        time.sleep(0.05)  # let the server accept it, then vanish
        if reset:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )


def _cancel_stream(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    """A ModelStreamInfer stream with requests in flight, cancelled by the client."""
    release = threading.Event()

    def requests() -> Iterator[service_pb2.ModelInferRequest]:
        yield grpc_request("slow")
        yield grpc_request("slow")
        release.wait(10)  # keep the stream open until it is cancelled

    stream = stub.ModelStreamInfer(requests(), timeout=30)
    time.sleep(0.05)
    stream.cancel()
    release.set()


def test_disconnects_mid_request(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    marker = tmp_path / "executions"
    write_echo_model(repo, "slow", delay=DELAY, marker=marker)
    write_echo_model(repo, "fast")
    with run_server(repo) as server:
        port = server.ports["http"]
        channel, stub = stub_for(server.grpc_url)
        stop = threading.Event()
        others: list[Outcome] = []

        def other_traffic() -> None:
            while not stop.is_set():
                others.append(http_infer(port, "fast", timeout=5))
                others.append(grpc_infer(stub, "fast", timeout=5))

        background = threading.Thread(target=other_traffic, daemon=True)
        background.start()
        health: list[int] = []
        for i in range(DROPS):
            _send_and_close(port, reset=i % 2 == 1)
            future = stub.ModelInfer.future(grpc_request("slow"), timeout=30)
            time.sleep(0.05)
            future.cancel()
            _cancel_stream(stub)
            health.append(http_get(port, "/v2/health/live"))
            health.append(http_get(port, "/v2/health/ready"))
        assert wait_for_lines(marker, 1, timeout=10), "the slow model never ran"
        time.sleep(DELAY)
        later = [
            http_infer(port, "slow", timeout=DELAY * 2 * DROPS + 10),
            grpc_infer(stub, "slow", timeout=DELAY * 2 * DROPS + 10),
        ]
        stop.set()
        background.join(timeout=15)
        channel.close()
        alive = server.process.poll() is None
        log = server.log_text()

    assert alive, f"server died:\n{log[-3000:]}"
    assert set(health) == {200}, f"health during disconnects: {health}"
    failed = [o for o in others if not o.ok]
    assert others and not failed, f"other clients' requests failed: {failed[:5]}"
    assert all(o.ok for o in later), f"the slow model no longer answers: {later}"
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-4000:]}"
