"""gRPC ModelInfer / metadata requests Triton 2.51 refuses (or takes), answered with
its status and words: version strings (read as std::stoll, before the model name),
which input a type or shape error names (the first in Triton's hash map of the
request's inputs), typed contents in a field of another type, cut BYTES data,
request parameters of each value type (what gRPC takes where HTTP refuses),
shared memory sizes without a region, and the order of Triton's checks (parameters,
then every input added, then requested outputs, then each input's data); and two
HTTP neighbours. The same table runs
against the real Triton when TRITONX_REFERENCE_CMD is given."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest
from serverutil import (
    RunningServer,
    run_either,
)
from testmodels import ADD_SUB, ADD_SUB_PY
from tritonclient.grpc import service_pb2, service_pb2_grpc

TEXT = """
name: "text"
backend: "python"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ -1 ] } ]
"""
TEXT_PY = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
            for r in requests]
"""

Request = service_pb2.ModelInferRequest
Tensor = service_pb2.ModelInferRequest.InferInputTensor
F = np.arange(4, dtype=np.float32).tobytes()
STOL = (
    "failed to get model version from specified version string '{}' (details: "
    "stol), version should be an integral value > 0"
)
NEGATIVE = (
    "invalid model version specified '{}' , version should be an integral value > 0"
)
ID = "[request id: <id_unknown>] "


def _add_sub(datatype: str = "FP32", shape: tuple[int, ...] = (4,), **kw) -> Request:
    request = Request(model_name="add_sub", **kw)
    for name in ("INPUT0", "INPUT1"):
        request.inputs.append(Tensor(name=name, datatype=datatype, shape=list(shape)))
    request.raw_input_contents.extend([F, F])
    return request


def _with_param(key: str, kind: str, value: object) -> Request:
    request = _add_sub()
    setattr(request.parameters[key], kind, value)
    return request


def _contents(**fields: object) -> Request:
    request = Request(model_name="add_sub")
    contents = service_pb2.InferTensorContents(**fields)
    good = service_pb2.InferTensorContents(fp32_contents=[1.0] * 4)
    request.inputs.append(
        Tensor(name="INPUT0", datatype="FP32", shape=[4], contents=contents)
    )
    request.inputs.append(
        Tensor(name="INPUT1", datatype="FP32", shape=[4], contents=good)
    )
    return request


def _text(wire: bytes, shape: tuple[int, ...] = (1, 1)) -> Request:
    request = Request(model_name="text")
    request.inputs.append(Tensor(name="IN", datatype="BYTES", shape=list(shape)))
    request.raw_input_contents.append(wire)
    return request


def _shm_without_region(key: str, on_output: bool) -> Request:
    request = _add_sub()
    if on_output:
        output = Request.InferRequestedOutputTensor(name="OUTPUT0")
        output.parameters[key].int64_param = 16
        request.outputs.append(output)
    else:
        request.inputs[0].parameters[key].int64_param = 16
    return request


def _duplicate_input() -> Request:
    """INPUT0 given twice, the second with no data: Triton adds every input (and
    refuses the second of a name) before it reads any input's data."""
    request = _add_sub()
    request.inputs.append(Tensor(name="INPUT0", datatype="FP32", shape=[4]))
    return request


def _bad_parameter_and_input() -> Request:
    """A custom parameter of no type, and an input with two data sources: the
    parameters come first."""
    request = _contents(fp32_contents=[1.0] * 4)
    request.raw_input_contents.extend([F, F])
    request.parameters["custom"].CopyFrom(service_pb2.InferParameter())
    return request


def _unknown_output_and_bad_input() -> Request:
    request = _add_sub(shape=(2, 2))
    request.outputs.append(Request.InferRequestedOutputTensor(name="nope"))
    return request


def _unknown_outputs() -> Request:
    """Unknown outputs "zz", "INPUT2", then "yy": Triton keeps the requested
    outputs in a std::set and names the least."""
    request = _add_sub()
    for name in ("zz", "INPUT2", "OUTPUT0", "yy"):
        request.outputs.append(Request.InferRequestedOutputTensor(name=name))
    return request


