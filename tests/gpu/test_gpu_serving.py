"""The GPU data path end to end through tritonclient: TorchScript on cuda:0 with the
instance's stream and dynamic batching, KIND_GPU placement (names, device, a stream
of its own per instance), DLPack outputs from a python model, NVML metrics, and an
onnxruntime model on a GPU instance (CUDA provider, or the CPU with one log line)."""

from __future__ import annotations

import json
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from torchmodels import Mlp, script

pytestmark = pytest.mark.gpu


def _write(repo: Path, name: str, config: str, model_py: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(textwrap.dedent(config))
    (repo / name / "1" / "model.py").write_text(textwrap.dedent(model_py))


def test_torchscript_on_cuda_batches_and_matches_cpu(tmp_path: Path, serve) -> None:
    repo = tmp_path / "repo"
    module = Mlp(width=64, hidden=256)
    script(
        repo,
        "mlp",
        module,
        """
        backend: "pytorch"
        max_batch_size: 32
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 64 ] } ]
        output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 64 ] } ]
        instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0 ] } ]
        dynamic_batching { max_queue_delay_microseconds: 2000 }
        """,
    )
    rng = np.random.default_rng(0)
    batches = [
        rng.standard_normal((1 + i % 4, 64), dtype=np.float32) for i in range(48)
    ]
    with torch.no_grad():
        expected = [module(torch.from_numpy(b)).numpy() for b in batches]
    with serve(repo) as server:
        # One client, 16 requests in flight on its own connection pool (async_infer
        # from this thread; tritonclient's gevent pool is not for many threads).
        client = httpclient.InferenceServerClient(server.http_url, concurrency=16)
        handles = []
        for batch in batches:
            inp = httpclient.InferInput("x", list(batch.shape), "FP32")
            inp.set_data_from_numpy(batch)
            handles.append(client.async_infer("mlp", [inp]))
        results = [h.get_result().as_numpy("OUTPUT__0") for h in handles]
        stats = client.get_inference_statistics("mlp")["model_stats"][0]
        client.close()
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert int(stats["inference_count"]) == sum(len(b) for b in batches)
    assert "GPU device 0" in server.log_text()


PLACEMENT_MODEL = """
import json, os
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        path = os.path.join(os.environ["PLACEMENT_DIR"], args["model_instance_name"])
        with open(path, "w") as f:
            json.dump(args, f)

    def execute(self, requests):
        import torch
        stream = torch.cuda.ExternalStream(int(self.args["tritonx_cuda_stream"]))
        with torch.cuda.stream(stream):
            # Work on the instance's stream, then outputs straight from the GPU.
            x = torch.arange(4, device="cuda", dtype=torch.float32) * 3
        stream.synchronize()  # x is read later, from another stream
        out = []
        for r in requests:
            t = pb_utils.Tensor.from_dlpack("OUT", x)
            out.append(pb_utils.InferenceResponse([t]))
        return out
"""


def test_kind_gpu_instances_get_device_and_own_stream(tmp_path: Path, serve) -> None:
    repo = tmp_path / "repo"
    placement = tmp_path / "placement"
    placement.mkdir()
    _write(
        repo,
        "placed",
        """
        backend: "python"
        input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
        instance_group [ { kind: KIND_GPU count: 2 gpus: [ 0 ] },
                         { name: "auto" kind: KIND_AUTO count: 1 } ]
        """,
        PLACEMENT_MODEL,
    )
    import os

    os.environ["PLACEMENT_DIR"] = str(placement)
    try:
        with serve(repo) as server:
            client = httpclient.InferenceServerClient(server.http_url)
            inp = httpclient.InferInput("IN", [1], "FP32")
            inp.set_data_from_numpy(np.zeros(1, np.float32))
            out = client.infer("placed", [inp]).as_numpy("OUT")
            config = client.get_model_config("placed")
            client.close()
    finally:
        del os.environ["PLACEMENT_DIR"]
    np.testing.assert_array_equal(out, [0, 3, 6, 9])
    # KIND_AUTO on a machine with a GPU becomes KIND_GPU on every GPU (Triton).
    kinds = [g["kind"] for g in config["instance_group"]]
    assert kinds == ["KIND_GPU", "KIND_GPU"]
    args = {p.name: json.loads(p.read_text()) for p in placement.iterdir()}
    assert set(args) == {"placed_0_0", "placed_0_1", "auto_0"}
    for a in args.values():
        assert a["model_instance_kind"] == "GPU"
        assert a["model_instance_device_id"] == "0"
    streams = {int(a["tritonx_cuda_stream"]) for a in args.values()}
    assert 0 not in streams and len(streams) == 3  # one stream of its own each


DLPACK_MODEL = """
import numpy as np
import torch
from torch.utils.dlpack import to_dlpack
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN")
            assert x.is_cpu()
            gpu = torch.from_dlpack(x.to_dlpack()).cuda() * 2
            a = pb_utils.Tensor.from_dlpack("A", to_dlpack(gpu))   # a capsule
            b = pb_utils.Tensor.from_dlpack("B", (gpu + 1).to(torch.bfloat16))
            back = torch.from_dlpack(a.to_dlpack())
            try:
                a.as_numpy()
                numpy_refused = False
            except pb_utils.TritonModelException:
                numpy_refused = True
            checks = np.array([
                not a.is_cpu(), not b.is_cpu(), back.is_cuda,
                back.data_ptr() == gpu.data_ptr(), numpy_refused,
            ], dtype=bool)
            checks = np.tile(checks, (gpu.shape[0], 1))  # one row per batch item
            out.append(pb_utils.InferenceResponse(
                [a, b, pb_utils.Tensor("CHECKS", checks)]))
        return out
"""


def test_python_model_returns_gpu_dlpack_tensors(tmp_path: Path, serve) -> None:
    repo = tmp_path / "repo"
    _write(
        repo,
        "dl",
        """
        backend: "python"
        max_batch_size: 8
        input [ { name: "IN" data_type: TYPE_FP32 dims: [ 3 ] } ]
        output [ { name: "A" data_type: TYPE_FP32 dims: [ 3 ] },
                 { name: "B" data_type: TYPE_BF16 dims: [ 3 ] },
                 { name: "CHECKS" data_type: TYPE_BOOL dims: [ 5 ] } ]
        instance_group [ { kind: KIND_GPU } ]
        """,
        DLPACK_MODEL,
    )
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    with serve(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        inp = httpclient.InferInput("IN", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("dl", [inp])
        client.close()
    np.testing.assert_array_equal(result.as_numpy("A"), x * 2)
    b = result.as_numpy("B")  # tritonclient reads BF16 as float32
    np.testing.assert_array_equal(np.asarray(b, np.float32), x * 2 + 1)
    assert result.as_numpy("CHECKS").all()


def test_nvml_gpu_metrics(tmp_path: Path, serve) -> None:
    import pynvml

    pynvml.nvmlInit()
    uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(0))
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    repo = tmp_path / "repo"
    repo.mkdir()
    with serve(repo, "--allow-gpu-metrics=true", "--metrics-interval-ms=100") as server:
        text = urllib.request.urlopen(server.metrics_url, timeout=30).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("nv_gpu_", "nv_energy_")):
            head, value = line.rsplit(" ", 1)
            name, labels = head.split("{", 1)
            assert labels == f'gpu_uuid="{uuid}"}}', line
            values[name] = float(value)
    assert set(values) == {
        "nv_gpu_utilization",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_gpu_power_limit",
        "nv_energy_consumption",
    }, text
    assert values["nv_gpu_memory_total_bytes"] > 1 << 30
    assert 0 < values["nv_gpu_memory_used_bytes"] <= values["nv_gpu_memory_total_bytes"]
    assert 0.0 <= values["nv_gpu_utilization"] <= 1.0
    assert values["nv_gpu_power_usage"] >= 0 and values["nv_gpu_power_limit"] >= 0
    assert values["nv_energy_consumption"] >= 0
    assert "# TYPE nv_energy_consumption counter" in text


def test_onnx_model_on_a_gpu_instance(tmp_path: Path, serve) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    repo = tmp_path / "repo"
    (repo / "addone" / "1").mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "ONE"], ["Y"])],
        "addone",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor("ONE", TensorProto.FLOAT, [1], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(repo / "addone" / "1" / "model.onnx"))
    (repo / "addone" / "config.pbtxt").write_text(
        'backend: "onnxruntime"\nmax_batch_size: 8\n'
        "instance_group [ { kind: KIND_GPU } ]\n"
        "optimization { execution_accelerators {"
        ' gpu_execution_accelerator: [ { name: "tensorrt" } ] } }\n'
    )
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with serve(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        inp = httpclient.InferInput("X", [2, 4], "FP32")
        inp.set_data_from_numpy(x)
        y = client.infer("addone", [inp]).as_numpy("Y")
        client.close()
    np.testing.assert_array_equal(y, x + 1)
    log = server.log_text()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert log.count("has no CUDAExecutionProvider") == 1, log
    assert log.count("has no TensorrtExecutionProvider") <= 1
