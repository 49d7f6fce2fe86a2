"""The pytorch backend end to end: a real server, tritonclient over HTTP and gRPC,
TorchScript and torch.export models written by the test."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torchmodels as tm  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from serverutil import RunningServer, run_server  # noqa: E402

ADD_SUB = """
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT__1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }
]
"""

# Config order (y, x) differs from forward(x, y): names, not positions, decide.
BY_NAME = """
backend: "pytorch"
max_batch_size: 0
input [
  { name: "y" data_type: TYPE_FP32 dims: [ 3 ] },
  { name: "x" data_type: TYPE_FP32 dims: [ 3 ] }
]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
parameters { key: "INFERENCE_MODE" value { string_value: "false" } }
parameters { key: "DISABLE_OPTIMIZED_EXECUTION" value { string_value: "true" } }
"""

DICT = """
backend: "pytorch"
max_batch_size: 4
input [
  { name: "b" data_type: TYPE_INT64 dims: [ 2 ] },
  { name: "a" data_type: TYPE_INT64 dims: [ 2 ] }
]
output [
  { name: "diff" data_type: TYPE_INT64 dims: [ 2 ] },
  { name: "sum" data_type: TYPE_INT64 dims: [ 2 ] }
]
"""

UPPER = """
backend: "pytorch"
max_batch_size: 0
input [ { name: "INPUT__0" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_STRING dims: [ -1 ] } ]
"""

MLP = """
backend: "pytorch"
max_batch_size: 32
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 16 ] } ]
dynamic_batching { max_queue_delay_microseconds: 50000 }
instance_group [ { kind: KIND_CPU count: 2 } ]
parameters { key: "ENABLE_WEIGHT_SHARING" value { string_value: "true" } }
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torch") / "repo"
    root.mkdir()
    tm.script(root, "add_sub", tm.AddSub(), ADD_SUB)
    tm.script(root, "by_name", tm.ScaledDiff(), BY_NAME)
    tm.script(root, "dict_io", tm.DictInOut(), DICT)
    tm.script(root, "upper", tm.Upper(), UPPER)
    tm.script(root, "mlp", tm.Mlp(), MLP)
    # No config at all: found by model.pt2, completed from the program.
    tm.export(
        root, "exported", tm.ScaledDiff(), (torch.ones(2, 3), torch.ones(2, 3)), None
    )
    tm.export(
        root,
        "exported_kwargs",
        tm.ScaledShift(),
        (torch.ones(2, 3),),
        None,
        kwargs={"scale": torch.ones(2, 3), "shift": torch.ones(2, 3)},
    )
    tm.export(
        root,
        "exported_half",
        tm.HalfAndCount(),
        (torch.ones(2, 5, dtype=torch.float16),),
        'backend: "pytorch"\nmax_batch_size: 16\n',
    )
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(repo, "--log-verbose=1") as running:
        yield running


def _http(server: RunningServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url)


