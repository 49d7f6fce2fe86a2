"""Helpers of the trace tests: a small repository, requests over both protocols,
and reading Triton's trace file format back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import ensemble_repo as er
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

X = np.arange(4, dtype=np.float32).reshape(1, 4)


def build_repo(repo: Path) -> Path:
    """add_one, double and pipeline = double(add_one(x))."""
    er.write_unary(repo, "add_one", add=1.0)
    er.write_unary(repo, "double", mul=2.0)
    er.write_ensemble(
        repo,
        "pipeline",
        [
            er.step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "t1"}),
            er.step("double", {"INPUT0": "t1"}, {"OUTPUT0": "OUTPUT0"}),
        ],
    )
    return repo


def http_infer(url: str, model: str, request_id: str) -> None:
    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        inp.set_data_from_numpy(X)
        client.infer(model, [inp], request_id=request_id)
    finally:
        client.close()


def grpc_infer(url: str, model: str, request_id: str, headers: Any = None) -> None:
    client = grpcclient.InferenceServerClient(url)
    try:
        inp = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        inp.set_data_from_numpy(X)
        client.infer(model, [inp], request_id=request_id, headers=headers)
    finally:
        client.close()


def read_traces(path: Path) -> dict[int, dict[str, Any]]:
    """Trace id -> {"model_name", "model_version", "request_id", "parent_id",
    "stamps": [(name, ns)], "tensors": [entry]} from one trace file."""
    traces: dict[int, dict[str, Any]] = {}
    for entry in json.loads(path.read_text()):
        trace = traces.setdefault(
            entry["id"], {"stamps": [], "tensors": [], "request_id": "", "parent_id": 0}
        )
        if "model_name" in entry:
            trace.update(
                {k: v for k, v in entry.items() if k != "id"},
            )
        for stamp in entry.get("timestamps", []):
            trace["stamps"].append((stamp["name"], stamp["ns"]))
        if "activity" in entry:
            trace["tensors"].append(entry)
    return traces


def wait_for_file(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written")
        time.sleep(0.05)
