"""Iterative sequences (``sequence_batching { iterative_sequence: true }``) through a
real server: a request without a correlation id is a sequence of its own, the model
reschedules it (``set_release_flags(TRITONSERVER_REQUEST_RELEASE_RESCHEDULE)``) until
done, the batcher runs it again in later batches mixed with other requests
(continuous batching), with START only on its first execution. Non-decoupled (None as the response of a
rescheduled request) and decoupled (a response per execution, FINAL at the end),
over HTTP and gRPC, in-process and in stub processes; the refusals a model gets
when it reschedules where it may not.
The basic cases run against the real Triton when TRITONX_REFERENCE_CMD is given."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import (
    RunningServer,
    run_either,
    run_server,
)
from tritonclient.utils import InferenceServerException

CONTROLS = """
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
"""


def _config(decoupled: bool, extra: str = "", process: bool = False) -> str:
    return (
        'backend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "TRACE" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
        f"sequence_batching {{ iterative_sequence: true\n{CONTROLS}{extra} }}\n"
        + ("model_transaction_policy { decoupled: true }\n" if decoupled else "")
        + (
            'parameters { key: "EXECUTION_MODE" value { string_value: "process" } }\n'
            if process
            else ""
        )
    )


# Counts COUNT executions per request (keyed by its correlation id), recording the
# START and CORRID controls it saw and the batch sizes it ran in; TRACE is that
# record as JSON. COUNT = -1: run until the file STOP_FLAG exists.
MODEL = """
import json, os, time
import numpy as np
import triton_python_backend_utils as pb_utils

RESCHEDULE = pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE


def value(request, name):
    return int(pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0])


class TritonPythonModel:
    def initialize(self, args):
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(
            json.loads(args["model_config"]))
        self.seen = {}

    def _step(self, request, batch):
        key = request.correlation_id()
        record = self.seen.setdefault(
            key, {"count": value(request, "COUNT"), "starts": [], "corrids": [],
                  "batches": []})
        record["starts"].append(value(request, "START"))
        record["corrids"].append(value(request, "CORRID"))
        record["batches"].append(batch)
        count = record["count"]
        if count < 0:
            done = os.path.exists(os.environ.get("STOP_FLAG", "/nonexistent"))
        else:
            done = len(record["starts"]) >= count
        if done:
            del self.seen[key]
        trace = np.array([json.dumps(record).encode()], dtype=object)
        response = pb_utils.InferenceResponse([pb_utils.Tensor("TRACE", trace)])
        return done, response

    def execute(self, requests):
        time.sleep(0.01)  # long enough for requests sent together to overlap
        ready = [r for r in requests if value(r, "READY")]
        out = []
        for r in requests:
            if not value(r, "READY"):  # a filler of an empty slot: answered to nobody
                if not self.decoupled:
                    out.append(pb_utils.InferenceResponse([]))
                continue
            done, response = self._step(r, len(ready))
            if self.decoupled:
                sender = r.get_response_sender()
                if done:
                    sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                else:
                    r.set_release_flags(RESCHEDULE)
                    sender.send(response)
            elif done:
                out.append(response)
            else:
                r.set_release_flags(RESCHEDULE)
                out.append(None)
        return None if self.decoupled else out
