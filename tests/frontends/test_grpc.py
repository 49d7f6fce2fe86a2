"""The gRPC frontend against the real ``tritonclient.grpc`` (sync and aio) clients.

The server runs in a subprocess (tests/frontends/test_grpc_harness.py): the C++
GrpcServer, real core models with Python identity instances, and a small in-memory
model manager behind the control-plane handler.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tritonx.dtypes import NUMPY_DTYPES

HARNESS = Path(__file__).with_name("test_grpc_harness.py")
ROOT = Path(__file__).resolve().parents[2]

DTYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
    "BF16",
]


class Harness:
    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        # The harness imports tritonx: the installed package, or the source tree
        # when the developer loop asks for it (as tests/serverutil.py does).
        if os.environ.get("TRITONX_TEST_SOURCE_TREE"):
            env["PYTHONPATH"] = (
                str(ROOT / "python") + os.pathsep + env.get("PYTHONPATH", "")
            )
        self.process = subprocess.Popen(
            [sys.executable, str(HARNESS), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            rest = self.process.stdout.read() if self.process.poll() is not None else ""
            self.close()
            raise RuntimeError(f"harness failed to start: {line}{rest}")
        self.url = f"127.0.0.1:{int(line.split()[1])}"

    def close(self) -> str:
        output = ""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            assert self.process.stdout is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            output = self.process.stdout.read()
        return output


@pytest.fixture(scope="module")
def server() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


@pytest.fixture()
def client(server: Harness) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.url)
    yield c
    c.close()


@pytest.fixture()
def stub(server: Harness) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(
        server.url,
        options=[
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.max_receive_message_length", 2**31 - 1),
        ],
    )
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def sample(dtype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(shape)
    if dtype == "BYTES":
        return np.array(
            [f"s{i}".encode() * (i + 1) for i in range(count)], dtype=np.object_
        ).reshape(shape)
    if dtype == "BF16":
        return np.arange(count, dtype=np.uint16).reshape(shape) + 16256
    np_type = NUMPY_DTYPES[dtype]
    values = np.arange(count) - (count // 2 if dtype.startswith("INT") else 0)
    return values.astype(np_type).reshape(shape)


def make_input(
    name: str, data: np.ndarray, dtype: str | None = None
) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(
        name, list(data.shape), dtype or np_to_triton_dtype(data.dtype)
    )
    if dtype == "BF16":
        # tritonclient wants float32 for BF16; send the raw uint16 bits instead.
        tensor._raw_content = data.astype("<u2").tobytes()
    else:
        tensor.set_data_from_numpy(data)
    return tensor


def fp32_input(values: np.ndarray | None = None) -> grpcclient.InferInput:
    data = (
        values if values is not None else np.arange(4, dtype=np.float32).reshape(1, 4)
    )
    return make_input("INPUT0", data)


def expect_error(code: grpc.StatusCode, fn, *args, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kwargs)
    assert info.value.status() == str(code), info.value
    return info.value.message()


# -- health and metadata ---------------------------------------------------------------


def test_server_live_ready(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()


def test_health_check(server: Harness) -> None:
    with grpc.insecure_channel(server.url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        # HealthCheckResponse{status: SERVING (1)}
        assert check(b"") == b"\x08\x01"


def test_unknown_method_is_unimplemented(server: Harness) -> None:
    with grpc.insecure_channel(server.url) as channel:
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
    assert not client.is_model_ready("notready")
    message = expect_error(grpc.StatusCode.NOT_FOUND, client.is_model_ready, "nosuch")
    assert message == "Request for unknown model: 'nosuch' is not found"


def test_model_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("multi", as_json=True)
    assert meta["name"] == "multi"
    assert meta["versions"] == ["1", "3"]
    assert meta["inputs"][0] == {
        "name": "INPUT0",
        "datatype": "FP32",
        "shape": ["-1", "-1"],
    }
    config = client.get_model_config("identity").config
    assert config.name == "identity"
    assert config.max_batch_size == 8
    assert config.input[0].name == "INPUT0"
    expect_error(grpc.StatusCode.NOT_FOUND, client.get_model_metadata, "nosuch")


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
    assert info.value.details() == (
        "inference input 'INPUT0' data-type is '<invalid>', but model 'identity' "
        "expects 'FP32'"
    )


def test_parameters(
    client: grpcclient.InferenceServerClient,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    # Newer tritonclients refuse reserved keys before sending, so send them raw: the
    # server must refuse them too (other clients do not check).
    for key, expected in (
        (
            "triton_foo",
            "parameter keys starting with 'triton_' are reserved for Triton usage and "
            "should not be specified.",
        ),
        (
            "headers",
            "parameter 'headers' is reserved for Triton usage and should not be "
            "specified.",
        ),
    ):
        request = service_pb2.ModelInferRequest(model_name="identity")
        request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 4])
        request.raw_input_contents.append(np.zeros((1, 4), np.float32).tobytes())
        request.parameters[key].string_param = "x"
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == expected
    # Custom parameters reach the backend; the harness model fails on request.
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


# -- streaming ---------------------------------------------------------------------------


def _collect_stream(
    client: grpcclient.InferenceServerClient,
    sends: list[dict],
    expected: int,
    timeout: float = 20.0,
) -> list[tuple]:
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for send in sends:
            client.async_stream_infer(**send)
        out = [results.get(timeout=timeout) for _ in range(expected)]
    finally:
        client.stop_stream()
    return out


def test_stream_infer_with_errors_mid_stream(
    client: grpcclient.InferenceServerClient,
) -> None:
    sends = [
        {"model_name": "identity", "inputs": [fp32_input()], "request_id": "a"},
        {"model_name": "nosuch", "inputs": [fp32_input()], "request_id": "b"},
        {
            "model_name": "identity",
            "inputs": [fp32_input()],
            "request_id": "c",
            "parameters": {"fail": "bad input"},
        },
        {
            "model_name": "identity",
            "inputs": [make_input("INPUT0", np.ones(3, np.float32))],
            "request_id": "d",
        },
        {"model_name": "identity", "inputs": [fp32_input()], "request_id": "e"},
    ]
    out = _collect_stream(client, sends, expected=5)
    ids = sorted(r.get_response().id for r, e in out if e is None)
    errors = sorted(str(e.message()) for r, e in out if e is not None)
    assert ids == ["a", "e"]
    assert len(errors) == 3
    assert "Request for unknown model: 'nosuch' is not found" in errors
    assert "bad input" in errors


def test_stream_out_of_order_completion(
    client: grpcclient.InferenceServerClient,
) -> None:
    sends = [
        {"model_name": "slowmodel", "inputs": [fp32_input()], "request_id": "slow"},
        {"model_name": "identity", "inputs": [fp32_input()], "request_id": "fast"},
    ]
    out = _collect_stream(client, sends, expected=2)
    assert [r.get_response().id for r, e in out] == ["fast", "slow"]


def test_stream_many_requests(client: grpcclient.InferenceServerClient) -> None:
    sends = [
        {
            "model_name": "identity",
            "inputs": [fp32_input(np.full((1, 8), i, np.float32))],
            "request_id": str(i),
        }
        for i in range(200)
    ]
    out = _collect_stream(client, sends, expected=200)
    for result, error in out:
        assert error is None
        value = int(result.get_response().id)
        assert (result.as_numpy("OUTPUT0") == value).all()


def test_stream_end_waits_for_outstanding(server: Harness) -> None:
    # Half-closing the stream right after sending must still deliver the response.
    with grpc.insecure_channel(server.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="slowmodel", id="late")
        request.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 1])
        request.raw_input_contents.append(b"\0\0\x80?")
        responses = list(stub.ModelStreamInfer(iter([request])))
    assert len(responses) == 1
    assert responses[0].infer_response.id == "late"
    assert responses[0].error_message == ""


def test_stream_error_carries_request_id(server: Harness) -> None:
    with grpc.insecure_channel(server.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        responses = list(
            stub.ModelStreamInfer(
                iter([service_pb2.ModelInferRequest(model_name="nosuch", id="zz")])
            )
        )
    assert (
        responses[0].error_message == "Request for unknown model: 'nosuch' is not found"
    )
    assert responses[0].infer_response.id == "zz"


# -- cancellation ------------------------------------------------------------------------


def _fails(client: grpcclient.InferenceServerClient, model: str) -> int:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats["inference_stats"]["fail"].get("count", 0))


def test_client_timeout_cancels_queued_request(
    client: grpcclient.InferenceServerClient,
) -> None:
    before = _fails(client, "slowmodel")
    blocker = threading.Thread(target=client.infer, args=("slowmodel", [fp32_input()]))
    blocker.start()
    time.sleep(0.1)
    # Queued behind the blocker; the deadline passes while it waits.
    expect_error(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        client.infer,
        "slowmodel",
        [fp32_input()],
        client_timeout=0.2,
    )
    blocker.join()
    deadline = time.monotonic() + 5
    while _fails(client, "slowmodel") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fails(client, "slowmodel") == before + 1


def test_aio_cancel(server: Harness) -> None:
    async def run() -> None:
        async with aioclient.InferenceServerClient(server.url) as c:
            before = (await c.get_inference_statistics("slowmodel", as_json=True))[
                "model_stats"
            ][0]["inference_stats"]["fail"].get("count", "0")
            first = asyncio.ensure_future(c.infer("slowmodel", [fp32_input()]))
            await asyncio.sleep(0.1)
            second = asyncio.ensure_future(c.infer("slowmodel", [fp32_input()]))
            await asyncio.sleep(0.1)
            second.cancel()
            with pytest.raises(asyncio.CancelledError):
                await second
            await first
            for _ in range(100):
                stats = await c.get_inference_statistics("slowmodel", as_json=True)
                after = stats["model_stats"][0]["inference_stats"]["fail"].get(
                    "count", "0"
                )
                if int(after) == int(before) + 1:
                    break
                await asyncio.sleep(0.05)
            assert int(after) == int(before) + 1

    asyncio.run(run())


def test_aio_infer_and_stream(server: Harness) -> None:
    async def run() -> None:
        async with aioclient.InferenceServerClient(server.url) as c:
            assert await c.is_server_live()
            result = await c.infer("identity", [fp32_input()], request_id="x")
            assert result.get_response().id == "x"

            async def requests():
                for i in range(5):
                    yield {
                        "model_name": "identity",
                        "inputs": [fp32_input()],
                        "request_id": str(i),
                    }

            ids = []
            async for result, error in c.stream_infer(requests()):
                assert error is None
                ids.append(result.get_response().id)
                if len(ids) == 5:
                    break
            assert sorted(ids) == [str(i) for i in range(5)]

    asyncio.run(run())


# -- statistics, repository, settings ----------------------------------------------------


def test_statistics(client: grpcclient.InferenceServerClient) -> None:
    client.infer("identity_int32", [make_input("INPUT0", sample("INT32"))])
    stats = client.get_inference_statistics("identity_int32", as_json=True)
    row = stats["model_stats"][0]
    assert row["name"] == "identity_int32" and row["version"] == "1"
    assert int(row["inference_count"]) >= 2
    for key in (
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    ):
        assert key in row["inference_stats"], key
    assert int(row["inference_stats"]["success"]["count"]) >= 1
    assert row["batch_stats"][0]["batch_size"] == "2"
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {"identity", "multi", "slowmodel"} <= {r["name"] for r in every}
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.get_inference_statistics, "nosuch"
    )


def test_repository_index_load_unload(client: grpcclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "identity", "version": "1", "state": "READY"} in index
    assert {"name": "notready"} in index

    client.load_model(
        "loaded", config='{"max_batch_size": 2}', files={"file:1/model.py": b"x"}
    )
    assert client.is_model_ready("loaded")
    client.infer("loaded", [fp32_input()])
    client.unload_model("loaded", unload_dependents=True)
    assert not client.is_model_ready("loaded")

    message = expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, client.load_model, "bad_model"
    )
    assert message == "failed to load 'bad_model': no such model"
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, client.unload_model, "never_loaded")


def test_slow_load_does_not_block_inference(server: Harness) -> None:
    loader = grpcclient.InferenceServerClient(server.url)
    other = grpcclient.InferenceServerClient(server.url)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (loader.load_model("slow_2"), done.set()))
    thread.start()
    time.sleep(0.2)
    start = time.monotonic()
    for _ in range(20):
        other.infer("identity", [fp32_input()])
    assert other.is_server_live()
    assert other.get_model_metadata("identity")
    assert time.monotonic() - start < 1.5
    assert not done.is_set()
    thread.join(10)
    assert done.is_set()
    loader.close()
    other.close()


def test_shared_memory_rpcs(client: grpcclient.InferenceServerClient) -> None:
    assert len(client.get_system_shared_memory_status().regions) == 0
    assert len(client.get_cuda_shared_memory_status().regions) == 0
    # No such POSIX shm object: Triton's INTERNAL "Unable to open ..." (the rest
    # of the extension is tested in tests/sharedmemory).
    expect_error(
        grpc.StatusCode.INTERNAL,
        client.register_system_shared_memory,
        "r",
        "/tritonx_no_such_key",
        64,
    )
    expect_error(grpc.StatusCode.NOT_FOUND, client.get_system_shared_memory_status, "r")
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory("r")


def test_trace_settings(client: grpcclient.InferenceServerClient) -> None:
    settings = client.get_trace_settings(as_json=True)["settings"]
    assert settings["trace_level"]["value"] == ["OFF"]
    assert settings["trace_rate"]["value"] == ["1000"]
    updated = client.update_trace_settings(settings={"trace_rate": "5"}, as_json=True)
    assert updated["settings"]["trace_rate"]["value"] == ["5"]
    client.update_trace_settings(settings={"trace_rate": None})
    assert client.get_trace_settings(as_json=True)["settings"]["trace_rate"][
        "value"
    ] == ["1000"]
    expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.update_trace_settings,
        settings={"trace_level": ["LOUD"]},
    )


def test_log_settings(client: grpcclient.InferenceServerClient) -> None:
    settings = client.get_log_settings(as_json=True)["settings"]
    assert settings["log_info"]["bool_param"] is True
    assert settings["log_format"]["string_param"] == "default"
    updated = client.update_log_settings(
        {"log_verbose_level": 2, "log_info": False}, as_json=True
    )["settings"]
    assert updated["log_verbose_level"]["uint32_param"] == 2
    assert updated["log_info"]["bool_param"] is False
    client.update_log_settings({"log_verbose_level": 0, "log_info": True})
    expect_error(
        grpc.StatusCode.UNIMPLEMENTED,
        client.update_log_settings,
        {"log_file": "/tmp/x"},
    )


# -- lifecycle ---------------------------------------------------------------------------


def test_stop_waits_for_in_flight_request() -> None:
    harness = Harness()
    c = grpcclient.InferenceServerClient(harness.url)
    results: list = []
    thread = threading.Thread(
        target=lambda: results.append(c.infer("slowmodel", [fp32_input()]))
    )
    thread.start()
    time.sleep(0.1)
    output = harness.close()
    thread.join(10)
    assert "STOPPED" in output
    assert results and results[0].as_numpy("OUTPUT0") is not None
    c.close()