def _unknown_type_contents() -> Request:
    request = _contents(uint_contents=[1] * 4)
    request.inputs[0].datatype = "FLOAT"
    return request


def _classification(kind: str) -> Request:
    request = _add_sub()
    output = Request.InferRequestedOutputTensor(name="OUTPUT0")
    setattr(output.parameters["classification"], kind, 1)
    request.outputs.append(output)
    return request


def _refusal(message: str) -> tuple[str, str]:
    return ("INVALID_ARGUMENT", message)


OK = ("OK", "")
WORD = struct.pack("<I", 3) + b"abc"
TYPE = "invalid value type for '{}' parameter, expected {}."
INFER_CASES: dict[str, tuple[Callable[[], Request], tuple[str, str]]] = {
    "version_x": (lambda: _add_sub(model_version="x"), _refusal(STOL.format("x"))),
    "version_1x": (lambda: _add_sub(model_version="1x"), OK),
    "version_huge": (
        lambda: _add_sub(model_version="99999999999999999999"),
        _refusal(STOL.format("99999999999999999999")),
    ),
    "version_negative": (
        lambda: _add_sub(model_version="-1"),
        _refusal(NEGATIVE.format("-1")),
    ),
    "datatype": (
        lambda: _add_sub("INT32"),
        _refusal(
            ID + "inference input 'INPUT1' data-type is 'INT32', but model 'add_sub' "
            "expects 'FP32'"
        ),
    ),
    "shape": (
        lambda: _add_sub(shape=(2, 2)),
        _refusal(
            ID + "unexpected shape for input 'INPUT1' for model 'add_sub'. Expected "
            "[4], got [2,2]. "
        ),
    ),
    "contents_of_another_type": (
        lambda: _contents(int_contents=[1] * 4),
        _refusal(
            "unexpected explicit tensor data for input tensor 'INPUT0' for model "
            "'add_sub' of type 'INT32', expected datatype 'FP32'"
        ),
    ),
    "contents_in_two_fields": (
        lambda: _contents(fp32_contents=[1.0] * 4, fp64_contents=[1.0] * 4),
        _refusal(
            "unexpected explicit tensor data for input tensor 'INPUT0' for model "
            "'add_sub', binary data was already supplied."
        ),
    ),
    "bytes_cut_string": (
        lambda: _text(struct.pack("<I", 9) + b"abc"),
        _refusal(
            "incomplete string data for inference input 'IN', expecting string of "
            "length 9 but only 3 bytes available"
        ),
    ),
    "bytes_cut_length": (
        lambda: _text(WORD + b"x"),
        _refusal(
            ID + "incomplete string length indicator for inference input 'IN' for "
            "model 'text', expecting 4 bytes but only 1 bytes available. Please make "
            "sure the string length indicator is in one buffer."
        ),
    ),
    "bytes_ok": (lambda: _text(WORD), OK),
    "priority_string": (
        lambda: _with_param("priority", "string_param", "1"),
        _refusal(TYPE.format("priority", "int64_param or uint64_param")),
    ),
    "timeout_uint64": (
        lambda: _with_param("timeout", "uint64_param", 5),
        _refusal(TYPE.format("timeout", "int64_param")),
    ),
    "timeout_negative": (lambda: _with_param("timeout", "int64_param", -3), OK),
    "sequence_id_uint64": (
        lambda: _with_param("sequence_id", "uint64_param", 5),
        _refusal(TYPE.format("sequence_id", "int64_param or string_param")),
    ),
    "sequence_start_int": (
        lambda: _with_param("sequence_start", "int64_param", 1),
        _refusal(TYPE.format("sequence_start", "bool_param")),
    ),
    "binary_data_output": (
        lambda: _with_param("binary_data_output", "bool_param", True),
        OK,
    ),
    "headers": (lambda: _with_param("headers", "string_param", "x"), OK),
    "custom_uint64": (
        lambda: _with_param("custom", "uint64_param", 1),
        _refusal(TYPE.format("custom", "int64_param, bool_param, or string_param")),
    ),
    "custom_double": (lambda: _with_param("custom", "double_param", 1.5), OK),
    "triton_prefix": (
        lambda: _with_param("triton_x", "bool_param", True),
        _refusal(
            "parameter keys starting with 'triton_' are reserved for Triton usage. "
            "Only the following keys starting with 'triton_' are allowed: "
            "triton_enable_empty_final_response"
        ),
    ),
    "empty_final_int": (
        lambda: _with_param("triton_enable_empty_final_response", "int64_param", 1),
        _refusal(TYPE.format("triton_enable_empty_final_response", "bool_param")),
    ),
    "input_named_twice": (
        _duplicate_input,
        _refusal(ID + "input 'INPUT0' already exists in request"),
    ),
    "parameters_before_inputs": (
        _bad_parameter_and_input,
        _refusal(TYPE.format("custom", "int64_param, bool_param, or string_param")),
    ),
    "reserved_key_before_its_type": (
        lambda: _with_param("triton_x", "uint64_param", 1),
        _refusal(
            "parameter keys starting with 'triton_' are reserved for Triton usage. "
            "Only the following keys starting with 'triton_' are allowed: "
            "triton_enable_empty_final_response"
        ),
    ),
    "outputs_before_inputs": (
        _unknown_output_and_bad_input,
        _refusal("unexpected inference output 'nope' for model 'add_sub'"),
    ),
    "the_least_unknown_output": (
        _unknown_outputs,
        _refusal("unexpected inference output 'INPUT2' for model 'add_sub'"),
    ),
    "contents_of_an_unknown_type": (
        _unknown_type_contents,
        _refusal(
            "unexpected explicit tensor data for input tensor 'INPUT0' for model "
            "'add_sub' of type 'UINT32', expected datatype '<invalid>'"
        ),
    ),
    "classification_int64": (lambda: _classification("int64_param"), OK),
    "classification_uint64": (
        lambda: _classification("uint64_param"),
        _refusal(
            "invalid value type for 'classification' parameter, expected int64_param"
        ),
    ),
    "shm_size_without_region": (
        lambda: _shm_without_region("shared_memory_byte_size", on_output=False),
        _refusal(
            "'shared_memory_byte_size' can not be specified without "
            "'shared_memory_region' parameter for tensor 'INPUT0'"
        ),
    ),
    "shm_offset_without_region_output": (
        lambda: _shm_without_region("shared_memory_offset", on_output=True),
        _refusal(
            "'shared_memory_offset' can not be specified without "
            "'shared_memory_region' parameter for tensor 'OUTPUT0'"
        ),
    ),
}


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("grpc_diff") / "repo"
    for name, config, model in (
        ("add_sub", ADD_SUB, ADD_SUB_PY),
        ("text", TEXT, TEXT_PY),
    ):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        (repo / name / "1" / "model.py").write_text(model)
    with run_either(request.param, repo) as running:
        yield running