"""


def _write(repo: Path, name: str, config: str, model: str = MODEL) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    (repo / name / "1" / "model.py").write_text(model)


def _repo(root: Path) -> Path:
    repo = root / "repo"
    _write(repo, "steps", _config(False))
    _write(repo, "stream", _config(True))
    return repo


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("iterative")
    repo = _repo(root)
    with run_either(request.param, repo) as running:
        yield running


def _count(lib, n: int):
    tensor = lib.InferInput("COUNT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[n]], np.int32))
    return [tensor]


def _trace(result) -> dict:
    return json.loads(result.as_numpy("TRACE").reshape(-1)[0])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_request_runs_until_the_model_is_done(
    server: RunningServer, protocol: str
) -> None:
    lib = httpclient if protocol == "http" else grpcclient
    client = lib.InferenceServerClient(
        server.http_url if protocol == "http" else server.grpc_url
    )
    trace = _trace(client.infer("steps", _count(lib, 3)))
    # START on the first execution only; the batcher numbered the sequence.
    assert trace["starts"] == [1, 0, 0]
    assert len(set(trace["corrids"])) == 1 and trace["corrids"][0] > 0
    # A request with its own id and START is one sequence too.
    trace = _trace(
        client.infer("steps", _count(lib, 2), sequence_id=77, sequence_start=True)
    )
    assert trace["starts"] == [1, 0]
    assert trace["corrids"] == [77, 77]


def _executions(client: httpclient.InferenceServerClient) -> int:
    stats = client.get_inference_statistics("steps")["model_stats"][0]
    return int(stats["execution_count"])


def test_concurrent_requests_share_batches(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url, concurrency=8)
    before = _executions(client)
    counts = [1, 2, 3, 4, 5, 6, 7, 8]
    handles = [client.async_infer("steps", _count(httpclient, n)) for n in counts]
    traces = [_trace(h.get_result()) for h in handles]
    executions = _executions(client) - before
    client.close()
    for n, trace in zip(counts, traces, strict=True):
        assert trace["starts"] == [1] + [0] * (n - 1)
    # Distinct sequences, each in one slot: numbered apart.
    assert len({t["corrids"][0] for t in traces}) == len(counts)
    assert executions < sum(counts)  # steps of different requests ran together
    assert max(max(t["batches"]) for t in traces) > 1


def test_decoupled_requests_stream_one_response_per_execution(
    server: RunningServer,
) -> None:
    responses: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    client.async_stream_infer("stream", _count(grpcclient, 4), request_id="r")
    got = []
    while True:
        result, error = responses.get(timeout=60)
        assert error is None, error
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        if response.outputs:
            got.append(_trace(result)["starts"])
        if final:
            break
    client.stop_stream()
    assert got == [[1], [1, 0], [1, 0, 0], [1, 0, 0, 0]]


class Ours(NamedTuple):
    server: RunningServer
    stop_flag: Path  # the long request of "stream" ends once this file exists


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ours]:
    root = tmp_path_factory.mktemp("iterative_ours")
    repo = _repo(root)
    _write(repo, "plain", PLAIN_CONFIG, MODEL)
    _write(repo, "steps_process", _config(False, process=True))
    _write(repo, "stream_process", _config(True, process=True))
    _write(repo, "answers_too", _config(False), ANSWERS_TOO_MODEL)
    stop = root / "stop"
    with run_server(repo, env={"STOP_FLAG": str(stop)}) as running:
        yield Ours(running, stop)


PLAIN_CONFIG = (
    'backend: "python"\nmax_batch_size: 4\n'
    'input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] },'
    ' { name: "START" data_type: TYPE_INT32 dims: [ 1 ] },'
    ' { name: "READY" data_type: TYPE_INT32 dims: [ 1 ] },'
    ' { name: "CORRID" data_type: TYPE_UINT64 dims: [ 1 ] } ]\n'
    'output [ { name: "TRACE" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
)
# Reschedules and answers too (a response for a rescheduled request is an error).
ANSWERS_TOO_MODEL = MODEL.replace(
    "                r.set_release_flags(RESCHEDULE)\n                out.append(None)",
    "                r.set_release_flags(RESCHEDULE)\n                out.append(response)",
)


def _streamed(
    client: grpcclient.InferenceServerClient, count: int, model: str = "stream"
) -> list[dict]:
    """The traces of every response to one streamed request, up to its FINAL."""
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    client.async_stream_infer(model, _count(grpcclient, count))
    traces = []
    while True:
        result, error = responses.get(timeout=60)
        assert error is None, error
        response = result.get_response()
        if response.outputs:
            traces.append(_trace(result))
        if response.parameters["triton_final_response"].bool_param:
            break
    client.stop_stream()
    return traces


def test_a_new_request_joins_the_batches_of_a_running_one(ours: Ours) -> None:
    """Continuous batching: a request that runs until told to stop is still being
    rescheduled when a short one arrives; the short one runs in its batches and
    finishes first."""
    responses: queue.Queue = queue.Queue()
    long = grpcclient.InferenceServerClient(ours.server.grpc_url)
    long.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        long.async_stream_infer("stream", _count(grpcclient, -1))
        _first, error = responses.get(timeout=60)  # it is running
        assert error is None, error
        short = _streamed(grpcclient.InferenceServerClient(ours.server.grpc_url), 3)
        assert [t["starts"] for t in short] == [[1], [1, 0], [1, 0, 0]]
        assert max(short[-1]["batches"]) == 2  # ran beside the long request
        final_seen = False
        while not responses.empty():
            result, error = responses.get()
            assert error is None, error
            response = result.get_response()
            final_seen |= response.parameters["triton_final_response"].bool_param
        assert not final_seen
    finally:
        ours.stop_flag.write_text("stop")
    while True:
        result, error = responses.get(timeout=60)
        assert error is None, error
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
    long.stop_stream()


def test_a_cancelled_request_is_not_rescheduled(ours: Ours) -> None:
    """The client goes away: the batcher stops running the request (it fails
    CANCELED) although the model never checks is_cancelled()."""
    responses: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(ours.server.grpc_url)
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    client.async_stream_infer("stream", _count(grpcclient, 1_000_000))  # ~3 hours
    _first, error = responses.get(timeout=60)
    assert error is None, error
    client.stop_stream(cancel_requests=True)
    client.close()
    http = httpclient.InferenceServerClient(ours.server.http_url)
    deadline = time.monotonic() + 60
    while True:
        stats = http.get_inference_statistics("stream")["model_stats"][0]
        if int(stats["inference_stats"]["fail"]["count"]) >= 1:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.05)
    executions = int(stats["execution_count"])
    time.sleep(0.2)  # had it been rescheduled, it would have run ~20 more times
    after = http.get_inference_statistics("stream")["model_stats"][0]
    http.close()
    assert int(after["execution_count"]) == executions


def test_stub_processes_reschedule_too(ours: Ours) -> None:
    client = httpclient.InferenceServerClient(ours.server.http_url)
    assert _trace(client.infer("steps_process", _count(httpclient, 3)))["starts"] == [
        1,
        0,
        0,
    ]
    client.close()
    streamed = _streamed(
        grpcclient.InferenceServerClient(ours.server.grpc_url), 3, "stream_process"
    )
    assert [t["starts"] for t in streamed] == [[1], [1, 0], [1, 0, 0]]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "plain",
            "request rescheduling needs 'sequence_batching { iterative_sequence: "
            "true }' in the configuration of model 'plain'",
        ),
        (
            "answers_too",  # Triton's text, spelling included
            "Expected a None object in the execute function return list for "
            "reschduled request, found type",
        ),
    ],
)
def test_where_a_model_may_not_reschedule(ours: Ours, model: str, message: str) -> None:
    client = httpclient.InferenceServerClient(ours.server.http_url)
    inputs = _count(httpclient, 2)
    if model == "plain":
        for name, dtype in (
            ("START", "INT32"),
            ("READY", "INT32"),
            ("CORRID", "UINT64"),
        ):
            tensor = httpclient.InferInput(name, [1, 1], dtype)
            tensor.set_data_from_numpy(
                np.array([[1]], np.int32 if dtype == "INT32" else np.uint64)
            )
            inputs.append(tensor)
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, inputs)
    client.close()
    assert message in info.value.message()
