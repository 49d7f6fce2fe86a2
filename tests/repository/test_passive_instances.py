"""Passive instances (``instance_group { passive: true }``): initialized and
finalized like the others, never given a request; through the wire, side by side
with the real Triton 2.51 when TRITONX_REFERENCE_CMD is set.

Each instance answers with its own name and notes its initialize in a file beside
the model, so the test sees which instances exist and which one did the work.
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import reference_command, run_either, run_server
from tritonclient.utils import InferenceServerException

WHO_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.name = args["model_instance_name"]
        with open(args["model_repository"] + "/initialized", "a") as f:
            f.write(self.name + "\\n")

    def execute(self, requests):
        name = np.array([self.name.encode()], dtype=object)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", name)])
            for _ in requests
        ]
"""

CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ %s ]
"""
MIXED = '{ count: 2 kind: KIND_CPU passive: true }, { name: "active" count: 1 kind: KIND_CPU }'
ALL_PASSIVE = "{ count: 1 kind: KIND_CPU passive: true }"


def write(repo: Path, name: str, groups: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(WHO_PY)
    (repo / name / "config.pbtxt").write_text(CONFIG % groups)


def answer(url: str, name: str) -> str:
    client = httpclient.InferenceServerClient(url)
    tensor = httpclient.InferInput("IN", [1], "FP32")
    tensor.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    out = client.infer(name, [tensor]).as_numpy("OUT")
    assert out is not None
    return str(out[0].decode())


def observe(kind: str, root: Path) -> dict[str, Any]:
    repo = root / "models"
    write(repo, "mixed", MIXED)
    with (
        run_either(kind, repo) as server,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        answers = set(pool.map(lambda _: answer(server.http_url, "mixed"), range(16)))
    initialized = (repo / "mixed" / "initialized").read_text().split()
    return {"answered by": answers, "initialized": sorted(initialized)}


def test_passive_instances_are_loaded_but_get_no_requests(tmp_path: Path) -> None:
    seen = observe("tritonx", tmp_path)
    assert seen == {
        "answered by": {"active_0"},
        "initialized": ["active_0", "mixed_0_0", "mixed_0_1"],
    }
    if reference_command() is not None:
        assert observe("reference", tmp_path / "reference") == seen


def test_a_model_with_only_passive_instances_refuses_requests(tmp_path: Path) -> None:
    """Triton 2.51 loads it and crashes on its first request; tritonx loads it
    (its instance initialized, as there) and answers UNAVAILABLE at once."""
    repo = tmp_path / "models"
    write(repo, "idle", ALL_PASSIVE)
    with run_server(repo) as server:
        message = (
            "model 'idle' has no active instance to run requests: every instance "
            "group is passive"
        )
        with pytest.raises(InferenceServerException) as http_error:
            answer(server.http_url, "idle")
        assert http_error.value.status() == "503"
        assert http_error.value.message() == message
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("IN", [1], "FP32")
        tensor.set_data_from_numpy(np.array([1.0], dtype=np.float32))
        with pytest.raises(InferenceServerException) as grpc_error:
            client.infer("idle", [tensor])
        assert grpc_error.value.status() == "StatusCode.UNAVAILABLE"
        assert client.is_model_ready("idle") and client.is_server_ready()
    assert (repo / "idle" / "initialized").read_text().split() == ["idle_0_0"]
