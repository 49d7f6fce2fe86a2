"""Helpers of the chaos suites: small Python models and one-shot clients.

Clients are deliberately plain (http.client and a raw gRPC stub) so that many
threads can use them; each call returns an ``Outcome`` instead of raising.
"""

from __future__ import annotations

import http.client
import json
import socket
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

ECHO_PY = """
import json
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.delay = float(params.get("delay", {}).get("string_value", "0"))
        self.marker = params.get("marker", {}).get("string_value", "")

    def execute(self, requests):
        if self.marker:
            with open(self.marker, "a") as f:
                f.write("%d\\n" % len(requests))
        if self.delay:
            time.sleep(self.delay)
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""


def write_echo_model(
    repo: Path,
    name: str,
    *,
    delay: float = 0.0,
    marker: Path | None = None,
    max_batch_size: int = 16,
) -> None:
    """An FP32 [-1] echo; ``delay`` seconds per execute; ``marker`` gets a line
    (the batch size) each time execute starts."""
    params = f'parameters {{ key: "delay" value {{ string_value: "{delay}" }} }}\n'
    if marker is not None:
        params += (
            f'parameters {{ key: "marker" value {{ string_value: "{marker}" }} }}\n'
        )
    batching = "dynamic_batching { max_queue_delay_microseconds: 1000 }\n"
    config = textwrap.dedent(
        f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: {max_batch_size}
        input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
        output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
        instance_group [ {{ count: 1, kind: KIND_CPU }} ]
        """
    )
    version = repo / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(config + batching + params)
    (version / "model.py").write_text(textwrap.dedent(ECHO_PY))


@dataclass
class Outcome:
    ok: bool
    code: str  # HTTP status as text, gRPC code name, or the exception class
    message: str = ""
    seconds: float = 0.0


def http_infer(port: int, model: str, timeout: float = 30.0) -> Outcome:
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "data": [1, 2, 3, 4],
                }
            ]
        }
    )
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body)
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, type(exc).__name__, str(exc), time.monotonic() - start)
    finally:
        conn.close()
    message = ""
    if response.status != 200:
        try:
            message = str(json.loads(data).get("error", ""))
        except ValueError:
            message = data[:200].decode("utf-8", "replace")
    return Outcome(
        response.status == 200, str(response.status), message, time.monotonic() - start
    )


def grpc_request(model: str) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    return request


def grpc_infer(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, model: str, timeout: float = 30.0
) -> Outcome:
    start = time.monotonic()
    try:
        stub.ModelInfer(grpc_request(model), timeout=timeout)
    except grpc.RpcError as error:
        return Outcome(
            False, error.code().name, error.details() or "", time.monotonic() - start
        )
    return Outcome(True, "OK", "", time.monotonic() - start)


def stub_for(
    url: str,
) -> tuple[grpc.Channel, service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(url)
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def http_get(port: int, path: str, timeout: float = 5.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def http_post(
    port: int, path: str, body: str = "", timeout: float = 60.0
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def wait_for_lines(path: Path, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return True
        time.sleep(0.02)
    return False


def connect_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the connection reached the backlog of a listener being closed.
        return True
