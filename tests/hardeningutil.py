"""The server of the HTTP hardening tests (tests/frontends/test_http_hardening.py,
test_http_json_values.py): an identity model and one that echoes the request
parameters it sees (also test_http_access.py's), on either HTTP engine; and raw
POST helpers."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from serverutil import RunningServer, run_http_only
from testmodels import ECHO_MODEL

IDENTITY_CONFIG = """
name: "identity"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""
# Echoes the request parameters the model sees, as JSON text.
PARAMS_CONFIG = """
name: "params"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "PARAMS" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
PARAMS_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "PARAMS", np.array([r.parameters().encode()], dtype=np.object_))])
            for r in requests]
"""
FP32_INPUT = {"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1]}


@pytest.fixture(scope="module", params=["python", "native"])
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("hardening")
    for name, config, code in (
        ("identity", IDENTITY_CONFIG, ECHO_MODEL),
        ("params", PARAMS_CONFIG, PARAMS_PY),
    ):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(code)
    with run_http_only(repo, request.param) as running:
        yield running


def post(
    server: RunningServer, path: str, body: bytes, timeout: float = 120
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(
        "127.0.0.1", server.ports["http"], timeout=timeout
    )
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def error_text(data: bytes) -> str:
    return str(json.loads(data)["error"])
