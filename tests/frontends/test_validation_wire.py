"""Shapes and values that must be refused before they reach a model, on both protocols.

Element counts that wrap in int64, negative dims, a zero batch, integers past 64 bits
and strings that are not Unicode: each gets Triton's 400 / INVALID_ARGUMENT with a
clear message, never a 500 / INTERNAL carrying implementation text. A real
``tritonx-server`` with a Python model; HTTP through ``http.client``, gRPC through
``tritonclient.grpc`` and raw protobuf messages.
"""

from __future__ import annotations

import http.client
import json
import textwrap
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")

from serverutil import RunningServer, run_server
from testmodels import ECHO_MODEL
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritonx import _native
from tritonx.errors import InvalidArgumentError

BATCHED = """
name: "batched"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""
FIXED = """
name: "fixed"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
UNBATCHED = """
name: "unbatched"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
"""

INT64_MAX = 2**63 - 1
TOO_BIG = f"byte size for tensor 'INPUT0' exceeds maximum size of {INT64_MAX}"
LEAKS = ("pybind11", "Unable to cast", "incompatible", "TypeError", "ValueError")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("validation") / "repo"
    for name, config in (
        ("batched", BATCHED),
        ("fixed", FIXED),
        ("unbatched", UNBATCHED),
    ):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(textwrap.dedent(config))
        (root / name / "1" / "model.py").write_text(textwrap.dedent(ECHO_MODEL))
    with run_server(root, "--allow-metrics=false") as running:
        yield running


@pytest.fixture()
def stub(server: RunningServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.grpc_url)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


# -- helpers -----------------------------------------------------------------------


def http_infer(
    server: RunningServer, model: str, header: dict[str, Any], binary: bytes = b""
) -> tuple[int, str]:
    """POST an infer request (JSON, or JSON + binary tensor data); (status, error)."""
    body = json.dumps(header).encode()
    headers = {"Content-Type": "application/json"}
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(body))
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request("POST", f"/v2/models/{model}/infer", body + binary, headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    if response.status == 200:
        return 200, ""
    return response.status, str(json.loads(payload)["error"])


def binary_input(shape: list[int], data: bytes) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP32",
                "shape": shape,
                "parameters": {"binary_data_size": len(data)},
            }
        ]
    }


def json_input(shape: list[int], data: list[float], **request: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": shape, "data": data}]
    }
    body.update(request)
    return body


def grpc_infer(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    model: str,
    shape: list[int],
    raw: bytes,
) -> tuple[grpc.StatusCode, str]:
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="INPUT0", datatype="FP32")
    tensor.shape.extend(shape)
    request.raw_input_contents.append(raw)
    try:
        stub.ModelInfer(request, timeout=60)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def assert_clean(message: str) -> None:
    for leak in LEAKS:
        assert leak not in message, message


# -- element counts that wrap --------------------------------------------------------

WRAPPING = [
    # 2^62+4 FP32 elements = 2^64+16 bytes: wrapped, 16 bytes of data would match.
    ("batched", [1, 2**62 + 4], 16),
    ("unbatched", [2**62 + 4, 1], 16),
    # 2^32 * 2^32 elements wraps to 0 elements.
    ("unbatched", [2**32, 2**32], 0),
]


@pytest.mark.parametrize(("model", "shape", "size"), WRAPPING)
def test_http_wrapping_byte_size(
    server: RunningServer, model: str, shape: list[int], size: int
) -> None:
    status, error = http_infer(
        server, model, binary_input(shape, b"\0" * size), b"\0" * size
    )
    assert (status, error) == (400, TOO_BIG)


@pytest.mark.parametrize(("model", "shape", "size"), WRAPPING)
def test_grpc_wrapping_byte_size(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    model: str,
    shape: list[int],
    size: int,
) -> None:
    assert grpc_infer(stub, model, shape, b"\0" * size) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        TOO_BIG,
    )


# -- negative dims (gRPC's int64 shape allows them) ----------------------------------


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        ("batched", [1, -4], "tensor 'INPUT0' contains an invalid dimension [1,-4]"),
        (
            "unbatched",
            [-2, -2],
            "tensor 'INPUT0' contains an invalid dimension [-2,-2]",
        ),
        ("fixed", [-1, 4], "tensor 'INPUT0' contains an invalid dimension [-1,4]"),
        (
            "batched",
            [1, -1],
            "[request id: <id_unknown>] All input dimensions should be specified for "
            "input 'INPUT0' for model 'batched', got [1,-1]",
        ),
    ],
)
def test_grpc_negative_dims(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    model: str,
    shape: list[int],
    message: str,
) -> None:
    assert grpc_infer(stub, model, shape, b"\0" * 16) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
    )


