"""Core tensors on the GPU (issue 10, "tensors that know where they live"): torch
CUDA outputs reach the core through DLPack and stay on the device until a consumer
needs host bytes; a consumer that takes device tensors (a BLS-style caller here)
gets them with no device->host copy at all; a host consumer gets exactly one per
batched output; pb_utils tensors over CUDA memory behave as Triton's; a TorchScript
model on cuda:0 writes its output into a client's CUDA shared memory region
(device->device) through tritonclient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from torchmodels import script

from tritonx import _native
from tritonx.backends import pb_utils

pytestmark = pytest.mark.gpu


class CudaTwice:
    """Gathered instance: OUTPUT0 = INPUT0 * 2 computed on cuda:0, returned as the
    torch tensor itself (work finished before it returns, as the pytorch backend's)."""

    gather_inputs = True

    def execute_batch(self, inputs: dict[str, np.ndarray], requests: list[Any]) -> Any:
        out = torch.from_numpy(inputs["INPUT0"]).cuda() * 2
        torch.cuda.current_stream().synchronize()
        return {"OUTPUT0": out}


def _model() -> Any:
    spec = _native.ModelSpec(
        "m",
        1,
        8,
        [_native.TensorSpec("INPUT0", "FP32", [4])],
        [_native.TensorSpec("OUTPUT0", "FP32", [4])],
    )
    config = _native.SchedulerConfig(dynamic_batching=True, max_queue_delay_us=0)
    return _native.Model(spec, config, [CudaTwice()])


def _request(rid: str, x: np.ndarray, device_outputs: bool) -> Any:
    return _native.Request(
        rid, [("INPUT0", "FP32", list(x.shape), x)], device_outputs=device_outputs
    )


def test_gpu_outputs_stay_on_the_device_until_host_bytes_are_needed() -> None:
    model = _model()
    try:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        before = _native.device_to_host_copies()
        out = model.infer(_request("dev", x, True)).outputs[0]
        assert (out.memory_type, out.device_id) == ("GPU", 0)
        assert out.__dlpack_device__() == (2, 0)
        as_torch = torch.from_dlpack(out)  # zero copy, on the device
        assert as_torch.is_cuda and torch.equal(as_torch.cpu(), torch.from_numpy(x * 2))
        assert _native.device_to_host_copies() == before  # nothing went to the host
        np.testing.assert_array_equal(out.as_numpy(), x * 2)  # first host read: 1 copy
        np.testing.assert_array_equal(
            np.frombuffer(out.raw(), np.float32), (x * 2).ravel()
        )
        assert _native.device_to_host_copies() == before + 1  # ... kept, not repeated

        host = model.infer(_request("host", x, False)).outputs[0]
        assert host.memory_type in ("CPU", "CPU_PINNED")
        np.testing.assert_array_equal(host.as_numpy(), x * 2)
        assert _native.device_to_host_copies() == before + 2
    finally:
        model.stop()


def test_pb_utils_tensors_over_cuda_memory() -> None:
    x = torch.arange(6, dtype=torch.float32, device="cuda").reshape(2, 3)
    t = pb_utils.Tensor.from_dlpack("x", x)
    assert not t.is_cpu() and t.shape() == [2, 3]
    assert t.__dlpack_device__() == (2, 0)
    assert torch.from_dlpack(t.to_dlpack()).data_ptr() == x.data_ptr()
    with pytest.raises(pb_utils.TritonModelException, match="stored in GPU"):
        t.as_numpy()
    with pytest.raises(TypeError):  # numpy arrays only, as Triton's constructor
        pb_utils.Tensor("x", x)
    capsule = torch.utils.dlpack.to_dlpack(x)
    assert not pb_utils.Tensor.from_dlpack("c", capsule).is_cpu()
    with pytest.raises(pb_utils.TritonModelException, match="not contiguous"):
        pb_utils.Tensor.from_dlpack("t", x.t())


CONFIG = """
backend: "pytorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 16 ] } ]
instance_group [ { kind: KIND_GPU count: 1 gpus: [ 0 ] } ]
"""


class Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_torch_cuda_output_into_a_cuda_shm_region(tmp_path: Path, serve) -> None:
    try:
        import tritonclient.utils.cuda_shared_memory as cudashm
    except (ImportError, RuntimeError):
        pytest.skip("tritonclient's CUDA shared memory needs cuda-python")
    repo = tmp_path / "repo"
    script(repo, "double", Double(), CONFIG)
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    region = cudashm.create_shared_memory_region("out", x.nbytes, 0)
    try:
        with serve(repo) as server:
            client = httpclient.InferenceServerClient(server.http_url)
            client.register_cuda_shared_memory(
                "out", cudashm.get_raw_handle(region), 0, x.nbytes
            )
            inp = httpclient.InferInput("INPUT__0", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            out = httpclient.InferRequestedOutput("OUTPUT__0")
            out.set_shared_memory("out", x.nbytes)
            client.infer("double", [inp], outputs=[out])
            got = cudashm.get_contents_as_numpy(region, np.float32, [2, 16])
            np.testing.assert_array_equal(got, x * 2)
            # And to a host consumer, the same output over the wire.
            plain = client.infer("double", [inp]).as_numpy("OUTPUT__0")
            np.testing.assert_array_equal(plain, x * 2)
            client.unregister_cuda_shared_memory()
            client.close()
    finally:
        cudashm.destroy_shared_memory_region(region)


PRODUCER = """
import torch
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN")
            gpu = torch.from_dlpack(x.to_dlpack()).cuda() * 2
            torch.cuda.current_stream().synchronize()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack("OUT", gpu)]))
        return out
"""
CALLER = """
import numpy as np
import torch
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN")
            kept = pb_utils.InferenceRequest(
                model_name="producer", requested_output_names=["OUT"], inputs=[x]
            ).exec()
            host = pb_utils.InferenceRequest(
                model_name="producer", requested_output_names=["OUT"], inputs=[x],
                preferred_memory=pb_utils.PreferredMemory(
                    pb_utils.TRITONSERVER_MEMORY_CPU, 0),
            ).exec()
            for answer in (kept, host):
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
            on_gpu = pb_utils.get_output_tensor_by_name(kept, "OUT")
            on_cpu = pb_utils.get_output_tensor_by_name(host, "OUT")
            back = torch.from_dlpack(on_gpu.to_dlpack())
            checks = np.array(
                [not on_gpu.is_cpu(), back.is_cuda, on_cpu.is_cpu(),
                 bool(torch.equal(back.cpu(), torch.from_numpy(on_cpu.as_numpy())))],
                dtype=bool,
            )
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor.from_dlpack("OUT", back + 1),
                pb_utils.Tensor("CHECKS", checks),
            ]))
        return out
"""


def _python_model(repo: Path, name: str, outputs: str, code: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(
        f'backend: "python"\ninput [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }} ]\n'
        f"output [ {outputs} ]\ninstance_group [ {{ kind: KIND_GPU }} ]\n"
    )
    (repo / name / "1" / "model.py").write_text(code)


def test_bls_outputs_stay_on_the_gpu_unless_cpu_is_preferred(
    tmp_path: Path, serve
) -> None:
    repo = tmp_path / "repo"
    _python_model(
        repo, "producer", '{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }', PRODUCER
    )
    _python_model(
        repo,
        "caller",
        '{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] },'
        ' { name: "CHECKS" data_type: TYPE_BOOL dims: [ 4 ] }',
        CALLER,
    )
    x = np.array([1, 2, 3, 4], np.float32)
    with serve(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        inp = httpclient.InferInput("IN", [4], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("caller", [inp])
        client.close()
    np.testing.assert_array_equal(result.as_numpy("OUT"), x * 2 + 1)
    assert result.as_numpy("CHECKS").all()
