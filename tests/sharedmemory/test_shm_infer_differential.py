"""Infer requests with shared memory parameters that Triton 2.51 refuses (or
takes), answered with its status and words; the cases the differential fuzz
(tests/fuzz/test_differential_shm.py) found tritonx answering otherwise. The same
table runs against the real Triton when TRITONX_REFERENCE_CMD is given.

Over gRPC: contents beside a region, an offset and a size without one (the offset
is named), a class count of 0, a region with a class count. Over HTTP: a region
with a class count (before the output's name is read), members that are JSON null
(there, of the wrong type), the offset and size of a tensor without a region
(type-checked all the same), a `binary_data` that is no boolean beside a region.
Both: a zero byte size inside a region is taken (the core then judges the size),
at its start refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from serverutil import RunningServer, run_either
from shmutil import fresh_region, raw
from testmodels import ADD_SUB, ADD_SUB_PY
from tritonclient.grpc import service_pb2, service_pb2_grpc

REGION_BYTES = 64
KEYS = {"tritonx": "/tritonx_shm_diff_x", "reference": "/tritonx_shm_diff_r"}
ID = "[request id: <id_unknown>] "
Request = service_pb2.ModelInferRequest
Tensor = service_pb2.ModelInferRequest.InferInputTensor
Output = service_pb2.ModelInferRequest.InferRequestedOutputTensor
OK = ("OK", "")
ZERO_SIZE_INSIDE = (
    ID + "input byte size mismatch for input 'INPUT0' for model 'add_sub'. Expected "
    "16, got 0"
)


def _grpc_request(**input0: Any) -> Request:
    """add_sub: INPUT0 from region 'in' (16 bytes at 16) unless ``input0`` sets
    its parameters (or contents); INPUT1 inline."""
    request = Request(model_name="add_sub")
    first = Tensor(name="INPUT0", datatype="FP32", shape=[4])
    params = input0.pop("parameters", {"shared_memory_region": "in",
                                       "shared_memory_byte_size": 16,
                                       "shared_memory_offset": 16})  # fmt: skip
    for key, value in params.items():
        kind = "string_param" if isinstance(value, str) else "int64_param"
        setattr(first.parameters[key], kind, value)
    if "contents" in input0:
        first.contents.fp32_contents.extend(input0["contents"])
    second = Tensor(name="INPUT1", datatype="FP32", shape=[4])
    second.contents.fp32_contents.extend([1.0] * 4)
    request.inputs.extend([first, second])
    return request


def _with_output(request: Request, **params: Any) -> Request:
    output = Output(name="OUTPUT0")
    for key, value in params.items():
        kind = "string_param" if isinstance(value, str) else "int64_param"
        setattr(output.parameters[key], kind, value)
    request.outputs.append(output)
    return request


def _refusal(message: str) -> tuple[str, str]:
    return ("INVALID_ARGUMENT", message)


OUT_16 = {"shared_memory_region": "out", "shared_memory_byte_size": 16}
IN_REGION = {"shared_memory_region": "in", "shared_memory_byte_size": 0}
GRPC_CASES: dict[str, tuple[Callable[[], Request], tuple[str, str]]] = {
    "content_beside_region": (
        lambda: _grpc_request(contents=[1.0] * 4),
        _refusal(
            "unexpected 'content' provided when using shared memory for input "
            "tensor 'INPUT0' for model 'add_sub'"
        ),
    ),
    "offset_and_size_without_region": (
        lambda: _grpc_request(
            parameters={"shared_memory_byte_size": 16, "shared_memory_offset": 16},
            contents=[1.0] * 4,
        ),
        _refusal(
            "'shared_memory_offset' can not be specified without "
            "'shared_memory_region' parameter for tensor 'INPUT0'"
        ),
    ),
    "class_count_zero": (
        lambda: _with_output(_grpc_request(), classification=0),
        _refusal("invalid value for 'classification' parameter, expected >= 0"),
    ),
    "region_and_class_count": (
        lambda: _with_output(_grpc_request(), classification=1, **OUT_16),
        _refusal("output can't set both 'shared_memory_region' and 'classification'"),
    ),
    "region_output": (lambda: _with_output(_grpc_request(), **OUT_16), OK),
    "zero_size_inside": (
        lambda: _grpc_request(parameters={**IN_REGION, "shared_memory_offset": 16}),
        _refusal(ZERO_SIZE_INSIDE),
    ),
    "zero_size_at_start": (
        lambda: _grpc_request(parameters=IN_REGION),
        _refusal("Invalid offset + byte size for shared memory region: 'in'"),
    ),
}


def _body(input0: dict[str, Any], output: dict[str, Any] | None = None) -> Any:
    inputs = [
        {"name": "INPUT0", "datatype": "FP32", "shape": [4], **input0},
        {"name": "INPUT1", "datatype": "FP32", "shape": [4], "data": [1.0] * 4},
    ]
    body: dict[str, Any] = {"inputs": inputs}
    if output is not None:
        body["outputs"] = [output]
    return body


IN_16 = {"parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 16}}
DATA = {"data": [1.0] * 4}
NOT_UNSIGNED = "attempt to access JSON non-unsigned-integer as unsigned-integer"
NOT_BOOL = "attempt to access JSON non-boolean as boolean"
CONFLICT = "Output can't set both 'shared_memory_region' and 'classification'"
HTTP_CASES: dict[str, tuple[Any, tuple[int, str]]] = {
    "region_and_class_count": (
        _body(
            IN_16, {"name": "OUTPUT0", "parameters": {**OUT_16, "classification": 1}}
        ),
        (400, CONFLICT),
    ),
    "region_and_class_count_no_name": (
        _body(IN_16, {"parameters": {**OUT_16, "classification": 0}}),
        (400, CONFLICT),
    ),
    "binary_data_null": (
        _body(DATA, {"name": "OUTPUT0", "parameters": {"binary_data": None}}),
        (500, f"Unable to parse 'binary_data': {NOT_BOOL}"),
    ),
    "binary_data_not_bool_beside_region": (
        _body(DATA, {"name": "OUTPUT0", "parameters": {**OUT_16, "binary_data": 1}}),
        (500, f"Unable to set 'binary_data': {NOT_BOOL}"),
    ),
    "offset_null_on_data_input": (
        _body({**DATA, "parameters": {"shared_memory_offset": None}}),
        (500, f"Unable to parse 'shared_memory_offset': {NOT_UNSIGNED}"),
    ),
    "size_string_on_data_input": (
        _body({**DATA, "parameters": {"shared_memory_byte_size": "16"}}),
        (500, f"Unable to parse 'shared_memory_byte_size': {NOT_UNSIGNED}"),
    ),
    "offset_null_on_output": (
        _body(DATA, {"name": "OUTPUT0", "parameters": {"shared_memory_offset": None}}),
        (500, f"Unable to parse 'shared_memory_offset': {NOT_UNSIGNED}"),
    ),
    "zero_size_inside": (
        _body(
            {"parameters": {"shared_memory_region": "in", "shared_memory_offset": 16}}
        ),
        (400, ZERO_SIZE_INSIDE),
    ),
}


@pytest.fixture(scope="module", params=["tritonx", "tritonx-python-http", "reference"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The server (tritonx with either HTTP engine, or the reference), with regions
    'in' (16 FP32 values) and 'out' registered."""
    kind, *engine = request.param.split("-", 1)
    args = ["--http-engine=python"] if engine else []
    repo = tmp_path_factory.mktemp("shm_infer_diff") / "repo"
    (repo / "add_sub" / "1").mkdir(parents=True)
    (repo / "add_sub" / "config.pbtxt").write_text(ADD_SUB)
    (repo / "add_sub" / "1" / "model.py").write_text(ADD_SUB_PY)
    regions = {}
    for name in ("in", "out"):
        regions[name] = fresh_region(f"{KEYS[kind]}_{name}", REGION_BYTES)
    regions["in"].buf[:64] = np.arange(16, dtype=np.float32).tobytes()
    try:
        with run_either(kind, repo, *args) as running:
            for name, region in regions.items():
                body = {"key": "/" + region.name, "byte_size": REGION_BYTES}
                path = f"/v2/systemsharedmemory/region/{name}/register"
                assert raw(running, "POST", path, body)[0] == 200
            yield running
    finally:
        for region in regions.values():
            region.close()
            region.unlink()


@pytest.mark.parametrize("case", sorted(GRPC_CASES))
def test_grpc(served: RunningServer, case: str) -> None:
    build, expected = GRPC_CASES[case]
    with grpc.insecure_channel(served.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            stub.ModelInfer(build(), timeout=30)
            answer = OK
        except grpc.RpcError as error:
            answer = (error.code().name, error.details())
    assert answer == expected


@pytest.mark.parametrize("case", sorted(HTTP_CASES))
def test_http(served: RunningServer, case: str) -> None:
    body, expected = HTTP_CASES[case]
    status, reply = raw(served, "POST", "/v2/models/add_sub/infer", body)
    assert (status, reply.get("error") if status != 200 else json.dumps(reply)) == (
        expected
    )
