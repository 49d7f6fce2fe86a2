"""Overload: a server-wide bound on requests in flight, and the open-file limit.

Models without ``max_queue_size`` queue without bound in Triton; a flood of requests
would grow memory until the process dies. ``--max-inflight-requests`` refuses new
requests beyond the bound with UNAVAILABLE (HTTP 503) and admits again as soon as
earlier ones are answered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serverutil import RunningServer, infer_json, run_server

GATED_CONFIG = """
name: "gated"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# Holds every execution until a file named "open" appears next to the model, so the
# test controls how many requests are in flight without timing.
GATED_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.gate = os.path.join(args["model_repository"], "open")

    def execute(self, requests):
        while not os.path.exists(self.gate):
            time.sleep(0.01)
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""

LIMIT = 3


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[RunningServer, Path]]:
    repo = tmp_path / "repo"
    (repo / "gated" / "1").mkdir(parents=True)
    (repo / "gated" / "config.pbtxt").write_text(GATED_CONFIG)
    (repo / "gated" / "1" / "model.py").write_text(GATED_MODEL)
    with run_server(repo, f"--max-inflight-requests={LIMIT}") as server:
        yield server, repo / "gated" / "open"


def _tensor(value: float) -> dict[str, object]:
    return {"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [value]}


def _wait_inflight(server: RunningServer, count: int) -> None:
    import urllib.request

    for _ in range(2000):
        text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
        for line in text.splitlines():
            # One request executes (held at the gate); the rest are queued.
            if (
                line.startswith('nv_inference_pending_request_count{model="gated"')
                and float(line.rsplit(" ", 1)[1]) >= count - 1
            ):
                return
        threading.Event().wait(0.01)
    raise AssertionError("requests never queued")


def test_requests_beyond_the_limit_fail_unavailable_then_admit_again(
    gated: tuple[RunningServer, Path],
) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, gate = gated
    results: list[object] = [None] * LIMIT

    def one(i: int) -> None:
        results[i] = infer_json(server, "gated", [_tensor(i)])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(LIMIT)]
    for thread in threads:
        thread.start()
    _wait_inflight(server, LIMIT)

    status, body = infer_json(server, "gated", [_tensor(99)])
    assert status == 503, body
    assert "overloaded" in str(body["error"])

    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(np.array([99], dtype=np.float32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("gated", [tensor])
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    # Health and metadata are not requests in flight: still served.
    assert client.is_server_live()

    gate.touch()
    for thread in threads:
        thread.join(timeout=60)
    assert [r[0] for r in results] == [200] * LIMIT  # type: ignore[index]
    # Every slot came back: a full set of requests is admitted again.
    again = client.infer("gated", [tensor])
    assert again.as_numpy("OUTPUT0").tolist() == [99.0]
    client.close()
    # Refusals are counted like Triton's queue-full rejections.
    import urllib.request

    metrics = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    assert (
        'nv_inference_request_failure{model="gated",reason="REJECTED",version="1"} 2'
        in metrics
    )


def test_open_file_limit_is_raised_to_the_hard_limit(example_repo: Path) -> None:
    with run_server(example_repo) as server:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line