@pytest.fixture
def stub(served: RunningServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(served.grpc_url)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def _answer(call: Callable[[], object]) -> tuple[str, str]:
    try:
        call()
    except grpc.RpcError as error:
        return (error.code().name, error.details())
    return OK


@pytest.mark.parametrize("case", sorted(INFER_CASES))
def test_model_infer(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, case: str
) -> None:
    build, expected = INFER_CASES[case]
    assert _answer(lambda: stub.ModelInfer(build(), timeout=30)) == expected


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [
        ("nope", "x", _refusal(STOL.format("x"))),
        ("nope", "-1", _refusal(NEGATIVE.format("-1"))),
        (
            "add_sub",
            "0",
            (
                "NOT_FOUND",
                "Request for unknown model: 'add_sub' version 0 is not found",
            ),
        ),
        (
            "add_sub",
            "007",
            (
                "NOT_FOUND",
                "Request for unknown model: 'add_sub' version 7 is not found",
            ),
        ),
    ],
)
def test_version_strings_of_control_calls(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    name: str,
    version: str,
    expected: tuple[str, str],
) -> None:
    metadata = service_pb2.ModelMetadataRequest(name=name, version=version)
    assert _answer(lambda: stub.ModelMetadata(metadata, timeout=30)) == expected
    config = service_pb2.ModelConfigRequest(name=name, version=version)
    assert _answer(lambda: stub.ModelConfig(config, timeout=30)) == expected
    if expected[0] == "INVALID_ARGUMENT":  # an unknown version is simply not ready
        ready = service_pb2.ModelReadyRequest(name=name, version=version)
        assert _answer(lambda: stub.ModelReady(ready, timeout=30)) == expected


