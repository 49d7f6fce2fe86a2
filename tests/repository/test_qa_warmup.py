"""Behaviours from Triton's QA directory L0_warmup that apply to Python models on
the CPU, as differential tests: each expectation is checked on tritonx and, when
TRITONX_REFERENCE_CMD is given, on Triton 2.51 started the same way.

What the model is handed by each kind of sample (zero data, a data file, random
data; numbers and strings), how warmup shows in the statistics, the failure of a
sample the model answers with an error (on an explicit load, and at start-up,
where it stops the server), and a decoupled model that answers a sample with only
the final flag. L0_warmup's ONNX/TensorRT/libtorch runs and its BLS-to-ONNX case
need other backends; tests/repository/test_warmup_and_overrides.py checks the
instance counts and the data-file errors on the model manager itself."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import (
    RunningServer,
    free_ports,
    reference_command,
    run_either,
    server_command,
    server_env,
    terminate,
)
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# Appends, per execution, what each request held (dtype, shape, values) to
# seen.jsonl next to the model, then echoes INPUT0.
RECORDER = """
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.path = os.path.join(args["model_repository"], "seen.jsonl")

    def execute(self, requests):
        entry = []
        for request in requests:
            seen = {}
            for tensor in request.inputs():
                array = tensor.as_numpy()
                values = [v.decode() if isinstance(v, bytes) else v
                          for v in array.flatten().tolist()]
                seen[tensor.name()] = [str(array.dtype), list(array.shape), values]
            entry.append(seen)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\\n")
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""

RECORDER_CONFIG = """
name: "recorder"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 2 ] },
        { name: "INPUT2" data_type: TYPE_STRING dims: [ 2 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
model_warmup [ {
  name: "zero sample"
  batch_size: 3
  count: 2
  inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [4] zero_data: true } }
  inputs { key: "INPUT1"
           value: { data_type: TYPE_INT32 dims: [2] input_data_file: "int.bin" } }
  inputs { key: "INPUT2" value: { data_type: TYPE_STRING dims: [2] zero_data: true } }
}, {
  name: "random sample"
  batch_size: 1
  inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [4] random_data: true } }
  inputs { key: "INPUT1" value: { data_type: TYPE_INT32 dims: [2] zero_data: true } }
  inputs { key: "INPUT2"
           value: { data_type: TYPE_STRING dims: [2] random_data: true } }
} ]
"""

# L0_warmup's sequence model: a sample names the sequence batcher's control inputs
# (Triton's instruction for sequence models) and, here, an input the config does
# not list; Triton hands both to the model beside the config's inputs.
SEQUENCE_CONFIG = """
name: "sequence_recorder"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
sequence_batching {
  control_input [
    { name: "START"
      control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY"
      control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] }
  ]
}
instance_group [ { count: 1 kind: KIND_CPU } ]
model_warmup [ {
  name: "sequence sample"
  batch_size: 2
  inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [4] zero_data: true } }
  inputs { key: "START"
           value: { data_type: TYPE_INT32 dims: [1] input_data_file: "one.bin" } }
  inputs { key: "READY" value: { data_type: TYPE_INT32 dims: [1] zero_data: true } }
  inputs { key: "EXTRA"
           value: { data_type: TYPE_INT32 dims: [2] input_data_file: "pair.bin" } }
} ]
"""

# No batching: a sample's extra input keeps the shape its dims give.
UNBATCHED_CONFIG = """
name: "unbatched_recorder"
backend: "python"
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
model_warmup [ {
  name: "unbatched sample"
  batch_size: 1
  inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [4] zero_data: true } }
  inputs { key: "EXTRA"
           value: { data_type: TYPE_STRING dims: [1, 2] zero_data: true } }
} ]
"""

# Answers every request with an error (L0_warmup's failing_infer).
FAILING = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError("An Error Occurred"))
                for _ in requests]
"""

# Decoupled: closes every request with the final flag and no response (L0_warmup's
# decoupled model).
FINAL_ONLY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            request.get_response_sender().send(
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


def _sample_config(name: str, sample: str, extra: str = "") -> str:
    return f"""
