"""Triton's system shared memory extension over HTTP (both engines) and gRPC, with
the real ``tritonclient`` and ``tritonclient.utils.shared_memory``: register,
status, unregister, inputs read from and outputs written into regions, Triton's
errors, and a region unregistered (and unlinked) while a request still uses it.
"""

from __future__ import annotations

import base64
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from serverutil import RunningServer, run_server
from shmutil import Region, grpc_error, infer_body, raw

from tritonx import _native


@pytest.fixture(scope="module", params=["native", "python"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_server(repo, f"--http-engine={request.param}") as running:
        yield running


def test_http_register_status_unregister(server: RunningServer, region: Region) -> None:
    key, _ = region(64)
    assert raw(server, "GET", "/v2/systemsharedmemory/status") == (200, [])
    client = httpclient.InferenceServerClient(server.http_url)
    client.register_system_shared_memory("r0", key, 32, offset=16)
    client.register_system_shared_memory("r1", key, 64)
    row = {"name": "r0", "key": key, "offset": 16, "byte_size": 32}
    assert raw(server, "GET", "/v2/systemsharedmemory/region/r0/status") == (200, [row])
    assert len(client.get_system_shared_memory_status()) == 2
    body = {"key": key, "offset": 0, "byte_size": 8}
    assert raw(server, "POST", "/v2/systemsharedmemory/region/r0/register", body) == (
        400,
        {"error": "shared memory region 'r0' already in manager"},
    )
    client.unregister_system_shared_memory("r0")
    client.unregister_system_shared_memory("never-registered")  # not an error
    assert raw(server, "GET", "/v2/systemsharedmemory/region/r0/status") == (
        404,
        {"error": "Unable to find system shared memory region: 'r0'"},
    )
    client.unregister_system_shared_memory()  # all
    assert client.get_system_shared_memory_status() == []
    client.close()


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("region/a/register", {"key": "/tritonx_no_such_key", "byte_size": 8}, 500,
         "Unable to open shared memory region: '/tritonx_no_such_key'"),
        ("region/a/register", {"offset": 0}, 400,
         "Shared memory register request has no 'key' field"),
        ("region/a/register", {"key": 5}, 500,
         "attempt to access JSON non-string as string"),
        ("register", {"key": "/k", "byte_size": 8}, 400,
         "'region name' is necessary to register system shared memory region"),
    ],
)  # fmt: skip
def test_http_register_errors(
    server: RunningServer, path: str, body: Any, status: int, message: str
) -> None:
    assert raw(server, "POST", f"/v2/systemsharedmemory/{path}", body) == (
        status,
        {"error": message},
    )
    assert raw(server, "GET", f"/v2/systemsharedmemory/{path}")[0] == 405


def test_http_register_out_of_bounds(server: RunningServer, region: Region) -> None:
    key, _ = region(64)
    body = {"key": key, "offset": 32, "byte_size": 64}
    assert raw(server, "POST", "/v2/systemsharedmemory/region/a/register", body) == (
        400,
        {"error": "failed to register shared memory region 'a': invalid args"},
    )
    body = {"key": key, "byte_size": "8"}
    assert raw(server, "POST", "/v2/systemsharedmemory/region/a/register", body) == (
        500,
        {"error": "attempt to access JSON non-unsigned-integer as unsigned-integer"},
    )