def _load(**parameters: dict[str, object]) -> service_pb2.RepositoryModelLoadRequest:
    request = service_pb2.RepositoryModelLoadRequest(model_name="add_sub")
    for key, value in parameters.items():
        for kind, item in value.items():
            setattr(request.parameters[key], kind, item)
    return request


LOAD_TYPE = "invalid value type for load parameter '{}', expected {}_param."
# Checked before anything else (the model's name, the server's control mode).
CHECKED_FIRST = {
    "statistics_of_all_with_a_bad_version": (
        "ModelStatistics",
        service_pb2.ModelStatisticsRequest(version="x"),
        _refusal(STOL.format("x")),
    ),
    "statistics_of_all_with_a_negative_version": (
        "ModelStatistics",
        service_pb2.ModelStatisticsRequest(version="-1"),
        _refusal(NEGATIVE.format("-1")),
    ),
    "load_with_an_unknown_parameter": (
        "RepositoryModelLoad",
        _load(c={"int64_param": 1}),
        _refusal("unrecognized load parameter 'c'."),
    ),
    "load_with_config_as_bytes": (
        "RepositoryModelLoad",
        _load(config={"bytes_param": b"{}"}),
        _refusal(LOAD_TYPE.format("config", "string")),
    ),
    "load_with_a_file_as_a_string": (
        "RepositoryModelLoad",
        _load(**{"file:1/model.py": {"string_param": "x"}}),
        _refusal(LOAD_TYPE.format("file:1/model.py", "bytes")),
    ),
    "unload_dependents_not_a_bool": (
        "RepositoryModelUnload",
        service_pb2.RepositoryModelUnloadRequest(
            model_name="add_sub",
            parameters={
                "unload_dependents": service_pb2.ModelRepositoryParameter(int64_param=1)
            },
        ),
        _refusal(
            "invalid value type for 'unload_dependents' parameter, expected bool_param."
        ),
    ),
    "load_with_good_parameters_then_the_mode": (
        "RepositoryModelLoad",
        _load(config={"string_param": "{}"}, **{"file:a": {"bytes_param": b""}}),
        (
            "UNAVAILABLE",
            "explicit model load / unload is not allowed if polling is enabled",
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CHECKED_FIRST))
def test_control_requests_checked_first(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, case: str
) -> None:
    """The server is in the default (NONE) control mode: a load or unload with
    good parameters is refused for the mode, after its parameters are checked."""
    method, request, expected = CHECKED_FIRST[case]
    call = getattr(stub, method)
    assert _answer(lambda: call(request, timeout=30)) == expected


@pytest.mark.parametrize(
    ("model", "body", "expected"),
    [
        (
            "add_sub",
            {
                "inputs": [
                    {"name": n, "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}
                    for n in ("INPUT0", "INPUT1")
                ],
                "parameters": {"headers": "x"},
            },
            200,
        ),
        (
            "text",
            {
                "inputs": [
                    {"name": "IN", "datatype": "BYTES", "shape": [1, 1], "data": [5]}
                ]
            },
            (
                500,
                "Unable to parse JSON bytes array: attempt to access JSON non-string "
                "as string",
            ),
        ),
    ],
    ids=["headers_is_a_custom_parameter", "bytes_json_number"],
)
def test_http_too(
    served: RunningServer, model: str, body: dict, expected: object
) -> None:
    import http.client
    import json

    host, port = served.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", f"/v2/models/{model}/infer", body=json.dumps(body))
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if expected == 200:
        assert response.status == 200, answer
    else:
        assert (response.status, json.loads(answer)["error"]) == expected
