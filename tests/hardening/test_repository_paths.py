"""The repository load API never writes outside its own temporary directory.

A load request with ``file:`` contents names the model and each file; both come from
the client. Model names that would leave the request's directory (absolute, with
``..`` or a separator) and file paths with ``..`` are refused before anything is
written, on both protocols; a file path's leading '/' names the model's own directory
(as in Triton), so it stays inside; a path the file system cannot hold answers
Triton's poll failure without server paths.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import RunningServer, run_server

CONFIG = json.dumps(
    {
        "backend": "python",
        "max_batch_size": 0,
        "input": [{"name": "I", "data_type": "TYPE_FP32", "dims": [1]}],
        "output": [{"name": "O", "data_type": "TYPE_FP32", "dims": [1]}],
    }
)
MODEL_PY = b"""
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
            "O", pb_utils.get_input_tensor_by_name(r, "I").as_numpy())])
            for r in requests]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("empty_repo")
    with run_server(repo, "--model-control-mode=explicit") as running:
        yield running


def _http_load(
    server: RunningServer, name: str, files: dict[str, bytes]
) -> tuple[int, str]:
    import http.client
    from urllib.parse import quote

    params = {"config": CONFIG}
    for path, content in files.items():
        params[f"file:{path}"] = base64.b64encode(content).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request(
            "POST",
            f"/v2/repository/models/{quote(name, safe='')}/load",
            json.dumps({"parameters": params}),
        )
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body or b"{}").get("error", "")
    finally:
        conn.close()


def _grpc_load(
    server: RunningServer, name: str, files: dict[str, bytes]
) -> tuple[str, str]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        # tritonclient takes the parameter names as keys ("file:<path>").
        client.load_model(
            name, config=CONFIG, files={f"file:{k}": v for k, v in files.items()}
        )
    except InferenceServerException as error:
        return str(error.status()), error.message()
    finally:
        client.close()
    return "OK", ""


def _escaping_requests(target: Path) -> list[tuple[str, dict[str, bytes]]]:
    """(model name, files) pairs that would write `target` if joined unchecked."""
    return [
        (str(target), {"1/model.py": MODEL_PY}),  # absolute model name
        (f"../../../../../../../..{target}", {"1/model.py": MODEL_PY}),
        ("nested/name", {"1/model.py": MODEL_PY}),
        ("..", {"1/model.py": MODEL_PY}),
        ("ok_name", {f"../../../../../../../..{target}/1/model.py": MODEL_PY}),
    ]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_names_and_paths_outside_the_request_directory_are_refused(
    server: RunningServer, tmp_path: Path, protocol: str
) -> None:
    target = tmp_path / "planted"
    for name, files in _escaping_requests(target):
        if protocol == "http":
            status, message = _http_load(server, name, files)
            assert status == 400, (name, files.keys(), status, message)
        else:
            code, message = _grpc_load(server, name, files)
            assert code == "StatusCode.INVALID_ARGUMENT", (name, code, message)
        assert "invalid" in message
        assert not target.exists(), (name, list(files))
        assert not list(tmp_path.rglob("model.py"))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_absolute_file_path_stays_inside_the_model_directory(
    server: RunningServer, tmp_path: Path, protocol: str
) -> None:
    """As Triton 2.51, a leading '/' names the model's own directory: the file
    lands at <model dir>/<path>, so this load has no version 1 at the top and
    fails, having written nothing outside the request's directory."""
    target = tmp_path / "planted"
    files = {f"{target}/1/model.py": MODEL_PY}
    if protocol == "http":
        status, message = _http_load(server, "absolute_file", files)
        assert status == 400, message
    else:
        code, message = _grpc_load(server, "absolute_file", files)
        assert code == "StatusCode.INVALID_ARGUMENT", message
    assert "at least one version must be available" in message
    assert not target.exists()
    assert not list(tmp_path.rglob("model.py"))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_file_name_too_long_answers_triton_poll_failure(
    server: RunningServer, protocol: str
) -> None:
    files = {"1/" + "y" * 300: b"x", "1/model.py": MODEL_PY}
    if protocol == "http":
        status, message = _http_load(server, "long_file", files)
        assert status == 500
    else:
        code, message = _grpc_load(server, "long_file", files)
        assert code == "StatusCode.INTERNAL"
    assert message == "failed to load 'long_file', failed to poll from model repository"


def test_a_proper_load_with_files_still_works(server: RunningServer) -> None:
    status, message = _http_load(server, "loaded_from_files", {"1/model.py": MODEL_PY})
    assert status == 200, message
