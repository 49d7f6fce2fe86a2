"""Warmup of a sequence-batched model, as a differential test against Triton 2.51.

Triton warms every instance up by handing it a sample's ``batch_size`` requests in
one execution, past the model's scheduler — the sequence batcher included: the
requests belong to no sequence (correlation id 0, no START/END flags) and get none
of the batcher's control inputs, and no sequence slot is taken, so the first real
sequence starts as on a model that never ran. (tests/repository/test_qa_warmup.py
covers the samples' data and a model without sequence batching.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, run_either
from testmodels import write_model

# Appends, per execution, the instance and what each request held (correlation id,
# flags, every input's values) to seen.jsonl next to the model; echoes INPUT.
RECORDER = """
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.instance = args["model_instance_name"]
        self.path = os.path.join(args["model_repository"], "seen.jsonl")

    def execute(self, requests):
        entry = {"instance": self.instance, "requests": []}
        for request in requests:
            inputs = {t.name(): t.as_numpy().flatten().tolist()
                      for t in request.inputs()}
            entry["requests"].append({
                "correlation_id": request.correlation_id(),
                "flags": request.flags(),
                "inputs": dict(sorted(inputs.items())),
            })
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\\n")
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT", pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy())])
            for r in requests
        ]
"""

CONFIG = """
name: "seq_warmup"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 2 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
sequence_batching {
  max_sequence_idle_microseconds: 60000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START
                                fp32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END
                              fp32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY
                                fp32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID
                                 data_type: TYPE_UINT64 } ] }
  ]
}
model_warmup [ {
  name: "sequence sample"
  batch_size: 3
  count: 2
  inputs { key: "INPUT" value: { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } }
} ]
"""

# What each warmup request is, on either server: the sample's input only.
WARMUP_REQUEST = {"correlation_id": 0, "flags": 0, "inputs": {"INPUT": [0.0, 0.0]}}


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    # One server per kind for the module: the statistics test runs before the
    # test that sends a sequence (file order).
    root = tmp_path_factory.mktemp(f"warmup_sequence_{request.param}") / "repo"
    write_model(root, "seq_warmup", CONFIG, RECORDER)
    with run_either(request.param, root) as running:
        running.repo = root  # type: ignore[attr-defined]
        yield running


def _stats(server: RunningServer) -> dict[str, Any]:
    with httpclient.InferenceServerClient(server.http_url) as client:
        return dict(client.get_inference_statistics("seq_warmup")["model_stats"][0])


def _executions(server: RunningServer) -> list[dict[str, Any]]:
    path: Path = server.repo / "seq_warmup" / "seen.jsonl"  # type: ignore[attr-defined]
    return [json.loads(line) for line in path.read_text().splitlines()]


def _infer(server: RunningServer, correlation_id: int, value: float, **flags: bool):
    with httpclient.InferenceServerClient(server.http_url) as client:
        tensor = httpclient.InferInput("INPUT", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.full((1, 2), value, np.float32))
        client.infer("seq_warmup", [tensor], sequence_id=correlation_id, **flags)


def test_each_instance_runs_a_sample_outside_any_sequence(
    server: RunningServer,
) -> None:
    """Each run of the sample is one execution of its 3 requests on each instance;
    the requests have correlation id 0, no flags and no control inputs."""
    executions = _executions(server)  # the model is READY: warmup is over
    assert all(e["requests"] == [WARMUP_REQUEST] * 3 for e in executions)
    per_instance: dict[str, int] = {}
    for execution in executions:
        per_instance[execution["instance"]] = (
            per_instance.get(execution["instance"], 0) + 1
        )
    assert sorted(per_instance.values()) == [2, 2]
    assert len(per_instance) == 2


def test_warmup_is_counted_as_batched_executions(server: RunningServer) -> None:
    """The warmup requests show in the statistics: 2 instances x 2 runs x 3
    requests, in 4 executions of batch 3. (Triton counts them after it has
    handed the responses back: wait for the totals.)"""
    wait_until(
        lambda: _stats(server)["inference_count"] >= 12,
        "the warmup requests to be counted",
    )
    stats = _stats(server)
    assert stats["inference_count"] == 12
    assert stats["execution_count"] == 4
    assert stats["inference_stats"]["success"]["count"] == 12
    assert stats["inference_stats"]["fail"]["count"] == 0
    assert [
        (b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]
    ] == [(3, 4)]


def test_the_first_sequence_after_warmup_starts_afresh(
    server: RunningServer,
) -> None:
    """Warmup leaves the sequence slots alone: a sequence sent afterwards is
    handed START, READY and its correlation id as on a fresh model."""
    warmup = len(_executions(server))
    _infer(server, 42, 5.0, sequence_start=True)
    _infer(server, 42, 6.0, sequence_end=True)
    after = [e["requests"] for e in _executions(server)[warmup:]]
    # Each execution holds the sequence's request in slot 0 and nothing else.
    assert after == [
        [
            {
                "correlation_id": 42,
                "flags": 1,
                "inputs": {
                    "CORRID": [42],
                    "END": [0.0],
                    "INPUT": [5.0, 5.0],
                    "READY": [1.0],
                    "START": [1.0],
                },
            }
        ],
        [
            {
                "correlation_id": 42,
                "flags": 2,
                "inputs": {
                    "CORRID": [42],
                    "END": [1.0],
                    "INPUT": [6.0, 6.0],
                    "READY": [1.0],
                    "START": [0.0],
                },
            }
        ],
    ]