def test_http_infer_through_regions(server: RunningServer, region: Region) -> None:
    in_key, _ = region(64, [1.5, 2.5, 3.5, 4.5])
    out_key, out_handle = region(64)
    client = httpclient.InferenceServerClient(server.http_url)
    client.register_system_shared_memory("in", in_key, 64)
    client.register_system_shared_memory("out", out_key, 64)
    try:
        # JSON request body, as raw HTTP: the response names the output only.
        status, body = raw(
            server,
            "POST",
            "/v2/models/echo/infer",
            infer_body(
                {"shared_memory_region": "in", "shared_memory_byte_size": 16},
                {"shared_memory_region": "out", "shared_memory_byte_size": 64},
            ),
        )
        assert status == 200, body
        assert body["outputs"] == [
            {"name": "OUTPUT0", "datatype": "FP32", "shape": [4]}
        ]
        got = shm.get_contents_as_numpy(out_handle, np.float32, [4])
        np.testing.assert_array_equal(got, [1.5, 2.5, 3.5, 4.5])
        # tritonclient (binary extension): offsets on both sides, output not in shm.
        inp = httpclient.InferInput("INPUT0", [2], "FP32")
        inp.set_shared_memory("in", 8, offset=8)
        out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)
        result = client.infer("echo", [inp], outputs=[out])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [3.5, 4.5])
        out = httpclient.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory("out", 8, offset=32)
        result = client.infer("echo", [inp], outputs=[out])
        # As from Triton: no data, no parameters (tritonclient's as_numpy would
        # fail on it; clients read the region).
        assert result.get_output("OUTPUT0") == {
            "name": "OUTPUT0",
            "datatype": "FP32",
            "shape": [2],
        }
        got = shm.get_contents_as_numpy(out_handle, np.float32, [10])
        np.testing.assert_array_equal(got[8:], [3.5, 4.5])
    finally:
        client.unregister_system_shared_memory()
        client.close()


def test_http_infer_errors(server: RunningServer, region: Region) -> None:
    in_key, _ = region(64, [1, 2, 3, 4])
    client = httpclient.InferenceServerClient(server.http_url)
    client.register_system_shared_memory("in", in_key, 64)
    client.register_system_shared_memory("out", in_key, 64)
    good = {"shared_memory_region": "in", "shared_memory_byte_size": 16}
    cases = [
        (infer_body({**good, "shared_memory_offset": 64}), 400,
         "Invalid offset for shared memory region: 'in'"),
        (infer_body({**good, "shared_memory_offset": 60}), 400,
         "Invalid offset + byte size for shared memory region: 'in'"),
        (infer_body({"shared_memory_region": "in"}), 400,
         "Invalid offset + byte size for shared memory region: 'in'"),
        (infer_body({**good, "shared_memory_region": "nope"}), 404,
         "Unable to find shared memory region: 'nope'"),
        (infer_body({**good, "shared_memory_byte_size": "16"}), 500,
         "Unable to parse 'shared_memory_byte_size': attempt to access JSON "
         "non-unsigned-integer as unsigned-integer"),
        (infer_body({**good, "shared_memory_region": 5}), 500,
         "Unable to parse 'shared_memory_region': attempt to access JSON non-string "
         "as string"),
        (infer_body(good, {"shared_memory_region": "out", "shared_memory_byte_size": 8}),
         500, "shared memory size specified with the request for output 'OUTPUT0' "
         "(8 bytes) should be at least 16 bytes to hold the results"),
        (infer_body(good, {"shared_memory_region": "nope", "shared_memory_byte_size": 8}),
         404, "Unable to find shared memory region: 'nope'"),
        (infer_body(good, {"shared_memory_region": "out", "shared_memory_byte_size": 64,
                           "binary_data": True}),
         400, "Output can't set both 'shared_memory_region' and 'binary_data'"),
    ]  # fmt: skip
    try:
        for body, status, message in cases:
            assert raw(server, "POST", "/v2/models/echo/infer", body) == (
                status,
                {"error": message},
            ), body
        # A byte size that does not match the tensor: the core's usual check.
        status, error = raw(
            server,
            "POST",
            "/v2/models/echo/infer",
            infer_body({**good, "shared_memory_byte_size": 12}),
        )
        assert status == 400
        assert "expected 16" in error["error"].lower().replace(",", "")
    finally:
        client.unregister_system_shared_memory()
        client.close()


