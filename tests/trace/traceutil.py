"""Helpers of the trace tests: a small repository, requests over both protocols,
and reading Triton's trace file format back."""

from __future__ import annotations

import json
import queue
import textwrap
import time
import urllib.request
from collections import Counter
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


# BLS from a traced request: add_one and repeat (decoupled) with trace=r.trace()
# (children of its trace), double without (not traced, as in Triton).
BLS_MODEL = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                row = pb_utils.Tensor("INPUT0", x.reshape(1, 4))
                added = pb_utils.InferenceRequest(
                    model_name="add_one", inputs=[row],
                    requested_output_names=["OUTPUT0"], trace=r.trace()).exec()
                pb_utils.InferenceRequest(
                    model_name="double", inputs=[row],
                    requested_output_names=["OUTPUT0"]).exec()
                for _ in pb_utils.InferenceRequest(
                        model_name="repeat", inputs=[pb_utils.Tensor("INPUT0", x)],
                        requested_output_names=["OUTPUT0"],
                        trace=r.trace()).exec(decoupled=True):
                    pass
                y = pb_utils.get_output_tensor_by_name(added, "OUTPUT0").as_numpy()
                out.append(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT0", y.reshape(4))]))
            return out
    """
)


def build_stream_repo(repo: Path, execution_mode: str = "") -> Path:
    """build_repo plus repeat (decoupled: x, 2x, 3x) and bls (see BLS_MODEL)."""
    build_repo(repo)
    io = er.io_block([er.tensor("INPUT0")], [er.tensor("OUTPUT0")])
    mode = ""
    if execution_mode:
        mode = (
            'parameters [ { key: "EXECUTION_MODE" value: { string_value: '
            f'"{execution_mode}" }} }} ]\n'
        )
    er.write_model(
        repo,
        "repeat",
        er.REPEAT_MODEL,
        io + "model_transaction_policy { decoupled: true }\n",
        max_batch_size=0,
    )
    er.write_model(repo, "bls", BLS_MODEL, io + mode, max_batch_size=0)
    return repo


def grpc_stream(url: str, requests: list[tuple[str, str, int]]) -> None:
    """(model, request id, responses expected) over one ModelStreamInfer."""
    client = grpcclient.InferenceServerClient(url)
    answers: queue.Queue[Any] = queue.Queue()
    try:
        client.start_stream(callback=lambda result, error: answers.put(error))
        for model, request_id, count in requests:
            shape = [1, 4] if model != "repeat" else [4]
            inp = grpcclient.InferInput("INPUT0", shape, "FP32")
            inp.set_data_from_numpy(X.reshape(shape))
            client.async_stream_infer(model, [inp], request_id=request_id)
            for _ in range(count):
                assert answers.get(timeout=60) is None
        client.stop_stream()
    finally:
        client.close()


def http_infer_bls(url: str, request_id: str = "b1") -> None:
    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("INPUT0", [4], "FP32")
        inp.set_data_from_numpy(X.reshape(4))
        client.infer("bls", [inp], request_id=request_id)
    finally:
        client.close()


def generate_stream(
    url: str, model: str, request_id: str, endpoint: str = "generate_stream"
) -> bytes:
    """One request to the generate extension (``endpoint``: or "generate")."""
    body = json.dumps({"id": request_id, "INPUT0": X.reshape(4).tolist()}).encode()
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/{endpoint}", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        data: bytes = response.read()
        return data


def summary(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per trace, keyed by (model, request id, parent's model): the count of each
    timestamp name and the tensors written (ids and times differ between runs)."""
    traces = read_traces(path)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for trace in traces.values():
        parent = traces[trace["parent_id"]]["model_name"] if trace["parent_id"] else ""
        key = (trace["model_name"], trace["request_id"], parent)
        assert key not in out, key
        out[key] = {
            "stamps": dict(Counter(name for name, _ in trace["stamps"])),
            "tensors": [
                (e["activity"], *(e["tensor"][k] for k in ("name", "data", "shape")))
                for e in trace["tensors"]
            ],
        }
    return out


def http_infer(url: str, model: str, request_id: str, headers: Any = None) -> None:
    client = httpclient.InferenceServerClient(url)
    try:
        inp = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        inp.set_data_from_numpy(X)
        client.infer(model, [inp], request_id=request_id, headers=headers)
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


# trace_context: OUTPUT0 is what request.trace().get_context() gave, as text
# ("None" when it gave None).
CONTEXT_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            context = request.trace().get_context()
            text = "None" if context is None else context
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", np.array([text.encode()], np.object_))
            ]))
        return responses
"""

CONTEXT_CONFIG = """
name: "trace_context"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
