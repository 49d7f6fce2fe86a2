"""Loading and unloading Python models, after Triton's
L0_backend_python/model_control QA: a Python model reloaded under an ensemble,
and models loaded with their files in the request (the QA names the file
"file:/1/model.py", with a leading '/'), as differential tests (one server per
kind for the module: tritonx, and Triton 2.51 when TRITONX_REFERENCE_CMD is
given), and model names with shell characters, on tritonx alone (below)."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, run_either, run_server
from testmodels import ECHO_MODEL, write_model

IDENTITY_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
"""

ENSEMBLE_CONFIG = """
name: "simple_identity_fp32"
platform: "ensemble"
max_batch_size: 4
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
ensemble_scheduling {
  step [ {
    model_name: "identity_fp32"
    model_version: -1
    input_map { key: "INPUT0", value: "INPUT0" }
    output_map { key: "OUTPUT0", value: "OUTPUT0" }
  } ]
}
"""


def _config_json(name: str) -> str:
    return json.dumps(
        {
            "name": name,
            "backend": "python",
            "max_batch_size": 4,
            "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
            "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        }
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_model_control") / "repo"
    write_model(
        root, "identity_fp32", IDENTITY_CONFIG.format(name="identity_fp32"), ECHO_MODEL
    )
    (root / "simple_identity_fp32" / "1").mkdir(parents=True)
    (root / "simple_identity_fp32" / "config.pbtxt").write_text(ENSEMBLE_CONFIG)
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_either(request.param, repo, "--model-control-mode=explicit") as running:
        yield running


def _echo(client: httpclient.InferenceServerClient, model: str, value: float) -> list:
    data = np.full((1, 3), value, np.float32)
    inputs = [httpclient.InferInput("INPUT0", [1, 3], "FP32")]
    inputs[0].set_data_from_numpy(data)
    result = client.infer(model, inputs)
    return result.as_numpy("OUTPUT0").tolist()


def test_a_python_model_reloads_under_its_ensemble(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    seen = []
    for round_ in range(3):
        seen.append(
            [
                client.is_model_ready(m)
                for m in ("identity_fp32", "simple_identity_fp32")
            ]
        )
        client.load_model("identity_fp32")
        client.load_model("simple_identity_fp32")
        seen.append(
            [
                client.is_model_ready(m)
                for m in ("identity_fp32", "simple_identity_fp32")
            ]
        )
        seen.append(_echo(client, "identity_fp32", round_))
        seen.append(_echo(client, "simple_identity_fp32", round_ + 0.5))
        client.unload_model("simple_identity_fp32")
        client.unload_model("identity_fp32")
    seen.append(
        [client.is_model_ready(m) for m in ("identity_fp32", "simple_identity_fp32")]
    )
    client.close()
    expected = []
    for round_ in range(3):
        expected += [[False, False], [True, True], [[float(round_)] * 3]]
        expected.append([[round_ + 0.5] * 3])
    assert seen == [*expected, [False, False]]


def _load_with_files(server: RunningServer, name: str, key: str) -> tuple[int, str]:
    """A raw HTTP load of ``name`` with its config and model.py under ``key``."""
    body = {
        "parameters": {
            "config": _config_json(name),
            key: base64.b64encode(ECHO_MODEL.encode()).decode(),
        }
    }
    host, port = server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        path = f"/v2/repository/models/{urllib.parse.quote(name, safe='')}/load"
        connection.request("POST", path, json.dumps(body))
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("key", ["file:1/model.py", "file:/1/model.py"])
def test_a_model_loaded_with_its_files(server: RunningServer, key: str) -> None:
    """Over HTTP and gRPC; a leading '/' names the model directory."""
    name = "from_files_" + ("slash" if key.startswith("file:/") else "plain")
    assert _load_with_files(server, name, key) == (200, "")
    client = httpclient.InferenceServerClient(server.http_url)
    assert _echo(client, name, 2.0) == [[2.0] * 3]
    client.unload_model(name)
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        grpc.load_model(
            name, config=_config_json(name), files={key: ECHO_MODEL.encode()}
        )
        assert grpc.is_model_ready(name)
    assert _echo(client, name, 3.0) == [[3.0] * 3]
    client.unload_model(name)
    client.close()


# Triton 2.51 hangs loading a model named with ';', '|' or '(' (its stub is
# started through a shell; later Tritons refuse such names): plainly broken, so
# these run on tritonx alone, which starts stubs without a shell and serves the
# names as they are.
SHELL_NAMES = ["model;test", "model|test", "model&test", "model$test", "model`test`",
               "model<test>", "model(test)", 'model"test"', "model'test'",
               "model*test", "model~test", "model!test"]  # fmt: skip


@pytest.mark.parametrize("mode", ["in-process", "process"])
def test_model_names_with_shell_characters(tmp_path: Path, mode: str) -> None:
    args = ["--model-control-mode=explicit"]
    if mode == "process":
        args.append("--backend-config=python,execution-mode=process")
    with run_server(tmp_path, *args) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        for name in SHELL_NAMES:
            assert _load_with_files(server, name, "file:1/model.py") == (200, ""), name
            assert _echo(client, name, 1.0) == [[1.0] * 3], name
        client.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
