"""Fuzzing the gRPC frontend: field-level and byte-level damage to valid requests.

Every call goes through a raw ``grpc`` channel with identity serializers (the
bytes we built are the bytes sent) and a 5 s deadline. The answer must pass
``fuzzutil.grpc_verdict``: a client-error code for a request the server could
parse, INTERNAL "Unable to parse request" (what Triton's grpc++ answers) or
INVALID_ARGUMENT for bytes that are no such message, never implementation text.
The server process must survive, and the liveness prober (conftest.py) must see
``/v2/health/live`` answer in < 50 ms throughout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fuzzutil import ANSWER_S, TALLY, Target, fuzz, grpc_verdict
from google.protobuf.message import DecodeError
from grpc_strategies import infer_requests, model_names, mutate_request, versions
from http_strategies import mutate_bytes
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

SERVICE = "/inference.GRPCInferenceService/"
UNAVAILABLE = ("explicit model load / unload is not allowed if polling is enabled",)
# Control-plane methods fuzzed with their request types. LogSettings and
# TraceSetting are left out: a fuzzed request may legitimately change the
# server's logging for the rest of the run.
CONTROL = {
    "ServerLive": service_pb2.ServerLiveRequest,
    "ServerReady": service_pb2.ServerReadyRequest,
    "ModelReady": service_pb2.ModelReadyRequest,
    "ServerMetadata": service_pb2.ServerMetadataRequest,
    "ModelMetadata": service_pb2.ModelMetadataRequest,
    "ModelConfig": service_pb2.ModelConfigRequest,
    "ModelStatistics": service_pb2.ModelStatisticsRequest,
    "RepositoryIndex": service_pb2.RepositoryIndexRequest,
    "RepositoryModelLoad": service_pb2.RepositoryModelLoadRequest,
    "RepositoryModelUnload": service_pb2.RepositoryModelUnloadRequest,
    "SystemSharedMemoryStatus": service_pb2.SystemSharedMemoryStatusRequest,
    "CudaSharedMemoryStatus": service_pb2.CudaSharedMemoryStatusRequest,
}


@pytest.fixture(scope="module")
def channel(target: Target) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        target.grpc_url,
        options=[
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
        ],
    ) as chan:
        grpc.channel_ready_future(chan).result(timeout=10)
        yield chan


def parses(message_type: Any, data: bytes) -> bool:
    try:
        message_type.FromString(data)
    except DecodeError:
        return False
    return True


def unary(
    target: Target,
    channel: grpc.Channel,
    method: str,
    data: bytes,
    *,
    parsable: bool,
    shown: object,
) -> None:
    """One raw unary call; counts its outcome and fails on a bad one."""
    call = channel.unary_unary(SERVICE + method)  # bytes in, bytes out
    start = time.monotonic()
    try:
        call(data, timeout=ANSWER_S)
        code, details = "OK", ""
    except grpc.RpcError as error:
        code, details = error.code().name, error.details() or ""
    TALLY.timing(time.monotonic() - start, shown)
    categories = [code]
    problem = None
    if not target.alive():
        categories.append("crash")
        problem = f"server died on {method} {shown!r}\n{target.log_tail()}"
    else:
        verdict = grpc_verdict(
            code, details, parsable=parsable, unavailable=UNAVAILABLE
        )
        if verdict is not None:
            categories.append(
                "hang"
                if code == "DEADLINE_EXCEEDED"
                else "leak"
                if "leaks" in verdict
                else "bad-code"
            )
            problem = f"{method}: {verdict}\nrequest: {shown!r}"
    TALLY.record("grpc", categories, problem)


@fuzz(0.4)
@given(data=st.data())
def test_infer_field_mutations(
    target: Target, channel: grpc.Channel, data: st.DataObject
) -> None:
    request = data.draw(infer_requests(), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_request(request, data)
    unary(
        target,
        channel,
        "ModelInfer",
        request.SerializeToString(),
        parsable=True,
        shown=request,
    )


@fuzz(0.25)
@given(data=st.data())
def test_infer_byte_mutations(
    target: Target, channel: grpc.Channel, data: st.DataObject
) -> None:
    wire = data.draw(infer_requests(), label="valid request").SerializeToString()
    for _ in range(data.draw(st.integers(1, 4), label="byte mutations")):
        wire = mutate_bytes(wire, data)
    parsable = parses(service_pb2.ModelInferRequest, wire)
    unary(target, channel, "ModelInfer", wire, parsable=parsable, shown=wire[:400])


@st.composite
def control_requests(draw: Any) -> tuple[str, bytes, bool]:
    method = draw(st.sampled_from(sorted(CONTROL)))
    message = CONTROL[method]()
    fields = message.DESCRIPTOR.fields_by_name
    if "name" in fields:
        message.name = draw(model_names)
    if "version" in fields:
        message.version = draw(versions)
    if "model_name" in fields:
        message.model_name = draw(model_names)
    if "ready" in fields:
        message.ready = draw(st.booleans())
    if method == "RepositoryModelLoad":
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(["config", "file:1/model.py", "x"]) | st.text())
            param = message.parameters[key]
            kind = draw(st.sampled_from(["bool", "int64", "string", "bytes", "unset"]))
            if kind == "bool":
                param.bool_param = draw(st.booleans())
            elif kind == "int64":
                param.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
            elif kind == "string":
                param.string_param = draw(st.text(max_size=40))
            elif kind == "bytes":
                param.bytes_param = draw(st.binary(max_size=40))
    wire = message.SerializeToString()
    if draw(st.booleans()):
        wire = draw(st.binary(max_size=64)) if draw(st.booleans()) else wire + b"\xff"
    return method, wire, parses(CONTROL[method], wire)


@fuzz(0.2)
@given(call=control_requests())
def test_control_plane(
    target: Target, channel: grpc.Channel, call: tuple[str, bytes, bool]
) -> None:
    method, wire, parsable = call
    unary(target, channel, method, wire, parsable=parsable, shown=wire[:300])


@fuzz(0.15)
@given(data=st.data())
def test_stream_infer(
    target: Target, channel: grpc.Channel, data: st.DataObject
) -> None:
    """A stream of mutated requests: one answer each, none leaking, stream ends OK."""
    wires = []
    for _ in range(data.draw(st.integers(1, 3), label="requests")):
        request = data.draw(infer_requests())
        if data.draw(st.booleans()):
            mutate_request(request, data)
        wires.append(request.SerializeToString())
    call = channel.stream_stream(SERVICE + "ModelStreamInfer")
    answers: list[bytes] = []
    code, details = "OK", ""
    try:
        answers.extend(call(iter(wires), timeout=ANSWER_S))
    except grpc.RpcError as error:
        code, details = error.code().name, error.details() or ""
    problem = None
    categories = [code]
    if not target.alive():
        categories.append("crash")
        problem = f"server died on a stream of {wires!r}\n{target.log_tail()}"
    elif code != "OK" or len(answers) != len(wires):
        categories.append("hang" if code == "DEADLINE_EXCEEDED" else "bad-code")
        problem = f"stream ended {code} {details!r} after {len(answers)} of {len(wires)} answers: {wires!r}"
    else:
        for answer in answers:
            message = service_pb2.ModelStreamInferResponse.FromString(answer)
            verdict = grpc_verdict(
                "INVALID_ARGUMENT" if message.error_message else "OK",
                message.error_message,
            )
            if verdict is not None:
                categories.append("leak")
                problem = f"stream answer {verdict}\nrequests: {wires!r}"
    TALLY.record("grpc", categories, problem)


# -- fixed corpus ---------------------------------------------------------------------------


def _add_sub(**fields: Any) -> Any:
    request = service_pb2.ModelInferRequest(model_name="add_sub", **fields)
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="FP32", shape=[4])
        request.raw_input_contents.append(bytes(16))
    return request


def test_unparsable_infer_is_answered_like_triton(
    target: Target, channel: grpc.Channel
) -> None:
    """Bytes that are no ModelInferRequest: INTERNAL "Unable to parse request"
    (Triton 2.51, checked against the real server) or INVALID_ARGUMENT, not
    UNIMPLEMENTED (the method exists)."""
    for wire in (
        b"\xff\xff\xff",
        b"\x0a\x02\xff\xfe",
        _add_sub().SerializeToString()[:-3],
    ):
        assert not parses(service_pb2.ModelInferRequest, wire)
        unary(target, channel, "ModelInfer", wire, parsable=False, shown=wire)


@pytest.mark.parametrize(
    "kind, value",
    [
        ("uint64", 2**64 - 1),
        ("int64", -(2**63)),
        ("double", float("nan")),
        ("double", float("inf")),
        ("string", "\u202e\x00"),
    ],
)
@pytest.mark.parametrize("key", ["custom", "priority", "timeout", "sequence_id"])
def test_parameter_extremes(
    target: Target, channel: grpc.Channel, key: str, kind: str, value: object
) -> None:
    request = _add_sub()
    setattr(request.parameters[key], f"{kind}_param", value)
    unary(
        target,
        channel,
        "ModelInfer",
        request.SerializeToString(),
        parsable=True,
        shown=request,
    )


@pytest.mark.parametrize(
    "shape", [[2**32, 2**32], [2**62, 4], [-1], [1, 2**61], [2**31, 2**31, 4], []]
)
@pytest.mark.parametrize("model", ["add_sub", "identity", "simple_onnx", "fuzz_bytes"])
def test_shape_overflow(
    target: Target, channel: grpc.Channel, model: str, shape: list[int]
) -> None:
    """Shapes whose element count overflows int64 with empty contents."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name in ("INPUT0", "INPUT1")[: 2 if model in ("add_sub", "simple_onnx") else 1]:
        datatype = "BYTES" if model == "fuzz_bytes" else "FP32"
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(b"")
    unary(
        target,
        channel,
        "ModelInfer",
        request.SerializeToString(),
        parsable=True,
        shown=request,
    )


def test_oversized_message(target: Target, channel: grpc.Channel) -> None:
    request = _add_sub()
    request.raw_input_contents[0] = bytes(8 << 20)  # beyond gRPC's 4 MiB default
    unary(
        target,
        channel,
        "ModelInfer",
        request.SerializeToString(),
        parsable=True,
        shown="8 MiB",
    )


def test_bytes_length_prefix_lies(target: Target, channel: grpc.Channel) -> None:
    """BYTES elements whose 4-byte length prefix points past the buffer."""
    for raw in (b"\xff\xff\xff\xff", b"\x05\x00\x00\x00abc", b"\x01\x00", b""):
        request = service_pb2.ModelInferRequest(model_name="fuzz_bytes")
        request.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 1])
        request.raw_input_contents.append(raw)
        unary(
            target,
            channel,
            "ModelInfer",
            request.SerializeToString(),
            parsable=True,
            shown=request,
        )
