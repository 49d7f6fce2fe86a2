"""The pending-request gauge per scheduler, after Triton's L0_metrics QA
(metrics_queue_size_test), as differential tests against Triton 2.51.

``nv_inference_pending_request_count`` counts the requests a model holds that have
not reached an execution yet. The QA times it against a model that sleeps; here
every model waits on a gate file: a first execution is started and held, the
requests sent next can only wait, and the gauge is read while they do. Requests
are sent one at a time, each waited for (counted pending, or refused) before the
next, so which wait and which are refused does not depend on timing; batches
only form when they are full (a preferred size and a minute's queue delay, or a
full set of sequence slots), so the execution counts are known too.

Scenarios per model (all on one server per kind, each with its own gate):
default scheduler, dynamic batcher, dynamic batcher with a bounded queue (the
refused requests and their error), direct and oldest sequence batchers, and an
ensemble (the ensemble itself holds nothing; its step does).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, reference_command, run_either
from test_metrics import labels, samples, scrape
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# Echoes INPUT0; each execution first marks the gate as entered, then waits (two
# minutes at most) for the gate to be opened.
GATED_MODEL = """
import json
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.gate = config["parameters"]["gate"]["string_value"]

    def execute(self, requests):
        open(self.gate + ".entered", "a").close()
        deadline = time.monotonic() + 120
        while not os.path.exists(self.gate + ".open"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", data)])
            )
        return responses
"""

HEAD = """
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "gate" value: {{ string_value: "{gate}" }} }}
"""

# Only a full batch of 4 forms (within the minute).
DYNAMIC = """
dynamic_batching {
  preferred_batch_size: [ 4 ]
  max_queue_delay_microseconds: 60000000
}
"""
BOUNDED = """
dynamic_batching {
  preferred_batch_size: [ 4 ]
  max_queue_delay_microseconds: 60000000
  default_queue_policy { max_queue_size: 4 }
}
"""
# A batch forms only when all 4 slots have a request.
DIRECT = """
sequence_batching {
  max_sequence_idle_microseconds: 600000000
  direct {
    max_queue_delay_microseconds: 60000000
    minimum_slot_utilization: 1.0
  }
}
"""
OLDEST = """
sequence_batching {
  max_sequence_idle_microseconds: 600000000
  oldest {
    max_candidate_sequences: 4
    preferred_batch_size: [ 4 ]
    max_queue_delay_microseconds: 60000000
  }
}
"""
ENSEMBLE = """
name: "ensemble"
platform: "ensemble"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "step"
      model_version: -1
      input_map { key: "INPUT0" value: "INPUT0" }
      output_map { key: "OUTPUT0" value: "OUTPUT0" }
    }
  ]
}
"""

MODELS = {
    "default": "",
    "dynamic": DYNAMIC,
    "bounded": BOUNDED,
    "direct": DIRECT,
    "oldest": OLDEST,
    "step": "",
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_metrics")
    gates = root / "gates"
    gates.mkdir()
    for name, extra in MODELS.items():
        config = HEAD.format(name=name, gate=gates / name) + extra
        write_model(root / "models", name, config, GATED_MODEL)
    (root / "models" / "ensemble" / "1").mkdir(parents=True)
    (root / "models" / "ensemble" / "config.pbtxt").write_text(ENSEMBLE)
    return root


class Gate:
    """The gate files of one model."""

    def __init__(self, repo: Path, model: str) -> None:
        self.base = repo / "gates" / model
        for suffix in (".entered", ".open"):
            Path(f"{self.base}{suffix}").unlink(missing_ok=True)

    def entered(self) -> bool:
        return Path(f"{self.base}.entered").exists()

    def open(self) -> None:
        Path(f"{self.base}.open").touch()


def send(url: str, model: str, rows: int, **options: Any) -> dict[str, Any]:
    """One request of ``rows`` rows: its output, or its refusal."""
    client = httpclient.InferenceServerClient(url, network_timeout=180)
    tensor = httpclient.InferInput("INPUT0", [rows, 1], "FP32")
    tensor.set_data_from_numpy(np.arange(rows, dtype=np.float32).reshape(rows, 1))
    try:
        result = client.infer(model, [tensor], **options)
    except InferenceServerException as error:
        return {"status": error.status(), "message": error.message()}
    finally:
        client.close()
    return {"OUTPUT0": result.as_numpy("OUTPUT0").ravel().tolist()}


def metric(server: RunningServer, name: str, model: str) -> float | None:
    values = samples(scrape(server.metrics_url))
    return values.get((name, labels(model=model, version="1")))


def pending(server: RunningServer, model: str) -> float | None:
    return metric(server, "nv_inference_pending_request_count", model)


def settle(probe: Callable[[], Any], expected: Any) -> Any:
    """``probe()`` once it equals ``expected`` (or, after a while, whatever it is:
    the comparison then names the difference)."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: probe() == expected, str(expected), timeout=30)
    return probe()