def test_grpc_register_status_infer(server: RunningServer, region: Region) -> None:
    in_key, _ = region(64, [1, 2, 3, 4])
    out_key, out_handle = region(64)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.register_system_shared_memory("in", in_key, 64)
    client.register_system_shared_memory("out", out_key, 48, offset=16)
    try:
        status = client.get_system_shared_memory_status(as_json=True)["regions"]
        assert status["out"] == {
            "name": "out",
            "key": out_key,
            "offset": "16",
            "byte_size": "48",
        }
        assert grpc_error(client.register_system_shared_memory, "in", in_key, 64) == (
            "StatusCode.ALREADY_EXISTS",
            "shared memory region 'in' already in manager",
        )
        assert grpc_error(client.get_system_shared_memory_status, "zz") == (
            "StatusCode.NOT_FOUND",
            "Unable to find system shared memory region: 'zz'",
        )
        inp = grpcclient.InferInput("INPUT0", [4], "FP32")
        inp.set_shared_memory("in", 16)
        out = grpcclient.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory("out", 16)
        result = client.infer("echo", [inp], outputs=[out])
        response = result.get_response()
        assert list(response.raw_output_contents) == [b""]  # one entry, empty
        assert not response.outputs[0].parameters
        # Region "out" starts 16 bytes into the object.
        got = shm.get_contents_as_numpy(out_handle, np.float32, [8])
        np.testing.assert_array_equal(got[4:], [1, 2, 3, 4])
        # Streaming takes the same path.
        out.set_shared_memory("out", 8)
        assert grpc_error(client.infer, "echo", [inp], outputs=[out]) == (
            "StatusCode.INTERNAL",
            "shared memory size specified with the request for output 'OUTPUT0' "
            "(8 bytes) should be at least 16 bytes to hold the results",
        )
        inp.set_shared_memory("in", 16, offset=64)
        assert grpc_error(client.infer, "echo", [inp]) == (
            "StatusCode.INVALID_ARGUMENT",
            "Invalid offset for shared memory region: 'in'",
        )
        inp = grpcclient.InferInput("INPUT0", [4], "FP32")
        inp.set_shared_memory("nope", 16)
        assert grpc_error(client.infer, "echo", [inp]) == (
            "StatusCode.NOT_FOUND",
            "Unable to find shared memory region: 'nope'",
        )
        client.unregister_system_shared_memory("in")
        assert list(
            client.get_system_shared_memory_status(as_json=True)["regions"]
        ) == ["out"]
        client.unregister_system_shared_memory()
        assert client.get_system_shared_memory_status(as_json=True) == {}
    finally:
        client.unregister_system_shared_memory()
        client.close()