# -- a zero batch ----------------------------------------------------------------------

ZERO_BATCH = (
    "[request id: <id_unknown>] input byte size mismatch for input 'INPUT0' for "
    "model 'fixed'. Expected 16, got 0"
)


def test_http_zero_batch(server: RunningServer) -> None:
    assert http_infer(server, "fixed", json_input([0, 4], [])) == (400, ZERO_BATCH)


def test_grpc_zero_batch(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    assert grpc_infer(stub, "fixed", [0, 4], b"") == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ZERO_BATCH,
    )
    # One item's worth of data under a zero batch dim is refused as well.
    code, message = grpc_infer(stub, "fixed", [0, 4], b"\0" * 16)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == (
        "[request id: <id_unknown>] inference request batch-size must be >= 1 for "
        "'fixed'"
    )


def test_zero_sized_non_batch_dim_is_served(
    server: RunningServer, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    assert grpc_infer(stub, "batched", [2, 0], b"") == (grpc.StatusCode.OK, "")
    assert http_infer(server, "unbatched", json_input([0, 3], [])) == (200, "")


# -- integers past 64 bits and strings that are not Unicode over HTTP JSON ----------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(binary_input([1, 2**63], b""), id="dim-2^63"),
        pytest.param(
            json_input([1, 1], [1.0], parameters={"priority": 2**70}), id="priority"
        ),
        pytest.param(
            json_input([1, 1], [1.0], parameters={"sequence_id": 2**65}),
            id="sequence_id",
        ),
        pytest.param(
            json_input([1, 1], [1.0], parameters={"timeout": 2**65}), id="timeout"
        ),
    ],
)
def test_http_out_of_range_integers(
    server: RunningServer, body: dict[str, Any]
) -> None:
    status, error = http_infer(server, "batched", body)
    assert status == 400, error
    assert_clean(error)


def test_http_lone_surrogate_request_id(server: RunningServer) -> None:
    # json.dumps escapes it as "\ud800", which decodes back to a lone surrogate.
    status, error = http_infer(
        server, "batched", json_input([1, 1], [1.0], id="\ud800")
    )
    assert status == 400, error
    assert_clean(error)


# -- the binding itself, for any caller ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "\ud800"}, "Unable to parse 'id': not a valid UTF-8 string"),
        ({"id": 7}, "Unable to parse 'id': expected a string"),
        (
            {"inputs": [("X", "FP32", [1, 2**63], b"")]},
            "Unable to parse 'shape' for input 'X': 9223372036854775808 is out of the "
            "int64 range",
        ),
        (
            {"inputs": [("X", "FP32", [1, "2"], b"")]},
            "Unable to parse 'shape' for input 'X': expected an integer",
        ),
        (
            {"inputs": [("X", "FP32", [1], 42)]},
            "the data of input 'X' is not a contiguous bytes-like object",
        ),
        (
            {"parameters": {"priority": 2**70}},
            "Unable to parse 'priority': 1180591620717411303424 does not fit in a "
            "64-bit integer",
        ),
        (
            {"parameters": {"sequence_id": 2**65}},
            "Unable to parse 'sequence_id': 36893488147419103232 does not fit in a "
            "64-bit integer",
        ),
        (
            {"parameters": {"tag": "\udc80"}},
            "Unable to parse 'tag': not a valid UTF-8 string",
        ),
        (
            {"parameters": {"tag": [1]}},
            "Unable to parse 'tag': expected a boolean, an integer, a number or a string",
        ),
        (
            {"requested_outputs": ["\ud800"]},
            "Unable to parse output name: not a valid UTF-8 string",
        ),
    ],
)
def test_request_binding_raises_invalid_argument(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        _native.Request(**kwargs)
    assert str(info.value) == message


def test_request_binding_keeps_the_full_uint64_range() -> None:
    request = _native.Request(
        inputs=[("X", "FP32", [np.int64(1), 2], np.zeros(2, np.float32))],
        parameters={"priority": 2**64 - 1, "sequence_id": 2**64 - 1},
    )
    assert request.priority == 2**64 - 1
    assert request.correlation_id == 2**64 - 1
    assert request.inputs[0].shape == [1, 2]


def test_registry_find_with_a_lone_surrogate() -> None:
    with pytest.raises(InvalidArgumentError):
        _native.ModelRegistry().find("\ud800")
