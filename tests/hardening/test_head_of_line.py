"""No head-of-line blocking: a slow execution on one model never delays others.

A model that measured fast for many requests then takes seconds on one request used
to run that request on the HTTP event loop (inline dispatch), freezing health checks
and every other model. The slow request must stay in flight while health checks and a
second model keep answering, on both protocols.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serverutil import RunningServer, run_server

SLEEPY_CONFIG = """
name: "sleepy"
backend: "python"
max_batch_size: 0
input [ { name: "SECONDS", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# Fast (no sleep) unless asked to sleep: its measured executions look cheap. While
# sleeping it leaves a marker file so the test knows the slow execution has begun.
SLEEPY_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(args["model_repository"], "sleeping")

    def execute(self, requests):
        responses = []
        for request in requests:
            seconds = pb_utils.get_input_tensor_by_name(request, "SECONDS").as_numpy()
            if seconds[0] > 0:
                open(self.marker, "w").close()
                time.sleep(float(seconds[0]))
                os.remove(self.marker)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("OUT", seconds)]))
        return responses
"""

SLOW_SECONDS = 8.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("repo")
    (repo / "sleepy" / "1").mkdir(parents=True)
    (repo / "sleepy" / "config.pbtxt").write_text(SLEEPY_CONFIG)
    (repo / "sleepy" / "1" / "model.py").write_text(SLEEPY_MODEL)
    example = Path(__file__).resolve().parents[2] / "model_repository"
    with run_server([repo, example]) as running:
        running.marker = repo / "sleepy" / "sleeping"  # type: ignore[attr-defined]
        yield running


def _http_infer(url: str, model: str, seconds: float) -> float:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url, network_timeout=60)
    try:
        tensor = httpclient.InferInput("SECONDS", [1], "FP32")
        tensor.set_data_from_numpy(np.array([seconds], dtype=np.float32))
        result = client.infer(model, [tensor])
        return float(result.as_numpy("OUT")[0])
    finally:
        client.close()


def _grpc_infer(url: str, model: str, seconds: float) -> float:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        tensor = grpcclient.InferInput("SECONDS", [1], "FP32")
        tensor.set_data_from_numpy(np.array([seconds], dtype=np.float32))
        result = client.infer(model, [tensor], client_timeout=60)
        return float(result.as_numpy("OUT")[0])
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_slow_request_delays_neither_health_nor_other_models(
    server: RunningServer, protocol: str
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    infer = _http_infer if protocol == "http" else _grpc_infer
    url = server.http_url if protocol == "http" else server.grpc_url
    # Many fast executions: the model now measures as cheap.
    for _ in range(30):
        assert infer(url, "sleepy", 0.0) == 0.0

    slow_done = threading.Event()

    def slow() -> None:
        infer(url, "sleepy", SLOW_SECONDS)
        slow_done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        # Wait until the slow request is executing.
        marker: Path = server.marker  # type: ignore[attr-defined]
        for _ in range(2000):
            if marker.exists():
                break
            threading.Event().wait(0.005)
        assert marker.exists()
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        a = np.arange(16, dtype=np.float32).reshape(1, 16)
        for _ in range(20):
            assert http.is_server_live()
            assert grpc.is_server_live()
            inputs = [httpclient.InferInput("INPUT0", [1, 16], "FP32")]
            inputs[0].set_data_from_numpy(a)
            out = http.infer("identity", inputs).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(out, a)
            ginputs = [grpcclient.InferInput("INPUT0", [1, 16], "FP32")]
            ginputs[0].set_data_from_numpy(a)
            gout = grpc.infer("identity", ginputs).as_numpy("OUTPUT0")
            np.testing.assert_array_equal(gout, a)
        # Everything above was answered while the slow execution still ran.
        assert not slow_done.is_set()
        http.close()
        grpc.close()
    finally:
        thread.join(timeout=60)
    assert slow_done.is_set()
