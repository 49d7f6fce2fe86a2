"""Request rescheduling, after Triton's L0_backend_python/request_rescheduling QA,
as a differential test: models of an iterative sequence batcher that release their
request with ``TRITONSERVER_REQUEST_RELEASE_RESCHEDULE``, reached directly (HTTP,
gRPC, a gRPC stream) and from a BLS model (``exec``, ``exec(decoupled=True)``,
``async_exec``), and a model that reschedules yet returns a response. The same
requests go to tritonx (in-process and in stub processes) and to Triton 2.51.

tests/sequence/test_iterative.py covers the batcher's side (batches, START,
cancellation) and rescheduling outside an iterative sequence (a deliberate
difference, docs/backends.md); this file covers what the QA checks: the answers of
rescheduled requests, through BLS too, the error text of a wrong return, and the
statistics they leave."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import (
    PYTHON_MODEL_SERVERS,
    RunningServer,
    reference_command,
    run_python_model_server,
)
from testmodels import write_model
from tritonclient.utils import InferenceServerException

ITERATIVE = "sequence_batching { iterative_sequence: true }\n"

ADDSUB_CONFIG = (
    'backend: "python"\nmax_batch_size: 0\n'
    'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] },'
    ' { name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] } ]\n'
    'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] },'
    ' { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 16 ] },'
    ' { name: "RUNS" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    + ITERATIVE
    + "instance_group [ { kind: KIND_CPU } ]\n"
)

# Every other execution reschedules its request instead of answering (requests
# here come one at a time, so each is rescheduled once, then answered); RUNS is
# the number of executions so far.
ADDSUB_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.runs = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.runs += 1
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            if self.runs % 2 == 1:
                request.set_release_flags(
                    pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE
                )
                responses.append(None)
                continue
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", (a + b).astype(np.float32)),
                pb_utils.Tensor("OUTPUT1", (a - b).astype(np.float32)),
                pb_utils.Tensor("RUNS", np.array([self.runs], np.int32)),
            ]))
        return responses
"""

COUNTDOWN_CONFIG = (
    'backend: "python"\nmax_batch_size: 0\n'
    "model_transaction_policy { decoupled: true }\n"
    'input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
    + ITERATIVE
    + "instance_group [ { kind: KIND_CPU } ]\n"
)

# Decoupled: IN = n sends n responses, one per execution, counting down to 0; the
# request is rescheduled after each but the last, which comes with FINAL.
COUNTDOWN_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.left = None

    def execute(self, requests):
        for request in requests:
            if self.left is None:
                self.left = int(
                    pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]
                )
            self.left -= 1
            sender = request.get_response_sender()
            response = pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", np.array([self.left], np.int32))]
            )
            if self.left <= 0:
                self.left = None
                sender.send(
                    response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                )
            else:
                request.set_release_flags(
                    pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE
                )
                sender.send(response)
        return None
"""

WRONG_CONFIG = (
    'backend: "python"\nmax_batch_size: 0\n'
    'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    + ITERATIVE
    + "instance_group [ { kind: KIND_CPU } ]\n"
)

# Reschedules its request and returns a response for it all the same.
WRONG_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            request.set_release_flags(
                pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE
            )
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x)])
            )
        return responses
"""

BLS_CONFIG = (
    'backend: "python"\nmax_batch_size: 0\n'
    'input [ { name: "WHICH" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
    'output [ { name: "OBS" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
    "instance_group [ { kind: KIND_CPU } ]\n"
)

# WHICH names the call to make ("addsub", "countdown", "wrong", each also with the
# prefix "async_" for async_exec); OBS is what came back, as JSON.
BLS_MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils

A = np.arange(16, dtype=np.float32)
B = np.full(16, 0.5, dtype=np.float32)


def seen(response):
    if response.has_error():
        return {"error": response.error().message()}
    return {
        t.name(): t.as_numpy().tolist()
        for t in sorted(response.output_tensors(), key=lambda t: t.name())
    }


