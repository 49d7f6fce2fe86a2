"""L0_grpc's health probe (grpc-health-probe expects SERVING from
grpc.health.v1.Health/Check) and what a method no service offers gets, as a
differential test: the same calls go to tritonx and, when TRITONX_REFERENCE_CMD is
given, to Triton 2.51, and the answers (bytes, or status code and details) must be
equal.

The rest of L0_grpc is covered elsewhere: restricted protocols and header
forwarding (test_grpc_restricted.py, test_qa_parameters_outputs.py), compression
(test_grpc_compression.py), model control (test_grpc_control.py), the explicit
*_contents fields (test_grpc_differential.py), the aio client
(test_qa_aio_clients.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from serverutil import differential, run_either
from testmodels import ECHO_FP32_CONFIG, ECHO_MODEL, write_model

CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # HealthCheckResponse{status: SERVING}


def _service(name: str) -> bytes:
    """A HealthCheckRequest naming ``name``."""
    data = name.encode()
    return b"\x0a" + bytes([len(data)]) + data


# name -> (method, request bytes, streaming answer)
CALLS: dict[str, tuple[str, bytes, bool]] = {
    "check, no service": (CHECK, b"", False),
    "check, the inference service": (
        CHECK,
        _service("inference.GRPCInferenceService"),
        False,
    ),
    "check, an unknown service": (CHECK, _service("nope"), False),
    "check, an undecodable request": (CHECK, b"\xff\xff", False),
    "watch": ("/grpc.health.v1.Health/Watch", b"", True),
    "an unknown health method": ("/grpc.health.v1.Health/Nope", b"", False),
    "an unknown inference method": (
        "/inference.GRPCInferenceService/NoSuchRpc",
        b"",
        False,
    ),
    "an unknown service": ("/foo.Bar/Baz", b"", False),
}


def _call(channel: grpc.Channel, method: str, data: bytes, stream: bool) -> Any:
    try:
        if stream:
            return list(channel.unary_stream(method)(data, timeout=30))
        return channel.unary_unary(method)(data, timeout=30)
    except grpc.RpcError as error:
        return error.code().name, error.details()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_grpc")
    write_model(root, "echo", ECHO_FP32_CONFIG, ECHO_MODEL)
    return root


def test_health_and_unknown_methods(repo: Path) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with (
            run_either(kind, repo) as server,
            grpc.insecure_channel(server.grpc_url) as channel,
        ):
            return {name: _call(channel, *call) for name, call in CALLS.items()}

    seen = differential(scenario)
    for name in ("check, no service", "check, an unknown service"):
        assert seen[name] == SERVING, name
    assert seen["check, an undecodable request"] == (
        "INTERNAL",
        "Unable to parse request",
    )
    for name in (
        "watch",
        "an unknown health method",
        "an unknown inference method",
        "an unknown service",
    ):
        assert seen[name] == ("UNIMPLEMENTED", ""), name
