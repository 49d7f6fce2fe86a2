"""Without a usable GPU (this CI machine): KIND_GPU refuses to load with Triton's
message, KIND_AUTO becomes KIND_CPU, the GPU metric families are absent, and the
pinned pool flag sizes (or turns off) the pinned staging arena. On a GPU machine
these tests skip; tests/gpu covers the other side."""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serverutil import run_server

from tritonx import _native

pytestmark = pytest.mark.skipif(
    _native.probe_cuda(), reason="a GPU is usable here (tests/gpu covers it)"
)

MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(
            [pb_utils.Tensor("OUT", np.ones(1, np.float32))]) for r in requests]
"""


def _model(repo: Path, name: str, kind: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.py").write_text(MODEL_PY)
    (repo / name / "config.pbtxt").write_text(
        textwrap.dedent(
            f"""
            backend: "python"
            input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }} ]
            output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }} ]
            instance_group [ {{ kind: {kind} }} ]
            """
        )
    )


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_kind_gpu_fails_kind_auto_runs_on_cpu_no_gpu_metrics(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _model(repo, "ongpu", "KIND_GPU")
    _model(repo, "auto", "KIND_AUTO")
    no_grpc = [] if _native.GRPC_BUILT else ["--allow-grpc=false"]
    with run_server(
        repo,
        *no_grpc,
        "--exit-on-error=false",
        "--allow-gpu-metrics=true",
        "--metrics-interval-ms=50",
        "--pinned-memory-pool-byte-size=0",
        "--cuda-memory-pool-byte-size=0:1048576",
    ) as server:
        base = f"http://{server.http_url}"
        status, body = _get(f"{base}/v2/models/auto/config")
        metrics = _get(server.metrics_url)[1]
        index = urllib.request.Request(f"{base}/v2/repository/index", method="POST")
        with urllib.request.urlopen(index, timeout=30) as response:
            rows = {row["name"]: row for row in json.loads(response.read())}
        ready = _get(f"{base}/v2/models/ongpu/ready")[0]
    assert status == 200, body
    assert [g["kind"] for g in json.loads(body)["instance_group"]] == ["KIND_CPU"]
    assert ready == 400
    assert rows["ongpu"]["state"] == "UNAVAILABLE"
    assert rows["ongpu"]["reason"] == (
        "Invalid argument: instance group ongpu_0 of model ongpu has kind KIND_GPU but no GPUs are "
        "available"
    )
    assert "nv_gpu_" not in metrics and "nv_energy_consumption" not in metrics
    assert "nv_pinned_memory_pool_total_bytes" in metrics
    assert "pool-byte-size has no effect" not in server.log_text()