def _grpc(server: RunningServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


def _infer(server, protocol, model, arrays, outputs=None):
    """One inference through tritonclient; returns {output: ndarray}."""
    lib = httpclient if protocol == "http" else grpcclient
    client = _http(server) if protocol == "http" else _grpc(server)
    inputs = []
    for name, array in arrays.items():
        dtype = "BYTES" if array.dtype == object else _wire(array.dtype)
        tensor = lib.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    requested = [lib.InferRequestedOutput(n) for n in outputs] if outputs else None
    result = client.infer(model, inputs, outputs=requested)
    names = outputs or [o["name"] for o in _outputs_of(result, protocol)]
    return {n: result.as_numpy(n) for n in names}


def _outputs_of(result, protocol):
    if protocol == "http":
        return result.get_response()["outputs"]
    return [{"name": o.name} for o in result.get_response().outputs]


def _wire(dtype: np.dtype) -> str:
    return {
        np.dtype(np.float32): "FP32",
        np.dtype(np.float16): "FP16",
        np.dtype(np.int64): "INT64",
    }[np.dtype(dtype)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_named_index_inputs_and_outputs(server: RunningServer, protocol: str) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), np.float32)
    out = _infer(server, protocol, "add_sub", {"INPUT__0": a, "INPUT__1": b})
    np.testing.assert_array_equal(out["OUTPUT__0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT__1"], a - b)
    only = _infer(
        server, protocol, "add_sub", {"INPUT__0": a, "INPUT__1": b}, ["OUTPUT__1"]
    )
    assert list(only) == ["OUTPUT__1"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_forward_argument_names(server: RunningServer, protocol: str) -> None:
    x = np.array([1, 2, 3], np.float32)
    y = np.array([10, 20, 30], np.float32)
    out = _infer(server, protocol, "by_name", {"x": x, "y": y})
    np.testing.assert_array_equal(out["OUTPUT__0"], x * 2 - y)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_dict_input_and_dict_output(server: RunningServer, protocol: str) -> None:
    a = np.array([[5, 7], [1, 1]], np.int64)
    b = np.array([[1, 2], [3, 4]], np.int64)
    out = _infer(server, protocol, "dict_io", {"a": a, "b": b})
    np.testing.assert_array_equal(out["sum"], a + b)
    np.testing.assert_array_equal(out["diff"], a - b)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_list_of_strings(server: RunningServer, protocol: str) -> None:
    words = np.array([b"tritonx", b"torch"], dtype=object)
    out = _infer(server, protocol, "upper", {"INPUT__0": words})
    assert out["OUTPUT__0"].tolist() == [b"TRITONX", b"TORCH"]


def test_exported_program_config_is_completed(server: RunningServer) -> None:
    url = f"http://{server.http_url}/v2/models/exported/config"
    with urllib.request.urlopen(url) as response:
        config = json.loads(response.read())
    assert config["platform"] == "pytorch_libtorch"
    assert config["backend"] == "pytorch"
    assert config["max_batch_size"] == 4
    assert "dynamic_batching" in config
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("x", "TYPE_FP32", [3]),
        ("y", "TYPE_FP32", [3]),
    ]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("OUTPUT__0", "TYPE_FP32", [3])
    ]
    # The metadata endpoint agrees (batch dim shown as -1).
    meta = _http(server).get_model_metadata("exported")
    assert meta["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 3]}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_exported_program_infers(server: RunningServer, protocol: str) -> None:
    x = np.random.rand(3, 3).astype(np.float32)
    y = np.random.rand(3, 3).astype(np.float32)
    out = _infer(server, protocol, "exported", {"x": x, "y": y})
    np.testing.assert_allclose(out["OUTPUT__0"], x * 2 - y, rtol=1e-6)


def test_exported_program_with_keyword_arguments(server: RunningServer) -> None:
    # Exported as forward(x, *, scale, shift): completed from its signature and
    # called with the keyword arguments by name (positionally torch refuses it).
    config = _grpc(server).get_model_config("exported_kwargs", as_json=True)["config"]
    assert [i["name"] for i in config["input"]] == ["x", "scale", "shift"]
    rng = np.random.default_rng(7)
    x, scale, shift = (rng.random((2, 3), dtype=np.float32) for _ in range(3))
    for protocol in ("http", "grpc"):
        # Inputs sent in another order than the program's: matched by name.
        out = _infer(
            server,
            protocol,
            "exported_kwargs",
            {"shift": shift, "x": x, "scale": scale},
        )
        np.testing.assert_allclose(out["OUTPUT__0"], x * scale + shift, rtol=1e-6)


def test_exported_fp16_and_int64_outputs(server: RunningServer) -> None:
    config = _grpc(server).get_model_config("exported_half", as_json=True)["config"]
    assert config["max_batch_size"] == 16
    assert [(o["name"], o["data_type"]) for o in config["output"]] == [
        ("OUTPUT__0", "TYPE_FP16"),
        ("OUTPUT__1", "TYPE_INT64"),
    ]
    x = np.array([[1, -2, 3, 0, 5]], np.float16)
    out = _infer(server, "grpc", "exported_half", {"x": x})
    np.testing.assert_array_equal(out["OUTPUT__0"], x * 2)
    # A [batch] tensor: dims [1] with an empty reshape, so clients see [batch, 1].
    np.testing.assert_array_equal(out["OUTPUT__1"], [[3]])


def test_dynamic_batching_with_two_instances(server: RunningServer) -> None:
    """Concurrent clients are served in batches larger than one, by two instances
    sharing one set of weights, and every request gets its own rows back."""
    model = tm.Mlp()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            rng = np.random.default_rng(seed)
            client = _grpc(server)
            for _ in range(6):
                x = rng.random((1, 16), np.float32)  # batch > 1 only by batching
                tensor = grpcclient.InferInput("INPUT__0", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x)
                got = client.infer("mlp", [tensor]).as_numpy("OUTPUT__0")
                with torch.no_grad():
                    want = model(torch.from_numpy(x)).numpy()
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    stats = _http(server).get_inference_statistics("mlp")["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] == 48
    sizes = [b["batch_size"] for b in stats["batch_stats"]]
    assert max(sizes) > 1, sizes
    # Two instances were made; the second reused the first one's module.
    log = server.log_text()
    assert log.count("TRITONBACKEND_ModelInstanceInitialize: mlp_0_") == 2
    assert "Reusing TorchScript model for instance 'mlp_0_1'" in log
