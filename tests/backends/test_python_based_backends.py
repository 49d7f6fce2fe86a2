"""Python-based backends: ``<backend-directory>/<name>/model.py`` serves every model
whose config says ``backend: "<name>"``, through the wire, and side by side with the
real Triton 2.51 when TRITONX_REFERENCE_CMD is set.

One backend file, ``add_sub``, reads the operation from each model's own
``<version>/model.json`` (as Triton's vLLM backend reads its engine arguments) and
completes the config itself: the models' config.pbtxt only names the backend.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import (
    RunningServer,
    client_inputs,
    load_over_http,
    reference_command,
    run_either,
    run_server,
)

BACKEND_PY = """
import json
import os

import triton_python_backend_utils as pb_utils
from add_sub_ops import OPERATIONS  # a helper module beside this file


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(config):
        for name in ("INPUT0", "INPUT1"):
            config.add_input({"name": name, "data_type": "TYPE_FP32", "dims": [4]})
        config.add_output({"name": "OUTPUT", "data_type": "TYPE_FP32", "dims": [4]})
        config.set_max_batch_size(0)
        return config

    def initialize(self, args):
        # As Triton's own QA backend does: the model's files through
        # get_model_dir(), the version directory of the model being loaded.
        model_dir = pb_utils.get_model_dir()
        assert model_dir == os.path.join(
            args["model_repository"], args["model_version"]
        ), model_dir
        with open(os.path.join(model_dir, "model.json")) as f:
            self.operation = OPERATIONS[json.load(f)["operation"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            out = pb_utils.Tensor("OUTPUT", self.operation(a, b))
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
"""

OPS_PY = """
OPERATIONS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b}
"""

# A model's own model.py is not what runs: this one would fail the load.
BROKEN_MODEL_PY = "raise RuntimeError('the backend directory model.py runs, not me')\n"

A = np.array([1, 2, 3, 4], dtype=np.float32)
B = np.array([10, 20, 30, 40], dtype=np.float32)


def reference_python_backend() -> Path:
    """The reference Triton's own python backend (its launcher installs it there):
    a backend directory given to Triton must hold it for python-based backends."""
    home = os.environ.get("TRITON_REFERENCE_HOME") or str(
        Path.home() / ".cache" / "triton-reference-2.51"
    )
    return Path(home) / "backends" / "python"


def backend_directory(root: Path) -> Path:
    backends = root / "backends"
    (backends / "add_sub").mkdir(parents=True)
    (backends / "add_sub" / "model.py").write_text(BACKEND_PY)
    (backends / "add_sub" / "add_sub_ops.py").write_text(OPS_PY)
    python = reference_python_backend()
    if python.is_dir():
        (backends / "python").symlink_to(python, target_is_directory=True)
    return backends


def model(repo: Path, name: str, config: str, operation: str, versions=(1,)) -> None:
    for version in versions:
        (repo / name / str(version)).mkdir(parents=True)
        (repo / name / str(version) / "model.json").write_text(
            json.dumps({"operation": operation})
        )
    (repo / name / "config.pbtxt").write_text(config)


def repository(root: Path) -> Path:
    repo = root / "models"
    model(repo, "add", 'backend: "add_sub"\n', "add", versions=(1, 2))
    (repo / "add" / "2" / "model.py").write_text(BROKEN_MODEL_PY)
    model(repo, "sub", 'backend: "add_sub"\n', "sub")
    return repo


def infer(server: RunningServer, name: str) -> dict[str, Any]:
    answers = {}
    for protocol, module, url in (
        ("http", httpclient, server.http_url),
        ("grpc", grpcclient, server.grpc_url),
    ):
        client = module.InferenceServerClient(url)
        inputs = client_inputs(module, {"INPUT0": A, "INPUT1": B})
        out = client.infer(name, inputs).as_numpy("OUTPUT")
        assert out is not None
        answers[protocol] = out.tolist()
    return answers


def config(server: RunningServer, name: str) -> dict[str, Any]:
    url = f"http://{server.http_url}/v2/models/{name}/config"
    with urllib.request.urlopen(url, timeout=30) as reply:
        return dict(json.loads(reply.read()))


def observe_serving(kind: str, root: Path, *args: str) -> dict[str, Any]:
    backends = backend_directory(root)
    repo = repository(root)
    with run_either(kind, repo, f"--backend-directory={backends}", *args) as server:
        index = urllib.request.Request(
            f"http://{server.http_url}/v2/repository/index", data=b"", method="POST"
        )
        with urllib.request.urlopen(index, timeout=30) as reply:
            listed = sorted(
                (m["name"], m["version"], m["state"]) for m in json.loads(reply.read())
            )
        # The flag is read, not ignored as it once was.
        assert "--backend-directory has no effect" not in server.log_text()
        return {
            "index": listed,
            "add": infer(server, "add"),
            "sub": infer(server, "sub"),
            "add config": config(server, "add"),
        }


def test_backend_directory_model_serves_every_model(tmp_path: Path) -> None:
    seen = observe_serving("tritonx", tmp_path)
    # Version 2 of "add" (the latest) has a model.py of its own that would fail.
    assert seen["index"] == [("add", "2", "READY"), ("sub", "1", "READY")]
    assert seen["add"] == {"http": (A + B).tolist(), "grpc": (A + B).tolist()}
    assert seen["sub"] == {"http": (A - B).tolist(), "grpc": (A - B).tolist()}
    config = seen["add config"]
    assert config["backend"] == "add_sub"
    assert config["runtime"] == "model.py"
    assert [i["name"] for i in config["input"]] == ["INPUT0", "INPUT1"]
    if reference_command() is not None and reference_python_backend().is_dir():
        with_reference = observe_serving("reference", tmp_path / "reference")
        assert seen == with_reference


def test_python_based_backend_runs_in_a_stub_process(tmp_path: Path) -> None:
    seen = observe_serving(
        "tritonx", tmp_path, "--backend-config=python,execution-mode=process"
    )
    assert seen["sub"]["grpc"] == (A - B).tolist()
    assert seen["add config"]["runtime"] == "model.py"


def observe_failures(kind: str, root: Path) -> dict[str, tuple[int, str]]:
    backends = backend_directory(root)
    repo = root / "models"
    # No such backend at all.
    model(repo, "unknown", 'backend: "no_such_backend"\n', "add")
    # runtime "model.py" names the backend directory, which has none here.
    (backends / "empty").mkdir()
    model(repo, "no_file", 'backend: "empty"\nruntime: "model.py"\n', "add")
    # A backend name that would leave the backend directory.
    model(repo, "escape", 'backend: "../backends/add_sub"\n', "add")
    seen = {}
    with run_either(
        kind, repo, f"--backend-directory={backends}", "--model-control-mode=explicit"
    ) as server:
        for name in ("unknown", "no_file", "escape"):
            code, text = load_over_http(server, name)
            seen[name] = (code, (text or "").replace(str(backends), "<backends>"))
    return seen


def test_missing_backends_fail_the_load_with_tritons_errors(tmp_path: Path) -> None:
    seen = observe_failures("tritonx", tmp_path)
    prefix = "load failed for model '{}': version 1 is at UNAVAILABLE state: "
    assert seen["unknown"] == (
        400,
        prefix.format("unknown")
        + "Invalid argument: unable to find backend library for backend "
        "'no_such_backend', try specifying runtime on the model configuration.;\n",
    )
    assert seen["no_file"] == (
        400,
        prefix.format("no_file")
        + "Invalid argument: unable to find Python backend based backend library "
        "'model.py' for model 'no_file', searched: '<backends>/empty/model.py';\n",
    )
    # Triton joins the name to the directory as it is and loads what it reaches
    # (failing later, here, on the '/' in a shared-memory name); tritonx refuses a
    # backend name that is not a plain directory name.
    assert seen["escape"] == (
        400,
        prefix.format("escape")
        + "Invalid argument: unable to find backend library for backend "
        "'../backends/add_sub', try specifying runtime on the model configuration.;\n",
    )
    if reference_command() is not None and reference_python_backend().is_dir():
        triton = observe_failures("reference", tmp_path / "reference")
        assert {k: seen[k] for k in ("unknown", "no_file")} == {
            k: triton[k] for k in ("unknown", "no_file")
        }
        assert "escape" in triton and triton["escape"][0] == 400


ENV_BACKEND_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils
from onlyinenv import VALUE  # only the packed environment has it


class TritonPythonModel:
    def execute(self, requests):
        value = np.full([4], VALUE, dtype=np.float32)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", value)])
            for _ in requests
        ]
"""

ENV_CONFIG = """
backend: "packed"
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""


def test_packed_environment_beside_the_backend_is_used(tmp_path: Path) -> None:
    """pb_exec_env_model.py.tar.gz beside the backend's model.py becomes the
    model's EXECUTION_ENV_PATH: the stub runs that environment's interpreter."""
    import tarfile

    from testmodels import venv_with_onlyinenv

    env = tmp_path / "env"
    module = venv_with_onlyinenv(env, 5.0)
    backend = tmp_path / "backends" / "packed"
    backend.mkdir(parents=True)
    (backend / "model.py").write_text(ENV_BACKEND_PY)
    archive_path = backend / "pb_exec_env_model.py.tar.gz"
    with tarfile.open(archive_path, "w:gz") as archive:
        archive.add(env, arcname=".")
    module.unlink()  # only the archive's copy can answer
    repo = tmp_path / "models"
    (repo / "packed" / "1").mkdir(parents=True)
    (repo / "packed" / "config.pbtxt").write_text(ENV_CONFIG)
    with run_server(repo, f"--backend-directory={tmp_path / 'backends'}") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        tensor = httpclient.InferInput("INPUT0", [4], "FP32")
        tensor.set_data_from_numpy(A)
        result = client.infer("packed", [tensor]).as_numpy("OUTPUT")
        assert result is not None and result.tolist() == [5.0] * 4
        shown = config(server, "packed")["parameters"]
    assert shown == {"EXECUTION_ENV_PATH": {"string_value": str(archive_path)}}
