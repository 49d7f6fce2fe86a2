"""The pytorch backend's refusals, with Triton's messages, through a real server:
load errors (explicit model control) and execution errors (HTTP and gRPC)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torchmodels as tm  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from serverutil import RunningServer, run_server  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402


def _io(inputs: list[tuple[str, str, str]], outputs: list[tuple[str, str, str]]) -> str:
    def block(kind: str, items: list[tuple[str, str, str]]) -> str:
        rows = ",\n".join(
            f'  {{ name: "{n}" data_type: {t} dims: [ {d} ] }}' for n, t, d in items
        )
        return f"{kind} [\n{rows}\n]\n"

    return block("input", inputs) + block("output", outputs)


def _config(inputs, outputs, extra: str = "", batch: int = 4) -> str:
    return f'backend: "pytorch"\nmax_batch_size: {batch}\n{extra}' + _io(
        inputs, outputs
    )


F4 = [("INPUT__0", "TYPE_FP32", "4"), ("INPUT__1", "TYPE_FP32", "4")]
OUT2 = [("OUTPUT__0", "TYPE_FP32", "4"), ("OUTPUT__1", "TYPE_FP32", "4")]

LOAD_ERRORS = {
    "too_few_inputs": "unable to load model 'too_few_inputs', configuration expects "
    "1 inputs, model provides 2",
    "gpu": "instance group gpu_0 of model gpu has kind KIND_GPU but no GPUs are "
    "available",
    "bytes_2d": "Triton only supports 1 dimensional List of String as input for "
    "'INPUT__0' for model 'bytes_2d'",
    "exported_bytes": "unsupported datatype TYPE_STRING for input 'x' for model "
    "'exported_bytes'",
    "uint32": "unsupported datatype TYPE_UINT32 for input 'INPUT__0' for model "
    "'uint32'",
    "exported_dtype": "unable to load model 'exported_dtype', configuration expects "
    "datatype TYPE_FP64 for input 'x', model provides TYPE_FP32",
    "no_file": "unable to find '",
    "bad_flag": "failed to convert string 'maybe' to boolean value for "
    "'INFERENCE_MODE'",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("torch_errors") / "repo"
    repo.mkdir()
    add_sub = tm.AddSub()
    tm.script(repo, "too_few_inputs", add_sub, _config(F4[:1], OUT2))
    gpu = "instance_group [ { kind: KIND_GPU } ]\n"
    tm.script(repo, "gpu", add_sub, _config(F4, OUT2, gpu))
    tm.script(
        repo,
        "bytes_2d",
        tm.Upper(),
        _config(
            [("INPUT__0", "TYPE_STRING", "2, -1")],
            [("OUTPUT__0", "TYPE_STRING", "-1")],
            batch=0,
        ),
    )
    example = (torch.ones(2, 3), torch.ones(2, 3))
    x_y = [("x", "TYPE_STRING", "3"), ("y", "TYPE_FP32", "3")]
    tm.export(
        repo,
        "exported_bytes",
        tm.ScaledDiff(),
        example,
        _config(x_y, [("OUTPUT__0", "TYPE_FP32", "3")]),
    )
    x_y = [("x", "TYPE_FP64", "3"), ("y", "TYPE_FP32", "3")]
    tm.export(
        repo,
        "exported_dtype",
        tm.ScaledDiff(),
        example,
        _config(x_y, [("OUTPUT__0", "TYPE_FP32", "3")]),
    )
    u32 = [("INPUT__0", "TYPE_UINT32", "4"), ("INPUT__1", "TYPE_FP32", "4")]
    tm.script(repo, "uint32", add_sub, _config(u32, OUT2))
    flag = 'parameters { key: "INFERENCE_MODE" value { string_value: "maybe" } }\n'
    tm.script(repo, "bad_flag", add_sub, _config(F4, OUT2, flag))
    (repo / "no_file" / "1").mkdir(parents=True)
    (repo / "no_file" / "config.pbtxt").write_text(_config(F4, OUT2))
    # These load; their requests fail.
    bad_index = [("OUTPUT__0", "TYPE_FP32", "4"), ("OUTPUT__5", "TYPE_FP32", "4")]
    tm.script(repo, "bad_index", add_sub, _config(F4, bad_index))
    wrong_type = [("OUTPUT__0", "TYPE_INT32", "4"), ("OUTPUT__1", "TYPE_FP32", "4")]
    tm.script(repo, "wrong_out_type", add_sub, _config(F4, wrong_type))
    # Fixed shapes in the program, variable in the config: torch's guard refuses.
    fixed = [("x", "TYPE_FP32", "-1, 3"), ("y", "TYPE_FP32", "-1, 3")]
    tm.export(
        repo,
        "fixed_shape",
        tm.ScaledDiff(),
        example,
        _config(fixed, [("OUTPUT__0", "TYPE_FP32", "-1, 3")], batch=0),
        batch_dynamic=False,
    )
    with run_server(repo, "--model-control-mode=explicit") as running:
        yield running


@pytest.mark.parametrize("name", sorted(LOAD_ERRORS))
def test_load_errors(server: RunningServer, name: str) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as info:
        client.load_model(name)
    message = str(info.value.message())
    assert message.startswith(f"load failed for model '{name}': "), message
    assert LOAD_ERRORS[name] in message
    assert not client.is_model_ready(name)


def _arrays() -> dict[str, np.ndarray]:
    return {n: np.ones((1, 4), np.float32) for n in ("INPUT__0", "INPUT__1")}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "bad_index",
            "The output OUTPUT__5 in the model configuration refers to an output "
            "index which doesn't exist. This model has 2 outputs",
        ),
        (
            "wrong_out_type",
            "configuration expects datatype TYPE_INT32 for output 'OUTPUT__0', "
            "model provides TYPE_FP32",
        ),
    ],
)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_execution_errors(
    server: RunningServer, model: str, message: str, protocol: str
) -> None:
    lib = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    client = lib.InferenceServerClient(url)
    client.load_model(model)
    inputs = []
    for name, array in _arrays().items():
        tensor = lib.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs)
    assert info.value.message() == message
    assert info.value.status() == (
        "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"
    )


def test_execute_failure_is_reported(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    client.load_model("fixed_shape")
    inputs = []
    for name in ("x", "y"):
        tensor = httpclient.InferInput(name, [5, 3], "FP32")
        tensor.set_data_from_numpy(np.ones((5, 3), np.float32))
        inputs.append(tensor)
    with pytest.raises(InferenceServerException) as info:
        client.infer("fixed_shape", inputs)
    assert str(info.value.message()).startswith("PyTorch execute failure: ")
    # The model keeps serving well-formed requests.
    for tensor in inputs:
        tensor.set_shape([2, 3])
        tensor.set_data_from_numpy(np.ones((2, 3), np.float32))
    out = client.infer("fixed_shape", inputs).as_numpy("OUTPUT__0")
    np.testing.assert_array_equal(out, np.ones((2, 3), np.float32))
