"""Messages a client should not send, answered as tritonserver 2.51 answers them.

Undecodable request messages (raw bytes through a grpc channel) and a TraceSetting
that tries to move the trace file. A real ``tritonx-server``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

pytest.importorskip("tritonx._native", reason="core not built")

import tritonclient.grpc as grpcclient
from serverutil import RunningServer, run_server
from testmodels import ECHO_MODEL
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""

SERVICE = "/inference.GRPCInferenceService/"
# A field tag announcing a length-delimited field longer than the message.
GARBAGE = b"\x0a\xff\xff\xff\x0f garbage"
CONTROL_RPCS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("malformed") / "repo"
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "config.pbtxt").write_text(textwrap.dedent(CONFIG))
    (root / "echo" / "1" / "model.py").write_text(textwrap.dedent(ECHO_MODEL))
    with run_server(root, "--allow-metrics=false") as running:
        yield running


@pytest.fixture()
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.grpc_url)
    yield ch
    ch.close()


def _raw_unary(channel: grpc.Channel, path: str) -> grpc.UnaryUnaryMultiCallable:
    return channel.unary_unary(
        path, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


def _parse_failure(call: grpc.UnaryUnaryMultiCallable) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(GARBAGE, timeout=30)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "Unable to parse request"


def test_undecodable_model_infer(channel: grpc.Channel) -> None:
    _parse_failure(_raw_unary(channel, SERVICE + "ModelInfer"))


@pytest.mark.parametrize("rpc", CONTROL_RPCS)
def test_undecodable_control_request(channel: grpc.Channel, rpc: str) -> None:
    _parse_failure(_raw_unary(channel, SERVICE + rpc))


def test_undecodable_health_check(channel: grpc.Channel) -> None:
    _parse_failure(_raw_unary(channel, "/grpc.health.v1.Health/Check"))


def test_undecodable_stream_message_ends_the_stream(channel: grpc.Channel) -> None:
    # tritonserver stops reading at a message it cannot parse and closes the stream
    # with OK, without a response.
    call = channel.stream_stream(
        SERVICE + "ModelStreamInfer",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    assert list(call(iter([GARBAGE]), timeout=30)) == []


def test_stream_answers_what_came_before_an_undecodable_message(
    channel: grpc.Channel,
) -> None:
    # Reading stops at the garbage: the request before it is answered, the one
    # after it is never read, and the stream ends with OK (as in tritonserver).
    def request(rid: str) -> bytes:
        message = service_pb2.ModelInferRequest(model_name="echo", id=rid)
        tensor = message.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 2])
        del tensor  # (its data travels in raw_input_contents)
        message.raw_input_contents.append(np.ones((1, 2), np.float32).tobytes())
        return message.SerializeToString()

    call = channel.stream_stream(
        SERVICE + "ModelStreamInfer",
        request_serializer=lambda b: b,
        response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
    )
    answers = list(
        call(iter([request("before"), GARBAGE, request("after")]), timeout=30)
    )
    assert [a.infer_response.id for a in answers] == ["before"]
    assert answers[0].error_message == ""


def test_server_still_serves_after_garbage(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inp = grpcclient.InferInput("INPUT0", [1, 2], "FP32")
        inp.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
        assert client.infer("echo", [inp]).as_numpy("OUTPUT0").tolist() == [[1, 1]]
    finally:
        client.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"trace_file": "/tmp/elsewhere.json"},
        {"trace_file": None},  # clearing it is refused too
        {"trace_file": "/tmp/x.json", "trace_level": ["TIMESTAMPS"]},
    ],
)
@pytest.mark.parametrize("model", ["", "echo"])
def test_trace_file_cannot_be_set_over_the_network(
    server: RunningServer, settings: dict[str, object], model: str
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        before = client.get_trace_settings(as_json=True)
        with pytest.raises(InferenceServerException) as info:
            client.update_trace_settings(model_name=model, settings=settings)
        assert info.value.status() == "StatusCode.UNIMPLEMENTED"
        assert info.value.message() == (
            "trace file location can not be updated through network protocol"
        )
        # Nothing of the refused update was applied.
        assert client.get_trace_settings(as_json=True) == before
    finally:
        client.close()


def test_other_trace_settings_still_update(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        client.update_trace_settings(settings={"trace_rate": "10"})
        settings = client.get_trace_settings(as_json=True)["settings"]
        assert settings["trace_rate"]["value"] == ["10"]
        assert settings["trace_file"]["value"] == [""]
    finally:
        client.update_trace_settings(settings={"trace_rate": None})
        client.close()
