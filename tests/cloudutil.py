"""What the cloud endpoint tests (SageMaker, Vertex AI) share: python-backend
models written into a test's repository, KServe requests and Triton 2.51's answers
to them, and a server with one of the endpoints on a free port (tritonx or, when
$TRITONX_REFERENCE_CMD names it, the real Triton)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from serverutil import (
    REFERENCE_CMD_ENV,
    free_port,
    reference_command,
    run_reference,
    run_server,
)
from testmodels import (
    REPEAT_CONFIG,
    write_model,  # noqa: F401 - re-exported
)

TEXT = "text/plain"
JSON = "application/json"

# testmodels' decoupled "repeat" model under another name.
DEC_CONFIG = REPEAT_CONFIG.replace('name: "repeat"', 'name: "dec"')
BROKEN = """
name: "broken"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""
BROKEN_PY = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("this model never loads")
"""


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# The variables each cloud endpoint's serve script reads; cloud_server unsets those
# a test does not name.
SAGEMAKER_ENV_KEYS = (
    "SAGEMAKER_TRITON_PING_MODE",
    "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME",
    "SAGEMAKER_TRITON_INFERENCE_TYPE",
)
VERTEX_ENV_KEYS = (
    "AIP_MODE",
    "AIP_HTTP_PORT",
    "AIP_HEALTH_ROUTE",
    "AIP_PREDICT_ROUTE",
    "AIP_STORAGE_URI",
)
_ENV_KEYS = {"sagemaker": SAGEMAKER_ENV_KEYS, "vertex-ai": VERTEX_ENV_KEYS}


@contextmanager
def cloud_server(
    endpoint: str,
    kind: str,
    repo: Path,
    env: dict[str, str],
    *args: str,
    ready: bool = True,
) -> Iterator[int]:
    """tritonx or the reference (``kind``) with the ``endpoint`` ("sagemaker",
    "vertex-ai") on a free port and ``args``, under ``env`` (the endpoint's variables
    not named are unset), once the port accepts; yields the port. The reference half
    skips when no reference command is given."""
    if kind == "reference" and reference_command() is None:
        pytest.skip("TRITONX_REFERENCE_CMD is not set")
    port = free_port()
    flags = (f"--allow-{endpoint}=true", f"--{endpoint}-port={port}", *args)
    with pytest.MonkeyPatch.context() as patch:
        for key in _ENV_KEYS[endpoint]:
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        if kind == "reference":
            server = run_reference([repo], *flags, wait_ready=ready)
        else:
            server = run_server(repo, *flags)
        with server:
            wait_for_port(port)
            yield port


def sagemaker(
    kind: str, repo: Path, env: dict[str, str], *args: str, ready: bool = True
) -> contextlib.AbstractContextManager[int]:
    """cloud_server with the SageMaker endpoint."""
    return cloud_server("sagemaker", kind, repo, env, *args, ready=ready)


def vertex(
    kind: str, repo: Path, env: dict[str, str], *args: str, ready: bool = True
) -> contextlib.AbstractContextManager[int]:
    """cloud_server with the Vertex AI endpoint."""
    return cloud_server("vertex-ai", kind, repo, env, *args, ready=ready)


class Reply(NamedTuple):
    status: int
    content_type: str
    body: bytes
    header_length: str | None = None  # Inference-Header-Content-Length


def call(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return Reply(
            response.status,
            response.getheader("Content-Type", ""),
            response.read(),
            response.getheader("Inference-Header-Content-Length"),
        )
    finally:
        conn.close()


def check_reply(reply: Reply, status: int, content_type: str, body: bytes) -> None:
    """Status and content type exactly; the body exactly, or its start when
    ``body`` ends in "..."."""
    assert (reply.status, reply.content_type) == (status, content_type), reply
    if body.endswith(b"..."):
        assert reply.body.startswith(body[:-3]), reply.body
    else:
        assert reply.body == body


def compact_json(obj: object) -> bytes:
    """JSON as Triton writes it: no blanks."""
    return json.dumps(obj, separators=(",", ":")).encode()


def error_json(message: str) -> bytes:
    return compact_json({"error": message})


def tritonclient_binary_request() -> tuple[bytes, int]:
    """An add_sub request built as Triton's own cloud tests build one: tritonclient's
    generate_request_body (INPUT0 binary, INPUT1 JSON, both outputs binary); returns
    the body and its JSON size."""
    import tritonclient.http as httpclient

    inputs = [httpclient.InferInput(n, [4], "FP32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(np.arange(4, dtype=np.float32), binary_data=True)
    inputs[1].set_data_from_numpy(np.ones(4, dtype=np.float32), binary_data=False)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=True),
    ]
    body, size = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs
    )
    assert size is not None
    return body, size


def check_add_sub_answer(body: bytes, header_length: int) -> None:
    """The answer to tritonclient_binary_request, read by parse_response_body."""
    import tritonclient.http as httpclient

    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=header_length
    )
    a = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + 1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - 1)


F0 = [0.0, 1.0, 2.0, 3.0]
JSON_REQUEST = json.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [4], "data": F0},
            {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [1] * 4},
        ]
    }
).encode()
JSON_ANSWER = (
    b'{"model_name":"add_sub","model_version":"1","outputs":['
    b'{"name":"OUTPUT0","datatype":"FP32","shape":[4],"data":[1.0,2.0,3.0,4.0]},'
    b'{"name":"OUTPUT1","datatype":"FP32","shape":[4],"data":[-1.0,0.0,1.0,2.0]}]}'
)
BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP32",
                "shape": [4],
                "parameters": {"binary_data_size": 16},
            },
            {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [1] * 4},
        ],
        "outputs": [
            {"name": "OUTPUT0", "parameters": {"binary_data": True}},
            {"name": "OUTPUT1"},
        ],
    }
).encode()
BINARY_REQUEST = BINARY_HEADER + struct.pack("<4f", *F0)
BINARY_ANSWER_HEADER = (
    b'{"model_name":"add_sub","model_version":"1","outputs":['
    b'{"name":"OUTPUT0","datatype":"FP32","shape":[4],'
    b'"parameters":{"binary_data_size":16}},'
    b'{"name":"OUTPUT1","datatype":"FP32","shape":[4],"data":[-1.0,0.0,1.0,2.0]}]}'
)
BINARY_ANSWER = BINARY_ANSWER_HEADER + struct.pack("<4f", 1, 2, 3, 4)
NOT_ALLOWED = error_json("Method Not Allowed")
RAW_TWO_INPUTS = error_json(
    "[request id: <id_unknown>] Raw request must only have 1 input (found 1) to be "
    "deduced but got 2 inputs in 'add_sub' model configuration"
)
PARSE_ERROR = b'{"error":"failed to parse the request JSON buffer: '
DECOUPLED = error_json(
    "HTTP end point doesn't support models with decoupled transaction policy"
)


def launch_command(kind: str) -> list[str]:
    """The server command of ``kind``: the reference Triton's (the test skips when
    none is given) or tritonx's."""
    if kind == "reference":
        command = reference_command()
        if command is None:
            pytest.skip(f"{REFERENCE_CMD_ENV} is not set")
        return command
    return [sys.executable, "-m", "tritonx"]


def refused_at_start(
    kind: str, missing_repo: Path, args: Sequence[str], env: dict[str, str]
) -> str:
    """Runs a server of ``kind`` that must refuse its flags before anything
    starts (exit code 1; a repository that does not exist makes a wrongly
    accepted command fail fast too); returns its stderr."""
    done = subprocess.run(
        [*launch_command(kind), f"--model-repository={missing_repo}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr


# SageMaker's binary content type (a JSON header of the size given, then tensors).
SAGEMAKER_MIME = "application/vnd.sagemaker-triton.binary+json;json-header-size="
