"""The tensorrt backend on a machine without a GPU, through a real server: it resolves
(backend "tensorrt" or platform "tensorrt_plan") without TensorRT installed, and a
model refuses to load with Triton's texts (KIND_CPU and a KIND_AUTO that became
KIND_CPU: "supports only GPU device"; KIND_GPU: no GPUs available), over HTTP and
gRPC, while the server goes on serving. tests/gpu/test_tensorrt.py runs engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_server
from tritonclient.utils import InferenceServerException

from tritonx import _native
from tritonx.backends import registry
from tritonx.backends.tensorrt_backend import TensorRTBackend

pytestmark = pytest.mark.skipif(
    _native.probe_cuda(), reason="a GPU is usable here (tests/gpu covers it)"
)

IO = """
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]
"""

MODELS = {
    "on_cpu": ('backend: "tensorrt"', "instance_group [ { kind: KIND_CPU } ]"),
    "auto": ('platform: "tensorrt_plan"', ""),
    "on_gpu": ('backend: "tensorrt"', "instance_group [ { kind: KIND_GPU } ]"),
}

LOAD_ERRORS = {
    "on_cpu": "unable to load model 'on_cpu', TensorRT backend supports only GPU "
    "device",
    "auto": "unable to load model 'auto', TensorRT backend supports only GPU device",
    "on_gpu": "instance group on_gpu_0 of model on_gpu has kind KIND_GPU but no GPUs "
    "are available",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("tensorrt") / "repo"
    for name, (which, group) in MODELS.items():
        (repo / name / "1").mkdir(parents=True)
        # Never read: the instance kinds are refused first.
        (repo / name / "1" / "model.plan").write_bytes(b"not an engine")
        (repo / name / "config.pbtxt").write_text(f"{which}\n{IO}\n{group}\n")
    with run_server(repo, "--model-control-mode=explicit") as running:
        yield running


def test_the_backend_resolves_without_tensorrt_installed() -> None:
    assert isinstance(registry.get_backend("tensorrt"), TensorRTBackend)
    assert "tensorrt" in registry.available_backends()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", sorted(LOAD_ERRORS))
def test_load_refusals(server: RunningServer, name: str, protocol: str) -> None:
    lib = httpclient if protocol == "http" else grpcclient
    client = lib.InferenceServerClient(
        server.http_url if protocol == "http" else server.grpc_url
    )
    with pytest.raises(InferenceServerException) as info:
        client.load_model(name)
    message = str(info.value.message())
    assert message.startswith(f"load failed for model '{name}': "), message
    assert LOAD_ERRORS[name] in message
    assert not client.is_model_ready(name)
    assert client.is_server_live()
    index = client.get_model_repository_index()
    rows = index if protocol == "http" else index.models
    row = next(r for r in rows if (r["name"] if protocol == "http" else r.name) == name)
    reason = row["reason"] if protocol == "http" else row.reason
    assert LOAD_ERRORS[name] in reason


def test_plan_bytes_are_not_read_before_the_kind_check(tmp_path: Path) -> None:
    # A missing model.plan on a KIND_CPU model still answers the kind refusal, as
    # in Triton, where the instance kind is checked first.
    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text(
        f'backend: "tensorrt"\n{IO}\ninstance_group [ {{ kind: KIND_CPU }} ]\n'
    )
    with run_server(repo, "--model-control-mode=explicit") as running:
        client = httpclient.InferenceServerClient(running.http_url)
        with pytest.raises(InferenceServerException) as info:
            client.load_model("m")
        assert "TensorRT backend supports only GPU device" in info.value.message()
