"""The tensorrt backend on a GPU, through tritonclient: engines built by the test from
a tiny ONNX graph (TensorRT's builder and ONNX parser), config auto-complete from
the engine, batching, two optimization profiles chosen per batch, a batch outside
them refused with Triton's text, the wanted outputs only. Where TensorRT is not
installed, a KIND_GPU model refuses to load and says how to install it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritonx import _native

pytestmark = pytest.mark.gpu

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_tensorrt = pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt not installed")

WIDTH = 16


def _onnx_add_sub() -> bytes:
    from onnx import TensorProto, helper

    def io(name: str) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", WIDTH])

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "add_sub",
        [io("INPUT0"), io("INPUT1")],
        [io("OUTPUT0"), io("OUTPUT1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _build_plan(path: Path, profiles: list[tuple[int, int, int]]) -> None:
    """An engine for add_sub with one optimization profile per (min, opt, max) batch."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(_onnx_add_sub()), [
        parser.get_error(i) for i in range(parser.num_errors)
    ]
    config = builder.create_builder_config()
    for low, opt, high in profiles:
        profile = builder.create_optimization_profile()
        for name in ("INPUT0", "INPUT1"):
            profile.set_shape(name, (low, WIDTH), (opt, WIDTH), (high, WIDTH))
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(plan))


def _infer(lib, client, model: str, batch: int, outputs=None):
    rng = np.random.default_rng(batch)
    a = rng.standard_normal((batch, WIDTH), dtype=np.float32)
    b = rng.standard_normal((batch, WIDTH), dtype=np.float32)
    inputs = []
    for name, array in (("INPUT0", a), ("INPUT1", b)):
        tensor = lib.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    wanted = [lib.InferRequestedOutput(n) for n in outputs] if outputs else None
    return a, b, client.infer(model, inputs, outputs=wanted)


@needs_tensorrt
def test_engine_config_is_auto_completed_and_batches(tmp_path: Path, serve) -> None:
    repo = tmp_path / "repo"
    _build_plan(repo / "add_sub" / "1" / "model.plan", [(1, 4, 8)])
    (repo / "add_sub" / "config.pbtxt").write_text(
        'platform: "tensorrt_plan"\ninstance_group [ { kind: KIND_GPU count: 2 } ]\n'
    )
    with serve(repo) as server:
        http = httpclient.InferenceServerClient(server.http_url, concurrency=8)
        config = http.get_model_config("add_sub")
        assert config["max_batch_size"] == 8
        assert "dynamic_batching" in config
        assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
            ("INPUT0", "TYPE_FP32", [WIDTH]),
            ("INPUT1", "TYPE_FP32", [WIDTH]),
        ]
        clients = [(httpclient, http)]
        if _native.GRPC_BUILT:
            clients.append(
                (grpcclient, grpcclient.InferenceServerClient(server.grpc_url))
            )
        for lib, client in clients:
            for batch in (1, 3, 8):
                a, b, result = _infer(lib, client, "add_sub", batch)
                np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
                np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
        # Many single-row requests at once: the dynamic batcher gathers them.
        handles = []
        rows = []
        for i in range(32):
            a = np.full((1, WIDTH), i, np.float32)
            inputs = []
            for name in ("INPUT0", "INPUT1"):
                tensor = httpclient.InferInput(name, [1, WIDTH], "FP32")
                tensor.set_data_from_numpy(a)
                inputs.append(tensor)
            rows.append(a)
            handles.append(http.async_infer("add_sub", inputs))
        for a, handle in zip(rows, handles, strict=True):
            np.testing.assert_array_equal(
                handle.get_result().as_numpy("OUTPUT0"), a + a
            )
        stats = http.get_inference_statistics("add_sub")["model_stats"][0]
        http.close()
    assert int(stats["inference_count"]) >= 32
    assert "GPU device 0" in server.log_text()


@needs_tensorrt
def test_profiles_are_chosen_per_batch_and_outside_them_refused(
    tmp_path: Path, serve
) -> None:
    repo = tmp_path / "repo"
    _build_plan(repo / "two" / "1" / "model.plan", [(1, 4, 8), (9, 16, 24)])
    (repo / "two" / "config.pbtxt").write_text(
        'backend: "tensorrt"\nmax_batch_size: 32\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] },'
        ' { name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] },'
        ' { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'instance_group [ { kind: KIND_GPU profile: [ "0", "1" ] } ]\n'
    )
    with serve(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        for batch in (2, 8, 9, 20, 24):
            a, b, result = _infer(httpclient, client, "two", batch, ["OUTPUT1"])
            np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
            assert result.as_numpy("OUTPUT0") is None  # only what was asked for
        with pytest.raises(InferenceServerException) as info:
            _infer(httpclient, client, "two", 30)
        client.close()
    # No profile takes 30 rows: the lowest one is tried and refuses it.
    assert info.value.message() == (
        "request specifies invalid shape for input 'INPUT0' for two_0_0. Error "
        "details: model expected the shape of dimension 0 to be between 1 and 8 but "
        "received 30"
    )


@needs_tensorrt
def test_a_config_the_engine_cannot_serve_fails_the_load(tmp_path: Path, serve) -> None:
    repo = tmp_path / "repo"
    _build_plan(repo / "big" / "1" / "model.plan", [(1, 4, 8)])
    (repo / "big" / "config.pbtxt").write_text(
        'backend: "tensorrt"\nmax_batch_size: 64\n'
        "instance_group [ { kind: KIND_GPU } ]\n"
    )
    with serve(repo, "--model-control-mode=explicit") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        with pytest.raises(InferenceServerException) as info:
            client.load_model("big")
        client.close()
    assert (
        "configuration specified max-batch 64 but TensorRT engine only supports "
        "max-batch 8" in info.value.message()
    )


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed")
def test_without_tensorrt_a_gpu_model_says_how_to_install_it(
    tmp_path: Path, serve
) -> None:
    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "1" / "model.plan").write_bytes(b"never read")
    (repo / "m" / "config.pbtxt").write_text(
        'backend: "tensorrt"\nmax_batch_size: 8\n'
        'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
        "instance_group [ { kind: KIND_GPU } ]\n"
    )
    with serve(repo, "--model-control-mode=explicit") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        with pytest.raises(InferenceServerException) as info:
            client.load_model("m")
        assert client.is_server_ready()
        client.close()
    assert "the TensorRT Python package is not installed" in info.value.message()
    assert "pip install 'tritonx[tensorrt]'" in info.value.message()