def test_grpc_parameter_types(server: RunningServer, region: Region) -> None:
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    key, _ = region(64, [1, 2, 3, 4])
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.register_system_shared_memory("in", key, 64)
    channel = grpc.insecure_channel(server.grpc_url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = service_pb2.ModelInferRequest(model_name="echo")
    tensor = request.inputs.add(name="INPUT0", datatype="FP32", shape=[4])
    tensor.parameters["shared_memory_region"].string_param = "in"
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == (
            "'shared_memory_byte_size' must be specified along with "
            "'shared_memory_region' parameter for tensor 'INPUT0'"
        )
        tensor.parameters["shared_memory_byte_size"].string_param = "16"
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.details() == (
            "invalid value type for 'shared_memory_byte_size' parameter for tensor "
            "'INPUT0', expected int64_param."
        )
        tensor.parameters["shared_memory_byte_size"].int64_param = 16
        response = stub.ModelInfer(request)
        got = np.frombuffer(response.raw_output_contents[0], dtype=np.float32)
        np.testing.assert_array_equal(got, [1, 2, 3, 4])
    finally:
        channel.close()
        client.unregister_system_shared_memory()
        client.close()


@pytest.mark.skipif(
    _native.cuda_usable(), reason="a GPU is present (tests/gpu covers CUDA regions)"
)
def test_cuda_shared_memory_without_gpu(server: RunningServer, region: Region) -> None:
    key, _ = region(64)
    assert raw(server, "GET", "/v2/cudasharedmemory/status") == (200, [])
    assert raw(server, "GET", "/v2/cudasharedmemory/region/zz/status") == (
        404,
        {"error": "Unable to find cuda shared memory region: 'zz'"},
    )
    handle = base64.b64encode(bytes(64)).decode()
    body = {"raw_handle": {"b64": handle}, "device_id": 0, "byte_size": 64}
    assert raw(server, "POST", "/v2/cudasharedmemory/region/c/register", body) == (
        400,
        {
            "error": "failed to register CUDA shared memory region: 'c', GPUs not supported"
        },
    )
    assert raw(server, "POST", "/v2/cudasharedmemory/unregister") == (200, None)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.register_system_shared_memory("sys", key, 64)
    try:
        assert grpc_error(client.get_cuda_shared_memory_status, "sys") == (
            "StatusCode.NOT_FOUND",
            "The region named 'sys' is registered as system shared memory, not CUDA "
            "shared memory",
        )
        assert grpc_error(
            client.register_cuda_shared_memory, "c", b"\0" * 64, 0, 64
        ) == (
            "StatusCode.INVALID_ARGUMENT",
            "failed to register CUDA shared memory region: 'c', GPUs not supported",
        )
        client.unregister_cuda_shared_memory("sys")  # a no-op: not a CUDA region
        assert "sys" in client.get_system_shared_memory_status(as_json=True)["regions"]
        meta = client.get_server_metadata(as_json=True)["extensions"]
        assert "system_shared_memory" in meta and "cuda_shared_memory" not in meta
    finally:
        client.unregister_system_shared_memory()
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unregister_while_in_flight(
    server: RunningServer, repo: Path, region: Region, protocol: str
) -> None:
    """The request keeps reading its input after the region is unregistered and
    its shm object unlinked: the mapping lives until the request ends."""
    tag = 7 if protocol == "http" else 8
    key, handle = region(16, [tag, 2, 3, 4])
    admin = grpcclient.InferenceServerClient(server.grpc_url)
    admin.register_system_shared_memory("held-in", key, 16)
    results: list[Any] = []

    def run() -> None:
        try:
            if protocol == "http":
                client = httpclient.InferenceServerClient(server.http_url)
                inp = httpclient.InferInput("INPUT0", [4], "FP32")
            else:
                client = grpcclient.InferenceServerClient(server.grpc_url)
                inp = grpcclient.InferInput("INPUT0", [4], "FP32")  # type: ignore[assignment]
            inp.set_shared_memory("held-in", 16)
            results.append(client.infer("held", [inp]).as_numpy("OUTPUT0"))
            client.close()
        except Exception as exc:  # reported by the main thread
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    ran = repo / "held" / f"ran-{tag}"
    try:
        for _ in range(6000):
            if ran.exists() or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert ran.exists(), results
        admin.unregister_system_shared_memory("held-in")
        region.destroy(handle)
    finally:
        (repo / "held" / "open").touch()
        thread.join(60)
        (repo / "held" / "open").unlink()
        ran.unlink(missing_ok=True)
    assert len(results) == 1 and not isinstance(results[0], Exception), results
    np.testing.assert_array_equal(results[0], [tag, 2, 3, 4])
    assert admin.get_system_shared_memory_status(as_json=True) == {}
    assert admin.is_server_live()
    admin.close()


def test_grpc_stream_through_regions(server: RunningServer, region: Region) -> None:
    in_key, _ = region(16, [5, 6, 7, 8])
    out_key, out_handle = region(16)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.register_system_shared_memory("s-in", in_key, 16)
    client.register_system_shared_memory("s-out", out_key, 16)
    answers: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        inp = grpcclient.InferInput("INPUT0", [4], "FP32")
        inp.set_shared_memory("s-in", 16)
        out = grpcclient.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory("s-out", 16)
        client.async_stream_infer("echo", [inp], outputs=[out])
        result, error = answers.get(timeout=60)
        assert error is None
        assert list(result.get_response().raw_output_contents) == [b""]
        got = shm.get_contents_as_numpy(out_handle, np.float32, [4])
        np.testing.assert_array_equal(got, [5, 6, 7, 8])
        out.set_shared_memory("s-out", 8)
        client.async_stream_infer("echo", [inp], outputs=[out])
        result, error = answers.get(timeout=60)
        assert result is None
        assert "should be at least 16 bytes" in error.message()
    finally:
        client.stop_stream()
        client.unregister_system_shared_memory()
        client.close()
