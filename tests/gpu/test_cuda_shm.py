"""Triton's cuda_shared_memory extension on a GPU, through tritonclient's own
``tritonclient.utils.cuda_shared_memory`` (regions made with cudaMalloc and shared
as cudaIpcMemHandle_t, as Triton's users do): register, status, inputs read from a
device region, outputs written into one, Triton's errors, unregister."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from shmutil import raw, write_repo

from tritonx import _native

try:
    import tritonclient.utils.cuda_shared_memory as cudashm
except (ImportError, RuntimeError):  # it raises RuntimeError without cuda-python
    pytest.skip(
        "tritonclient's CUDA shared memory needs cuda-python (cuda.bindings)",
        allow_module_level=True,
    )


def _handles(count: int, byte_size: int) -> list[object]:
    return [
        cudashm.create_shared_memory_region(f"gpu{i}", byte_size, 0)
        for i in range(count)
    ]


def test_inputs_and_outputs_through_cuda_regions(tmp_path: Path, serve) -> None:
    values = np.arange(16, dtype=np.float32) * 1.5
    size = values.nbytes
    src, dst = _handles(2, size)
    try:
        cudashm.set_shared_memory_region(src, [values])
        with serve(write_repo(tmp_path)) as server:
            client = httpclient.InferenceServerClient(
                f"127.0.0.1:{server.ports['http']}"
            )
            meta = client.get_server_metadata()["extensions"]
            assert "cuda_shared_memory" in meta
            client.register_cuda_shared_memory(
                "src", cudashm.get_raw_handle(src), 0, size
            )
            client.register_cuda_shared_memory(
                "dst", cudashm.get_raw_handle(dst), 0, size
            )
            status = {r["name"]: r for r in client.get_cuda_shared_memory_status()}
            assert status["src"] == {"name": "src", "device_id": 0, "byte_size": size}
            # A CUDA region is not a system one, and the names are shared.
            assert client.get_system_shared_memory_status() == []
            code, body = raw(server, "GET", "/v2/systemsharedmemory/region/src/status")
            assert (code, body["error"]) == (
                404,
                "The region named 'src' is registered as CUDA shared memory, not "
                "system shared memory",
            )

            inp = httpclient.InferInput("INPUT0", [16], "FP32")
            inp.set_shared_memory("src", size)
            out = httpclient.InferRequestedOutput("OUTPUT0")
            out.set_shared_memory("dst", size)
            result = client.infer("echo", [inp], outputs=[out])
            # As for system regions: no data in the answer, the region has it.
            assert result.get_output("OUTPUT0") == {
                "name": "OUTPUT0",
                "datatype": "FP32",
                "shape": [16],
            }
            got = cudashm.get_contents_as_numpy(dst, np.float32, [16])
            np.testing.assert_array_equal(got, values)

            # Part of a region, from an offset.
            half = httpclient.InferInput("INPUT0", [8], "FP32")
            half.set_shared_memory("src", size // 2, offset=size // 2)
            result = client.infer("echo", [half])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values[8:])

            # Triton's errors.
            with pytest.raises(Exception, match="already in manager"):
                client.register_cuda_shared_memory(
                    "src", cudashm.get_raw_handle(src), 0, size
                )
            with pytest.raises(Exception, match="'big': invalid args"):
                client.register_cuda_shared_memory(
                    "big", cudashm.get_raw_handle(src), 0, 1 << 40
                )
            handle = base64.b64encode(bytes(64)).decode()
            code, body = raw(
                server,
                "POST",
                "/v2/cudasharedmemory/region/bad/register",
                {"raw_handle": {"b64": handle}, "device_id": 0, "byte_size": 8},
            )
            assert (code, body["error"]) == (
                400,
                "failed to register shared memory region: invalid args",
            )
            beyond = httpclient.InferInput("INPUT0", [16], "FP32")
            beyond.set_shared_memory("src", size, offset=8)
            with pytest.raises(Exception, match="Invalid offset \\+ byte size"):
                client.infer("echo", [beyond])
            small = httpclient.InferRequestedOutput("OUTPUT0")
            small.set_shared_memory("dst", 8)
            with pytest.raises(Exception, match="should be at least 64 bytes"):
                client.infer("echo", [inp], outputs=[small])

            client.unregister_cuda_shared_memory("src")
            assert [r["name"] for r in client.get_cuda_shared_memory_status()] == [
                "dst"
            ]
            client.unregister_cuda_shared_memory()
            assert client.get_cuda_shared_memory_status() == []
    finally:
        for handle in (src, dst):
            cudashm.destroy_shared_memory_region(handle)


@pytest.mark.skipif(not _native.GRPC_BUILT, reason="the core was built without gRPC")
def test_cuda_regions_over_grpc(tmp_path: Path, serve) -> None:
    import tritonclient.grpc as grpcclient

    values = np.linspace(0, 1, 32, dtype=np.float32)
    size = values.nbytes
    src, dst = _handles(2, size)
    try:
        cudashm.set_shared_memory_region(src, [values])
        with serve(write_repo(tmp_path)) as server:
            client = grpcclient.InferenceServerClient(
                f"127.0.0.1:{server.ports['grpc']}"
            )
            client.register_cuda_shared_memory(
                "src", cudashm.get_raw_handle(src), 0, size
            )
            client.register_cuda_shared_memory(
                "dst", cudashm.get_raw_handle(dst), 0, size
            )
            status = client.get_cuda_shared_memory_status(as_json=True)["regions"]
            assert set(status) == {"src", "dst"}
            inp = grpcclient.InferInput("INPUT0", [32], "FP32")
            inp.set_shared_memory("src", size)
            out = grpcclient.InferRequestedOutput("OUTPUT0")
            out.set_shared_memory("dst", size)
            client.infer("echo", [inp], outputs=[out])
            got = cudashm.get_contents_as_numpy(dst, np.float32, [32])
            np.testing.assert_array_equal(got, values)
            client.unregister_cuda_shared_memory()
            assert client.get_cuda_shared_memory_status(as_json=True) == {}
    finally:
        for handle in (src, dst):
            cudashm.destroy_shared_memory_region(handle)