def request_for(call):
    if call == "addsub":
        return pb_utils.InferenceRequest(
            model_name="resched_addsub",
            inputs=[pb_utils.Tensor("INPUT0", A), pb_utils.Tensor("INPUT1", B)],
            requested_output_names=["OUTPUT0", "OUTPUT1", "RUNS"],
        )
    if call == "countdown":
        return pb_utils.InferenceRequest(
            model_name="resched_countdown",
            inputs=[pb_utils.Tensor("IN", np.array([3], np.int32))],
            requested_output_names=["OUT"],
        )
    return pb_utils.InferenceRequest(
        model_name="resched_wrong",
        inputs=[pb_utils.Tensor("INPUT0", A[:4])],
        requested_output_names=["OUTPUT0"],
    )


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            which = pb_utils.get_input_tensor_by_name(request, "WHICH").as_numpy()
            which = which.reshape(-1)[0].decode()
            call = which.removeprefix("async_")
            infer = request_for(call)
            decoupled = call == "countdown"
            if which.startswith("async_"):
                answer = await infer.async_exec(decoupled=decoupled)
            else:
                answer = infer.exec(decoupled=decoupled)
            if decoupled:
                obs = [seen(r) for r in answer]
            else:
                obs = seen(answer)
            out = np.array([json.dumps(obs)], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OBS", out)]))
        return responses
"""

A = np.arange(16, dtype=np.float32)
B = np.full(16, 0.5, dtype=np.float32)
BLS_CALLS = (
    "addsub",
    "async_addsub",
    "countdown",
    "async_countdown",
    "wrong",
    "async_wrong",
)
# (inference_count, execution_count) of each model after observe(): addsub runs
# twice for each of its 4 requests (HTTP, gRPC, two BLS calls), countdown three
# times for each of its 3 (a stream, two BLS calls), wrong once for each of its 4
# (HTTP, gRPC, two BLS calls; failed, so no inference counted).
COUNTS = {
    "resched_addsub": (8, 8),
    "resched_countdown": (9, 9),
    "resched_wrong": (0, 4),
    "resched_bls": (6, 6),
}
# tritonx: a request's success or failure is counted once (docs/architecture.md).
SUCCESSES = {"resched_addsub": 4, "resched_countdown": 3, "resched_bls": 6}
FAILURES = {"resched_wrong": 4}


def _addsub_inputs(lib: Any) -> list[Any]:
    inputs = [
        lib.InferInput("INPUT0", [16], "FP32"),
        lib.InferInput("INPUT1", [16], "FP32"),
    ]
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_data_from_numpy(B)
    return inputs


def _outputs(result: Any) -> dict[str, list[Any]]:
    return {
        name: result.as_numpy(name).tolist() for name in ("OUTPUT0", "OUTPUT1", "RUNS")
    }


def _error(call: Any) -> tuple[str | None, str]:
    try:
        call()
    except InferenceServerException as error:
        return (error.status(), error.message())
    raise AssertionError("expected an error")


def _streamed(client: grpcclient.InferenceServerClient) -> list[Any]:
    """OUT of each response to IN=3 on a stream, with its FINAL flag."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([3], np.int32))
    client.async_stream_infer(
        "resched_countdown", [tensor], enable_empty_final_response=True
    )
    got: list[Any] = []
    while True:
        result, error = answers.get(timeout=60)
        if error is not None:
            got.append(("error", error.message()))
            break
        response = result.get_response()
        final = response.parameters["triton_final_response"].bool_param
        out = result.as_numpy("OUT")
        got.append((None if out is None else out.tolist(), final))
        if final:
            break
    client.stop_stream()
    return got


def _statistics(
    client: httpclient.InferenceServerClient, reference: bool
) -> dict[str, Any]:
    """Each model's counts, once its requests are all counted (Triton 2.51 counts a
    request after it has answered it)."""

    def entry(model: str) -> dict[str, Any]:
        return client.get_inference_statistics(model)["model_stats"][0]

    def counted() -> bool:
        for model, (inferences, executions) in COUNTS.items():
            stats = entry(model)
            if int(stats["inference_count"]) < inferences:
                return False
            if int(stats["execution_count"]) < executions:
                return False
        if reference:
            return True
        return all(
            int(entry(m)["inference_stats"]["success"]["count"]) >= n
            for m, n in SUCCESSES.items()
        ) and all(
            int(entry(m)["inference_stats"]["fail"]["count"]) >= n
            for m, n in FAILURES.items()
        )

    wait_until(counted, "every request counted")
    seen = {}
    for model in COUNTS:
        stats = entry(model)
        inference = stats["inference_stats"]
        seen[model] = {
            "inference_count": int(stats["inference_count"]),
            "execution_count": int(stats["execution_count"]),
            **{k: int(inference[k]["count"]) for k in ("success", "fail")},
        }
    return seen


def observe(server: RunningServer) -> dict[str, Any]:
    """Every observation compared, from one server (requests one at a time)."""
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    seen: dict[str, Any] = {}
    seen["http addsub"] = _outputs(
        http.infer("resched_addsub", _addsub_inputs(httpclient))
    )
    seen["grpc addsub"] = _outputs(
        grpc.infer("resched_addsub", _addsub_inputs(grpcclient))
    )
    seen["stream countdown"] = _streamed(grpc)
    wrong = httpclient.InferInput("INPUT0", [4], "FP32")
    wrong.set_data_from_numpy(A[:4])
    seen["http wrong"] = _error(lambda: http.infer("resched_wrong", [wrong]))
    wrong = grpcclient.InferInput("INPUT0", [4], "FP32")
    wrong.set_data_from_numpy(A[:4])
    seen["grpc wrong"] = _error(lambda: grpc.infer("resched_wrong", [wrong]))
    for call in BLS_CALLS:
        which = httpclient.InferInput("WHICH", [1], "BYTES")
        which.set_data_from_numpy(np.array([call.encode()], dtype=np.object_))
        result = http.infer("resched_bls", [which])
        seen[f"bls {call}"] = json.loads(result.as_numpy("OBS")[0])
    seen["statistics"] = _statistics(http, server.reference)
    http.close()
    grpc.close()
    return seen


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    repo = tmp_path_factory.mktemp("resched") / "repo"
    write_model(repo, "resched_addsub", ADDSUB_CONFIG, ADDSUB_MODEL)
    write_model(repo, "resched_countdown", COUNTDOWN_CONFIG, COUNTDOWN_MODEL)
    write_model(repo, "resched_wrong", WRONG_CONFIG, WRONG_MODEL)
    write_model(repo, "resched_bls", BLS_CONFIG, BLS_MODEL)
    results: dict[str, Any] = {}
    for name, (kind, _) in PYTHON_MODEL_SERVERS.items():
        if kind == "reference" and reference_command() is None:
            continue
        with run_python_model_server(name, repo) as server:
            results[name] = observe(server)
    yield results


MODES = ("in-process", "process")


def _same_as_reference(observed: dict[str, Any], mode: str, keys: list[str]) -> None:
    if "reference" not in observed:
        return
    ours, theirs = observed[mode], observed["reference"]
    for key in keys:
        assert ours[key] == theirs[key], key


EXPECTED_ADDSUB = {
    "OUTPUT0": (A + B).tolist(),
    "OUTPUT1": (A - B).tolist(),
}


@pytest.mark.parametrize("mode", MODES)
def test_a_rescheduled_request_is_answered_on_its_next_execution(
    observed: dict[str, Any], mode: str
) -> None:
    seen = observed[mode]
    # Each request ran twice: rescheduled first, answered the second time.
    assert seen["http addsub"] == {**EXPECTED_ADDSUB, "RUNS": [2]}
    assert seen["grpc addsub"] == {**EXPECTED_ADDSUB, "RUNS": [4]}
    assert seen["stream countdown"] == [([2], False), ([1], False), ([0], True)]
    _same_as_reference(
        observed, mode, ["http addsub", "grpc addsub", "stream countdown"]
    )


@pytest.mark.parametrize("mode", MODES)
def test_bls_calls_to_rescheduling_models(observed: dict[str, Any], mode: str) -> None:
    seen = observed[mode]
    assert seen["bls addsub"] == {**EXPECTED_ADDSUB, "RUNS": [6]}
    assert seen["bls async_addsub"] == {**EXPECTED_ADDSUB, "RUNS": [8]}
    for call in ("countdown", "async_countdown"):
        # The last response of a decoupled exec is FINAL without outputs.
        assert seen[f"bls {call}"][:3] == [{"OUT": [2]}, {"OUT": [1]}, {"OUT": [0]}]
    _same_as_reference(
        observed,
        mode,
        ["bls addsub", "bls async_addsub", "bls countdown", "bls async_countdown"],
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_response_returned_for_a_rescheduled_request(
    observed: dict[str, Any], mode: str
) -> None:
    seen = observed[mode]
    text = (
        "Expected a None object in the execute function return list for "
        "reschduled request"  # (Triton's spelling)
    )
    for key in ("http wrong", "grpc wrong"):
        assert text in seen[key][1], key
    for call in ("wrong", "async_wrong"):
        assert text in seen[f"bls {call}"]["error"], call
    _same_as_reference(
        observed, mode, ["http wrong", "grpc wrong", "bls wrong", "bls async_wrong"]
    )


@pytest.mark.parametrize("mode", MODES)
def test_statistics_of_rescheduled_requests(
    observed: dict[str, Any], mode: str
) -> None:
    """Every execution is an inference, as in Triton 2.51. Success and failure
    differ on purpose (docs/architecture.md): tritonx counts each request once,
    when it is answered; Triton 2.51 counts a success per execution and one more
    failure per finished sequence (the cancelled null request it queues to free
    the sequence's slot), so they are left out of the comparison."""
    stats = observed[mode]["statistics"]
    for model, (inferences, executions) in COUNTS.items():
        assert stats[model]["inference_count"] == inferences, model
        assert stats[model]["execution_count"] == executions, model
    for model, successes in SUCCESSES.items():
        assert stats[model]["success"] == successes, model
        assert stats[model]["fail"] == 0, model
    assert stats["resched_wrong"] == {
        "inference_count": 0,
        "execution_count": 4,
        "success": 0,
        "fail": 4,
    }
    if "reference" in observed:
        theirs = observed["reference"]["statistics"]
        for model, counts in theirs.items():
            for key in ("inference_count", "execution_count"):
                assert stats[model][key] == counts[key], (model, key)