name: "{name}"
backend: "python"
input [ {{ name: "INPUT" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU }} ]
model_warmup [ {{
  name: "{sample}"
  batch_size: 1
  inputs {{ key: "INPUT"
            value: {{ data_type: TYPE_FP32 dims: 4 zero_data: true }} }}
}} ]
{extra}
"""


def _write_repo(root: Path) -> None:
    write_model(root, "recorder", RECORDER_CONFIG, RECORDER)
    (root / "recorder" / "warmup").mkdir()
    data = np.array([7, -3], np.int32).tobytes()
    (root / "recorder" / "warmup" / "int.bin").write_bytes(data)
    write_model(
        root, "failing_infer", _sample_config("failing_infer", "zero sample"), FAILING
    )
    write_model(root, "sequence_recorder", SEQUENCE_CONFIG, RECORDER)
    warmup_dir = root / "sequence_recorder" / "warmup"
    warmup_dir.mkdir()
    (warmup_dir / "one.bin").write_bytes(np.array([1], np.int32).tobytes())
    (warmup_dir / "pair.bin").write_bytes(np.array([5, 6], np.int32).tobytes())
    write_model(root, "unbatched_recorder", UNBATCHED_CONFIG, RECORDER)
    write_model(
        root,
        "decoupled",
        _sample_config(
            "decoupled",
            "decoupled sample",
            "model_transaction_policy { decoupled: true }",
        ),
        FINAL_ONLY,
    )


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp(f"qa_warmup_{request.param}") / "repo"
    _write_repo(root)
    # Triton logs which warmup sample runs at verbose level 1.
    args = ("--model-control-mode=explicit", "--log-verbose=1")
    with run_either(request.param, root, *args) as running:
        running.repo = root  # type: ignore[attr-defined]
        yield running


def _load(server: RunningServer, model: str) -> str | None:
    """None when ``model`` loads, else the error text of the refusal.

    Triton 2.51 now and then crashes on this machine while a warmup fails and
    leaves the request hanging: the test skips as soon as its log says so."""
    answer: list[str | None] = []
    broken: list[Exception] = []

    def load() -> None:
        try:
            with httpclient.InferenceServerClient(server.http_url) as client:
                client.load_model(model)
        except InferenceServerException as error:
            answer.append(error.message())
            return
        except Exception as error:
            # A crashed reference closes the connection once it is stopped, after
            # the test has skipped: only a server still running is at fault.
            if not server.crashed_reference():
                broken.append(error)
            return
        answer.append(None)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    wait_until(
        lambda: answer or broken or server.crashed_reference(),
        f"the load of {model}",
        120,
    )
    if broken and not _crash_logged(server):
        raise broken[0]
    if not answer:
        pytest.skip("the reference Triton crashed during the load")
    return answer[0]


def _crash_logged(server: RunningServer, seconds: float = 10.0) -> bool:
    """Whether the reference's crash reaches its log within ``seconds`` (the log
    is read on a thread, so it can trail the closed connection)."""
    deadline = time.monotonic() + seconds
    while not server.crashed_reference():
        if time.monotonic() > deadline or not server.reference:
            return False
        time.sleep(0.1)
    return True


def _stats(server: RunningServer, model: str) -> dict[str, Any]:
    with httpclient.InferenceServerClient(server.http_url) as client:
        return dict(client.get_inference_statistics(model)["model_stats"][0])


def _requests_seen(repo: Path, model: str = "recorder") -> list[list[dict[str, Any]]]:
    lines = (repo / model / "seen.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_samples_reach_the_model_as_requests(server: RunningServer) -> None:
    """Each sample runs ``count`` times (at least once), each time as
    ``batch_size`` requests of batch 1; zero data is zeros (empty strings for
    strings, random data too), a data file's bytes arrive as they are."""
    assert _load(server, "recorder") is None
    repo: Path = server.repo  # type: ignore[attr-defined]
    requests = [r for execution in _requests_seen(repo) for r in execution]
    zero = {
        "INPUT0": ["float32", [1, 4], [0.0] * 4],
        "INPUT1": ["int32", [1, 2], [7, -3]],
        "INPUT2": ["object", [1, 2], ["", ""]],
    }
    # Random numbers are whatever the buffer held: only their shape is checked.
    random = [
        {
            "INPUT0": request["INPUT0"][:2],
            "INPUT1": request["INPUT1"],
            "INPUT2": request["INPUT2"],
        }
        for request in requests[6:]
    ]
    assert requests[:6] == [zero] * 6
    assert random == [
        {
            "INPUT0": ["float32", [1, 4]],
            "INPUT1": ["int32", [1, 2], [0, 0]],
            "INPUT2": ["object", [1, 2], ["", ""]],
        }
    ]
    # Warmup requests are counted like any other (Triton counts them after it
    # hands the responses back).
    wait_until(
        lambda: _stats(server, "recorder")["inference_count"] >= 7,
        "the warmup requests to be counted",
    )
    stats = _stats(server, "recorder")
    assert stats["inference_count"] == 7
    assert stats["inference_stats"]["success"]["count"] == 7
    assert stats["inference_stats"]["fail"]["count"] == 0


def test_a_sample_runs_as_one_execution(server: RunningServer) -> None:
    """Triton hands each instance a run's ``batch_size`` requests together: one
    execution per run, counted as a batch of that size."""
    assert _load(server, "recorder") is None
    repo: Path = server.repo  # type: ignore[attr-defined]
    assert [len(execution) for execution in _requests_seen(repo)[-3:]] == [3, 3, 1]
    wait_until(
        lambda: _stats(server, "recorder")["inference_count"] >= 7,
        "the warmup requests to be counted",
    )
    stats = _stats(server, "recorder")
    assert stats["execution_count"] == 3
    assert [b["batch_size"] for b in stats["batch_stats"]] == [1, 3]


