"""The gRPC frontend against the real ``tritonclient.grpc`` (sync and aio) clients.

The server is a real ``tritonx`` (``python -m tritonx``) in explicit model-control mode
over the python-backend repository of tests/grpcutil.py: every control-plane answer
checked here comes from the real model manager. Where Triton's answer differs from
what one might guess, the expectation was checked against Triton 2.51.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import (
    DTYPES,
    expect_error,
    fp32_input,
    make_input,
    sample,
)
from serverutil import RunningServer
from tritonclient.grpc import service_pb2, service_pb2_grpc

# -- health and metadata ---------------------------------------------------------------


def test_server_live_ready(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()


def test_health_check(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        # HealthCheckResponse{status: SERVING (1)}
        assert check(b"") == b"\x08\x01"


def test_unknown_method_is_unimplemented(server: RunningServer) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/NoSuchRpc")
        with pytest.raises(grpc.RpcError) as info:
            call(b"")
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_server_metadata(client: grpcclient.InferenceServerClient) -> None:
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "triton"
    assert "model_repository" in meta["extensions"]
    assert "statistics" in meta["extensions"]


def test_model_ready(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_model_ready("identity")
    assert client.is_model_ready("multi", "3")
    assert not client.is_model_ready("multi", "2")
    # A model whose initialize failed, one never loaded and one that does not exist
    # are all simply not ready (Triton answers no error for any of them).
    assert not client.is_model_ready("notready")
    assert not client.is_model_ready("slowload")
    assert not client.is_model_ready("nosuch")


def test_model_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("multi", as_json=True)
    assert meta == {
        "name": "multi",
        "versions": ["1", "3"],
        "platform": "python",
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": ["-1", "-1"]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": ["-1", "-1"]}],
    }
    # Without batching there is no batch dimension; BF16 is named as on the wire.
    meta = client.get_model_metadata("nobatch", as_json=True)
    assert meta["inputs"][0]["shape"] == ["-1"]
    meta = client.get_model_metadata("identity_bf16", as_json=True)
    assert meta["outputs"][0]["datatype"] == "BF16"

    config = client.get_model_config("identity").config
    assert config.name == "identity"
    assert config.backend == "python"
    assert config.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in config.input] == [("INPUT0", [-1])]
    assert [(g.name, g.count) for g in config.instance_group] == [("identity_0", 1)]
    assert client.get_model_config("multi").config.version_policy.HasField("all")

    for name, expected in (
        ("nosuch", "Request for unknown model: 'nosuch' is not found"),
        ("notready", "Request for unknown model: 'notready' has no available versions"),
    ):
        message = expect_error(
            grpc.StatusCode.NOT_FOUND, client.get_model_metadata, name
        )
        assert message == expected
    message = expect_error(grpc.StatusCode.NOT_FOUND, client.get_model_config, "nosuch")
    assert message == "Request for unknown model: 'nosuch' is not found"


# -- inference: data encodings -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_infer_raw_every_datatype(
    client: grpcclient.InferenceServerClient, dtype: str
) -> None:
    data = sample(dtype)
    result = client.infer(
        f"identity_{dtype.lower()}",
        [make_input("INPUT0", data, dtype)],
        request_id=f"req-{dtype}",
    )
    response = result.get_response()
    assert response.model_name == f"identity_{dtype.lower()}"
    assert response.model_version == "1"
    assert response.id == f"req-{dtype}"
    assert len(response.outputs) == 1 and len(response.raw_output_contents) == 1
    out = response.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == ("OUTPUT0", dtype, [2, 3])
    if dtype == "BF16":
        got = np.frombuffer(response.raw_output_contents[0], dtype="<u2").reshape(2, 3)
        np.testing.assert_array_equal(got, data)
    else:
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def _typed_request(dtype: str, data: np.ndarray) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(
        model_name=f"identity_{dtype.lower()}", id="typed"
    )
    tensor = request.inputs.add(name="INPUT0", datatype=dtype, shape=list(data.shape))
    flat = data.flatten()
    field = {
        "BOOL": "bool_contents",
        "INT8": "int_contents",
        "INT16": "int_contents",
        "INT32": "int_contents",
        "INT64": "int64_contents",
        "UINT8": "uint_contents",
        "UINT16": "uint_contents",
        "UINT32": "uint_contents",
        "UINT64": "uint64_contents",
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
        "BYTES": "bytes_contents",
    }[dtype]
    values = [bytes(v) for v in flat] if dtype == "BYTES" else flat.tolist()
    getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.parametrize("dtype", [d for d in DTYPES if d not in ("FP16", "BF16")])
def test_infer_typed_contents(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, dtype: str
) -> None:
    data = sample(dtype)
    response = stub.ModelInfer(_typed_request(dtype, data))
    assert response.id == "typed"
    # Responses always carry raw contents, one entry per output.
    assert len(response.raw_output_contents) == 1
    assert not response.outputs[0].HasField("contents")
    raw = response.raw_output_contents[0]
    if dtype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            size = int.from_bytes(raw[offset : offset + 4], "little")
            items.append(raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
        assert items == list(data.flatten())
    else:
        np_type = np.bool_ if dtype == "BOOL" else data.dtype
        got = np.frombuffer(raw, dtype=np_type).reshape(data.shape)
        np.testing.assert_array_equal(got, data)


def test_typed_fp16_has_no_contents_field(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    request = service_pb2.ModelInferRequest(model_name="identity_fp16")
    request.inputs.add(name="INPUT0", datatype="FP16", shape=[1, 2])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "unable to find data for input tensor 'INPUT0' for model 'identity_fp16' in request."
    )


def test_raw_and_typed_contents_together(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    request = _typed_request("FP32", sample("FP32"))
    request.raw_input_contents.append(sample("FP32").tobytes())
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contents field must not be specified" in info.value.details()


def test_raw_count_mismatch(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = service_pb2.ModelInferRequest(model_name="identity")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
    request.inputs.add(name="INPUT1", datatype="FP32", shape=[1, 1])
    request.raw_input_contents.append(b"\0\0\0\0")
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "unable to find data for input tensor 'INPUT1' for model 'identity' in request."
    )
    # Like Triton, surplus raw entries are ignored.
    request = service_pb2.ModelInferRequest(model_name="identity")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
    request.raw_input_contents.extend([b"\0\0\0\0", b"\0\0\0\0"])
    assert len(stub.ModelInfer(request).raw_output_contents) == 1


def test_unset_parameter(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = service_pb2.ModelInferRequest(model_name="identity")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
    request.raw_input_contents.append(b"\0\0\0\0")
    request.parameters["p"].SetInParent()
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.details() == (
        "invalid value type for 'p' parameter, expected "
        "int64_param, bool_param, or string_param."
    )


def test_zero_sized_output_has_raw_entry(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    request = service_pb2.ModelInferRequest(model_name="identity")
    request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 0])
    request.raw_input_contents.append(b"")
    response = stub.ModelInfer(request)
    assert list(response.outputs[0].shape) == [1, 0]
    assert list(response.raw_output_contents) == [b""]


def test_large_message(client: grpcclient.InferenceServerClient) -> None:
    data = np.random.default_rng(0).random(
        (1, 16 * 1024 * 1024), dtype=np.float32
    )  # 64 MiB
    result = client.infer("identity", [fp32_input(data)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_large_request_fields_in_any_order(server: RunningServer) -> None:
    # Past 1 MiB the server splits raw_input_contents off the message as it parses
    # (csrc/grpc/received_request.h); protobuf allows fields in any order, so the
    # raw entries may come before the tensors they belong to. A surplus entry is
    # ignored, as in Triton.
    data = np.random.default_rng(1).random((1, 1 << 18), dtype=np.float32)  # 1 MiB
    head = service_pb2.ModelInferRequest(model_name="identity", id="late")
    head.inputs.add(name="INPUT0", datatype="FP32", shape=list(data.shape))
    raws = service_pb2.ModelInferRequest()
    raws.raw_input_contents.extend([data.tobytes(), bytes(1 << 20)])
    with grpc.insecure_channel(server.grpc_url) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b,
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        response = call(raws.SerializeToString() + head.SerializeToString(), timeout=60)
    assert response.id == "late"
    assert response.raw_output_contents == [data.tobytes()]


def test_compressed_request(client: grpcclient.InferenceServerClient) -> None:
    data = np.ones((1, 1000), dtype=np.float32)
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            "identity", [fp32_input(data)], compression_algorithm=algorithm
        )
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


# -- inference: errors -------------------------------------------------------------------


def test_unknown_model_and_version(client: grpcclient.InferenceServerClient) -> None:
    message = expect_error(
        grpc.StatusCode.NOT_FOUND, client.infer, "nosuch", [fp32_input()]
    )
    assert message == "Request for unknown model: 'nosuch' is not found"
    # Triton answers NOT_FOUND both for a model with no ready version and for a
    # version it does not serve.
    message = expect_error(
        grpc.StatusCode.NOT_FOUND, client.infer, "notready", [fp32_input()]
    )
    assert message == "Request for unknown model: 'notready' has no available versions"
    message = expect_error(
        grpc.StatusCode.NOT_FOUND,
        client.infer,
        "multi",
        [fp32_input()],
        model_version="2",
    )
    assert message == "Request for unknown model: 'multi' version 2 is not found"
    result = client.infer("multi", [fp32_input()])
    assert result.get_response().model_version == "3"
    assert (
        client.infer("multi", [fp32_input()], model_version="1")
        .get_response()
        .model_version
        == "1"
    )


def test_validation_errors(client: grpcclient.InferenceServerClient) -> None:
    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.infer,
        "identity",
        [make_input("INPUT0", np.ones(4, dtype=np.float32))],
    )
    assert message.startswith(
        "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model "
        "'identity'"
    )
    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.infer,
        "identity",
        [make_input("INPUT0", np.ones((1, 4), dtype=np.int32))],
    )
    assert message == (
        "[request id: <id_unknown>] inference input 'INPUT0' data-type is 'INT32', "
        "but model 'identity' expects 'FP32'"
    )
    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.infer,
        "identity",
        [make_input("BOGUS", np.ones((1, 4), dtype=np.float32))],
    )
    assert message == "unexpected inference input 'BOGUS' for model 'identity'"
    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.infer,
        "identity",
        [fp32_input()],
        outputs=[grpcclient.InferRequestedOutput("NOPE")],
    )
    assert message == "unexpected inference output 'NOPE' for model 'identity'"


def test_invalid_datatype_name(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    request = service_pb2.ModelInferRequest(model_name="identity")
    request.inputs.add(name="INPUT0", datatype="FLOAT", shape=[1, 1])
    request.raw_input_contents.append(b"\0\0\0\0")
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Triton's gRPC frontend passes the name on and its core words it (2.51).
    assert info.value.details() == (
        "[request id: <id_unknown>] inference input 'INPUT0' data-type is "
        "'<invalid>', but model 'identity' expects 'FP32'"
    )


def test_parameters(
    client: grpcclient.InferenceServerClient,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    # Newer tritonclients refuse reserved keys before sending, so send them raw: the
    # server refuses a triton_ key too, in Triton 2.51's gRPC words, and takes
    # 'headers' as a custom parameter, as Triton 2.51 does
    # (tests/frontends/test_grpc_differential.py has the whole table).
    def raw_request(key: str) -> service_pb2.ModelInferRequest:
        request = service_pb2.ModelInferRequest(model_name="identity")
        request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
        request.raw_input_contents.append(np.zeros((1, 4), np.float32).tobytes())
        request.parameters[key].string_param = "x"
        return request

    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(raw_request("triton_foo"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "parameter keys starting with 'triton_' are reserved for Triton usage. Only "
        "the following keys starting with 'triton_' are allowed: "
        "triton_enable_empty_final_response"
    )
    assert stub.ModelInfer(raw_request("headers")).outputs[0].name == "OUTPUT0"
    # Custom parameters reach the model as request.parameters() JSON; the identity
    # model answers pb_utils.TritonError(value, INVALID_ARG) for "fail".
    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.infer,
        "identity",
        [fp32_input()],
        parameters={"fail": "boom"},
    )
    assert message == "boom"
    # Scheduling parameters as the python client sends them (priority as uint64).
    result = client.infer(
        "identity",
        [fp32_input()],
        priority=1,
        timeout=10_000_000,
        parameters={"custom": 3, "flag": True, "name": "x"},
    )
    assert result.as_numpy("OUTPUT0") is not None


def test_requested_outputs(client: grpcclient.InferenceServerClient) -> None:
    result = client.infer(
        "identity", [fp32_input()], outputs=[grpcclient.InferRequestedOutput("OUTPUT0")]
    )
    assert [o.name for o in result.get_response().outputs] == ["OUTPUT0"]