# Per model: the held first execution (requests of rows and sequence options),
# then the requests sent one by one while it is held.
def plain(rows: int, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [{"rows": rows}], [{"rows": 1}] * count


def sequences() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    starts = [{"rows": 1, "sequence_id": s, "sequence_start": True} for s in range(4)]
    later = [{"rows": 1, "sequence_id": s} for _ in range(2) for s in range(4)]
    for request in (*starts, *later):
        request["sequence_id"] += 100
    return starts, later


SCENARIOS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
    "default": plain(1, 8),
    "dynamic": plain(4, 8),
    "bounded": plain(4, 6),
    "direct": sequences(),
    "oldest": sequences(),
    "ensemble": plain(1, 3),
}
# The model whose execution each scenario holds.
GATED = {name: name for name in MODELS} | {"ensemble": "step"}
# Pending requests expected while the first execution is held, and the totals
# expected at the end (inferences, executions) per model.
EXPECTED_PENDING = {
    "default": 8,
    "dynamic": 8,
    "bounded": 4,
    "direct": 8,
    "oldest": 8,
    "ensemble": 3,
}
EXPECTED_TOTALS = {
    "default": (9, 9),
    "dynamic": (12, 3),
    "bounded": (8, 2),
    "direct": (12, 3),
    "oldest": (12, 3),
    "ensemble": (4, 4),
    "step": (4, 4),
}


def scenario(server: RunningServer, repo: Path, model: str) -> dict[str, Any]:
    gated = GATED[model]
    gate = Gate(repo, gated)
    first, later = SCENARIOS[model]
    seen: dict[str, Any] = {"pending before": pending(server, model)}
    with concurrent.futures.ThreadPoolExecutor(len(first) + len(later)) as pool:

        def submit(request: dict[str, Any]) -> concurrent.futures.Future[Any]:
            options = {k: v for k, v in request.items() if k != "rows"}
            return pool.submit(send, server.http_url, model, request["rows"], **options)

        held = [submit(request) for request in first]
        wait_until(gate.entered, f"{gated} executing")
        waiting: list[concurrent.futures.Future[Any]] = []
        for request in later:
            before = pending(server, gated) or 0
            future = submit(request)
            wait_until(
                lambda f=future, b=before: (
                    f.done() or (pending(server, gated) or 0) > b
                ),
                f"{model} request held or refused",
            )
            waiting.append(future)
        seen["pending held"] = settle(
            lambda: pending(server, gated), EXPECTED_PENDING[model]
        )
        if model == "ensemble":
            seen["ensemble pending held"] = pending(server, "ensemble")
        seen["refused"] = [f.result() for f in waiting if f.done()]
        gate.open()
        results = [f.result(timeout=180) for f in (*held, *waiting)]
    seen["answered"] = sum("OUTPUT0" in result for result in results)
    for name in {model, gated}:
        inferences, executions = EXPECTED_TOTALS[name]
        seen[f"{name} totals"] = settle(
            lambda n=name: (
                pending(server, n),
                metric(server, "nv_inference_count", n),
                metric(server, "nv_inference_exec_count", n),
            ),
            (0, inferences, executions),
        )
    return seen


@pytest.fixture(scope="module")
def observed(repo: Path) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    kinds = ["tritonx"] + (["reference"] if reference_command() else [])
    for kind in kinds:
        with run_either(kind, repo / "models") as server:
            results[kind] = {m: scenario(server, repo, m) for m in SCENARIOS}
    yield results


@pytest.mark.parametrize("model", sorted(SCENARIOS))
def test_pending_request_count(
    observed: dict[str, dict[str, dict[str, Any]]], model: str
) -> None:
    seen = observed["tritonx"][model]
    if "reference" in observed:
        assert seen == observed["reference"][model]
    assert seen["pending before"] == 0
    assert seen["pending held"] == EXPECTED_PENDING[model]
    gated = GATED[model]
    inferences, executions = EXPECTED_TOTALS[gated]
    assert seen[f"{gated} totals"] == (0, inferences, executions)
    if model == "ensemble":
        # The ensemble holds nothing itself; its step holds the waiting requests.
        assert seen["ensemble pending held"] == 0
        assert seen["ensemble totals"] == (0, 4, 4)
    if model == "bounded":
        # The queue holds 4; the last 2 are refused at once, as Triton words it.
        assert (
            seen["refused"]
            == [
                {
                    "status": "503",
                    "message": "[request id: <id_unknown>] Exceeds maximum queue size",
                }
            ]
            * 2
        )
        assert seen["answered"] == 5
    else:
        assert seen["refused"] == []
        assert seen["answered"] == len(SCENARIOS[model][0]) + len(SCENARIOS[model][1])