def test_a_sample_hands_inputs_the_config_does_not_list_to_the_model(
    server: RunningServer,
) -> None:
    """A sample may name inputs the config does not list, such as a sequence
    model's control inputs (L0_warmup's instruction for sequence models): they
    reach the model beside the config's inputs, with the batch dimension when the
    model batches, and the sequence batcher adds no controls of its own."""
    assert _load(server, "sequence_recorder") is None
    assert _load(server, "unbatched_recorder") is None
    repo: Path = server.repo  # type: ignore[attr-defined]
    sequence = {
        "INPUT0": ["float32", [1, 4], [0.0] * 4],
        "START": ["int32", [1, 1], [1]],
        "READY": ["int32", [1, 1], [0]],
        "EXTRA": ["int32", [1, 2], [5, 6]],
    }
    assert _requests_seen(repo, "sequence_recorder") == [[sequence, sequence]]
    unbatched = {
        "INPUT0": ["float32", [4], [0.0] * 4],
        "EXTRA": ["object", [1, 2], ["", ""]],
    }
    assert _requests_seen(repo, "unbatched_recorder") == [[unbatched]]


def test_a_decoupled_model_may_answer_a_sample_with_no_response(
    server: RunningServer,
) -> None:
    """A decoupled model that only closes the sample's request is warmed up
    (L0_warmup's decoupled model) and ready."""
    assert _load(server, "decoupled") is None
    with httpclient.InferenceServerClient(server.http_url) as client:
        assert client.is_model_ready("decoupled")
    assert server.wait_for_log("is running warmup sample 'decoupled sample'")
    assert "failed to run warmup sample 'decoupled sample'" not in server.log_text()


def test_a_failing_sample_fails_the_load(server: RunningServer) -> None:
    """The error the model answers a sample with fails the load, in Triton's
    words, and the version is left UNAVAILABLE with that reason. (Last on the
    module's server: Triton 2.51 now and then crashes after such a failure.)"""
    message = _load(server, "failing_infer")
    wanted = (
        "load failed for model 'failing_infer': version 1 is at UNAVAILABLE "
        "state: Invalid argument: failed to run warmup sample 'zero sample': "
        "An Error Occurred; ;\n"
    )
    assert message == wanted
    with httpclient.InferenceServerClient(server.http_url) as client:
        index = client.get_model_repository_index()
        assert not client.is_model_ready("failing_infer")
    row = next(r for r in index if r["name"] == "failing_infer")
    assert row["state"] == "UNAVAILABLE"
    assert row["reason"] == (
        "Invalid argument: failed to run warmup sample 'zero sample': "
        "An Error Occurred; "
    )


def _start_until_it_gives_up(kind: str, tmp_path: Path, repo: Path) -> str:
    """Start a server of ``kind`` on ``repo`` (models loaded at start-up), wait
    until it exits or says it failed to load its models, stop it; its log.

    (Triton 2.51 now and then stays up after saying so, its python stub still
    running: the log, not the exit, is what both are judged by.)"""
    http, grpc, metrics = free_ports(3)
    ports = [f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}"]
    if kind == "reference":
        command = reference_command()
        if command is None:
            pytest.skip("TRITONX_REFERENCE_CMD is not set")
        full = [*command, f"--model-repository={repo}", *ports]
    else:
        full = server_command([repo], ports)
    log_path = tmp_path / f"{kind}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            full, env=server_env(), stdout=log, stderr=subprocess.STDOUT, text=True
        )
    try:
        wait_until(
            lambda: (
                process.poll() is not None
                or "failed to load all models" in log_path.read_text()
            ),
            "the server to give up",
            timeout=120,
        )
    finally:
        status = terminate(process)
    assert status != 0
    return log_path.read_text()


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_a_failing_sample_stops_start_up(kind: str, tmp_path: Path) -> None:
    """At start-up (exit-on-error, the default) a sample the model fails fails
    the start: the sample's failure is logged and the endpoints never open."""
    repo = tmp_path / "repo"
    write_model(
        repo, "failing_infer", _sample_config("failing_infer", "zero sample"), FAILING
    )
    log = _start_until_it_gives_up(kind, tmp_path, repo)
    if kind == "reference" and "failed to load all models" not in log:
        # It died without a word (its python backend crashes now and then here).
        pytest.skip("the reference Triton died before it had loaded its models")
    assert "failed to run warmup sample 'zero sample': An Error Occurred;" in log
    assert "failed to load 'failing_infer' version 1" in log
    assert "failed to load all models" in log
    assert "Started HTTPService" not in log
