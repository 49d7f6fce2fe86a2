"""A client that goes away cancels its request, on both protocols.

Queued: the request is dropped before it runs and counted as CANCELED. Executing:
the model sees ``request.is_cancelled()`` turn true.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serverutil import RunningServer, run_server
from testmodels import HELD_MODEL

CONFIG = """
name: "held"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""


def _wait_for(path: Path) -> None:
    for _ in range(2000):
        if path.exists():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{path.name} never appeared")


def _pending(server: RunningServer) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith('nv_inference_pending_request_count{model="held"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _canceled(server: RunningServer) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    for line in text.splitlines():
        if (
            line.startswith("nv_inference_request_failure")
            and "CANCELED" in line
            and 'model="held"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _open_http_request(server: RunningServer, value: int) -> socket.socket:
    body = json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [value]}
            ]
        }
    ).encode()
    sock = socket.create_connection(("127.0.0.1", server.ports["http"]))
    sock.sendall(
        b"POST /v2/models/held/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return sock


def _grpc_call(server: RunningServer, value: int) -> tuple[object, object]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(np.array([value], dtype=np.float32))
    call = client.async_infer("held", [tensor], lambda result, error: None)
    return client, call


@pytest.mark.parametrize(
    ("protocol", "engine"),
    [("http", "python"), ("http", "native"), ("grpc", "python")],
    ids=["http-python", "http-native", "grpc"],
)
def test_disconnect_cancels_queued_and_flags_executing(
    tmp_path: Path, protocol: str, engine: str
) -> None:
    repo = tmp_path / "repo"
    (repo / "held" / "1").mkdir(parents=True)
    (repo / "held" / "config.pbtxt").write_text(CONFIG)
    (repo / "held" / "1" / "model.py").write_text(HELD_MODEL)
    model_dir = repo / "held"
    with run_server(repo, f"--http-engine={engine}") as server:
        if protocol == "http":
            running = _open_http_request(server, 1)
            _wait_for(model_dir / "ran-1")
            queued = _open_http_request(server, 2)
            while _pending(server) < 1:
                threading.Event().wait(0.01)
            queued.close()
            while _canceled(server) < 1:
                threading.Event().wait(0.01)
            running.close()
        else:
            client1, call1 = _grpc_call(server, 1)
            _wait_for(model_dir / "ran-1")
            client2, call2 = _grpc_call(server, 2)
            while _pending(server) < 1:
                threading.Event().wait(0.01)
            call2.cancel()  # type: ignore[attr-defined]
            while _canceled(server) < 1:
                threading.Event().wait(0.01)
            call1.cancel()  # type: ignore[attr-defined]
        # The executing request saw its cancellation; the queued one never ran.
        _wait_for(model_dir / "cancelled-1")
        assert not (model_dir / "ran-2").exists()
        assert _canceled(server) == 1
        if protocol == "grpc":
            client1.close()  # type: ignore[attr-defined]
            client2.close()  # type: ignore[attr-defined]
