"""Error paths and requested outputs of Python models, after Triton's
L0_backend_python QA (lifecycle, decoupled and io subdirectories), as
differential tests: one repository, one server per kind for the module (tritonx,
and Triton 2.51 when TRITONX_REFERENCE_CMD is given), and every case asserts the
same concrete answers on both, so a difference names the case that shows it.

Batches are made deterministic without clocks: the batched models queue with a
preferred batch size equal to the number of requests the case sends and a queue
delay far longer than any case, so the batch forms when the last request
arrives; the models report the size of the batch they ran."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, run_either
from testmodels import write_model
from tritonclient.utils import InferenceServerException

CODES = [
    "UNKNOWN",
    "INTERNAL",
    "NOT_FOUND",
    "INVALID_ARG",
    "UNAVAILABLE",
    "UNSUPPORTED",
    "ALREADY_EXISTS",
    "CANCELLED",
]

# Each request fails with the TritonError code named by its string input; an
# unknown name gives an error without a code.
ERROR_CODE_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            name = pb_utils.get_input_tensor_by_name(request, "ERROR_CODE")
            name = name.as_numpy().reshape(-1)[0].decode()
            code = getattr(pb_utils.TritonError, name, None)
            if code is None:
                error = pb_utils.TritonError("no such code: " + name)
            else:
                error = pb_utils.TritonError("code " + name, code)
            out.append(pb_utils.InferenceResponse(error=error))
        return out
"""

FP32_BATCHED = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "IN", data_type: TYPE_FP32, dims: [ -1 ] }} ]
output [
  {{ name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] }},
  {{ name: "BATCH", data_type: TYPE_INT32, dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
{extra}
"""

# A negative first element: an error response that also carries outputs (which
# Triton drops); zero: an error response without outputs; else the echo.
EXECUTE_ERROR_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        batch = np.array([[len(requests)]], np.int32)
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            tensors = [pb_utils.Tensor("OUT", data), pb_utils.Tensor("BATCH", batch)]
            if data[0][0] < 0:
                error = pb_utils.TritonError("failed with outputs")
                out.append(pb_utils.InferenceResponse(tensors, error))
            elif data[0][0] == 0:
                error = pb_utils.TritonError("failed without outputs")
                out.append(pb_utils.InferenceResponse(error=error))
            else:
                out.append(pb_utils.InferenceResponse(tensors))
        return out
"""

# Decoupled: each request is answered from its own thread, a negative first
# element with an error response (outputs attached), then FINAL.
DECOUPLED_EXECUTE_ERROR_MODEL = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


def answer(sender, data, batch):
    tensors = [pb_utils.Tensor("OUT", data), pb_utils.Tensor("BATCH", batch)]
    error = pb_utils.TritonError("thread failed") if data[0][0] < 0 else None
    sender.send(pb_utils.InferenceResponse(tensors, error))
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


class TritonPythonModel:
    def execute(self, requests):
        batch = np.array([[len(requests)]], np.int32)
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            sender = request.get_response_sender()
            threading.Thread(target=answer, args=(sender, data, batch)).start()
        return None
"""

WRONG_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            undefined_name_in_execute
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", data)]))
        return out
"""

RAISE_MODEL = """
class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            raise ValueError("raised on purpose")
        return None
"""

TWO_IN_TWO_OUT = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [
  {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }},
  {{ name: "INPUT1", data_type: TYPE_FP32, dims: [ 4 ] }}
]
output [
  {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] }},
  {{ name: "OUTPUT1", data_type: TYPE_FP32, dims: [ 4 ] }}
]
{extra}
"""

# Sum and difference: returned (default policy) or sent twice then FINAL
# (decoupled policy), or, with RETURN_LIST, returned even when decoupled.
ADD_SUB_MODEL = """
import triton_python_backend_utils as pb_utils

RETURN_LIST = {return_list}


class TritonPythonModel:
    def initialize(self, args):
        import json

        config = json.loads(args["model_config"])
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)

    def execute(self, requests):
        out = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            response = pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]
            )
            if self.decoupled and not RETURN_LIST:
                sender = request.get_response_sender()
                sender.send(response)
                sender.send(response)
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                out.append(response)
        return None if self.decoupled and not RETURN_LIST else out
"""

DECOUPLED = "model_transaction_policy { decoupled: true }"


def _queue_for(count: int) -> str:
    # The batch forms when the count-th request arrives (the delay is a bound).
    return (
        f"dynamic_batching {{ preferred_batch_size: [ {count} ], "
        "max_queue_delay_microseconds: 60000000 }"
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_lifecycle") / "repo"
    write_model(
        root,
        "error_code",
        """
name: "error_code"
backend: "python"
max_batch_size: 4
input [ { name: "ERROR_CODE", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [ { name: "DUMMY_OUT", data_type: TYPE_STRING, dims: [ 1 ] } ]
""",
        ERROR_CODE_MODEL,
    )
    batched = FP32_BATCHED.format
    write_model(
        root,
        "execute_error",
        batched(name="execute_error", extra=_queue_for(3)),
        EXECUTE_ERROR_MODEL,
    )
    write_model(
        root,
        "decoupled_execute_error",
        batched(name="decoupled_execute_error", extra=_queue_for(2) + DECOUPLED),
        DECOUPLED_EXECUTE_ERROR_MODEL,
    )
    write_model(root, "wrong_model", batched(name="wrong_model", extra=""), WRONG_MODEL)
    write_model(
        root,
        "decoupled_raise",
        batched(name="decoupled_raise", extra=DECOUPLED),
        RAISE_MODEL,
    )
    two = TWO_IN_TWO_OUT.format
    write_model(
        root,
        "add_sub",
        two(name="add_sub", extra=""),
        ADD_SUB_MODEL.format(return_list=False),
    )
    write_model(
        root,
        "add_sub_decoupled",
        two(name="add_sub_decoupled", extra=DECOUPLED),
        ADD_SUB_MODEL.format(return_list=False),
    )
    write_model(
        root,
        "decoupled_returns_list",
        two(name="decoupled_returns_list", extra=DECOUPLED),
        ADD_SUB_MODEL.format(return_list=True),
    )
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_either(request.param, repo) as running:
        yield running


def _fp32(value: float) -> np.ndarray:
    return np.full((1, 3), value, np.float32)


def _stream(
    server: RunningServer,
    model: str,
    requests: list[tuple[str, dict[str, np.ndarray], list[str] | None]],
    answers: int,
) -> dict[str, list[Any]]:
    """Send (id, inputs, requested outputs) on one gRPC stream; the answers per
    request id: an error's text or {output: list}."""
    got: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    seen: dict[str, list[Any]] = {}
    try:
        client.start_stream(callback=lambda result, error: got.put((result, error)))
        for request_id, tensors, outputs in requests:
            inputs = []
            for name, data in tensors.items():
                dtype = "BYTES" if data.dtype == np.object_ else "FP32"
                inputs.append(grpcclient.InferInput(name, list(data.shape), dtype))
                inputs[-1].set_data_from_numpy(data)
            wanted = None
            if outputs is not None:
                wanted = [grpcclient.InferRequestedOutput(o) for o in outputs]
            client.async_stream_infer(
                model, inputs, request_id=request_id, outputs=wanted
            )
        for _ in range(answers):
            result, error = got.get(timeout=60)
            if error is not None:
                # a stream error names no request: keep them under "error"
                seen.setdefault("error", []).append(str(error))
                continue
            response = result.get_response()
            seen.setdefault(response.id, []).append(
                {o.name: result.as_numpy(o.name).tolist() for o in response.outputs}
            )
    finally:
        client.stop_stream()
        client.close()
    assert got.empty(), "more answers than expected"
    return seen


# What each code becomes: (gRPC status, HTTP status), as Triton 2.51 maps them.
CODE_STATUS = {
    "UNKNOWN": ("UNKNOWN", "400"),
    "INTERNAL": ("INTERNAL", "500"),
    "NOT_FOUND": ("NOT_FOUND", "404"),
    "INVALID_ARG": ("INVALID_ARGUMENT", "400"),
    "UNAVAILABLE": ("UNAVAILABLE", "503"),
    "UNSUPPORTED": ("UNIMPLEMENTED", "501"),
    "ALREADY_EXISTS": ("ALREADY_EXISTS", "400"),
    "CANCELLED": ("CANCELLED", "400"),
    "NO_SUCH_CODE": ("INTERNAL", "500"),
}


def test_error_codes_reach_both_protocols(server: RunningServer) -> None:
    """A response error's code picks the gRPC status and the HTTP status (an
    error without a code is INTERNAL); the message is the model's."""
    seen = {}
    grpc_client = grpcclient.InferenceServerClient(server.grpc_url)
    http_client = httpclient.InferenceServerClient(server.http_url)
    for code in CODE_STATUS:
        data = np.array([[code.encode()]], dtype=np.object_)
        grpc_inputs = [grpcclient.InferInput("ERROR_CODE", [1, 1], "BYTES")]
        grpc_inputs[0].set_data_from_numpy(data)
        http_inputs = [httpclient.InferInput("ERROR_CODE", [1, 1], "BYTES")]
        http_inputs[0].set_data_from_numpy(data)
        with pytest.raises(InferenceServerException) as grpc_error:
            grpc_client.infer("error_code", grpc_inputs)
        with pytest.raises(InferenceServerException) as http_error:
            http_client.infer("error_code", http_inputs)
        message = f"code {code}" if code != "NO_SUCH_CODE" else f"no such code: {code}"
        assert grpc_error.value.message() == message
        assert http_error.value.message() == message
        seen[code] = (
            str(grpc_error.value.status()).removeprefix("StatusCode."),
            str(http_error.value.status()),
        )
    grpc_client.close()
    http_client.close()
    print("CODES", seen)
    assert seen == CODE_STATUS


def test_an_error_in_a_batch_fails_only_its_request(server: RunningServer) -> None:
    """Three requests run as one batch: the two error responses fail their
    requests (outputs attached to an error are dropped); the third is answered."""
    seen = _stream(
        server,
        "execute_error",
        [
            ("with", {"IN": _fp32(-1)}, None),
            ("ok", {"IN": _fp32(2)}, None),
            ("without", {"IN": _fp32(0)}, None),
        ],
        3,
    )
    assert sorted(seen.pop("error")) == [
        "failed with outputs",
        "failed without outputs",
    ]
    assert seen == {"ok": [{"OUT": [[2.0, 2.0, 2.0]], "BATCH": [[3]]}]}


def test_a_decoupled_error_response_fails_only_its_request(
    server: RunningServer,
) -> None:
    seen = _stream(
        server,
        "decoupled_execute_error",
        [("bad", {"IN": _fp32(-1)}, None), ("ok", {"IN": _fp32(5)}, None)],
        2,
    )
    assert seen == {
        "error": ["thread failed"],
        "ok": [{"OUT": [[5.0, 5.0, 5.0]], "BATCH": [[2]]}],
    }


def test_an_exception_in_execute_fails_the_request_and_counts_backend(
    server: RunningServer, repo: Path
) -> None:
    from test_metrics import labels, samples, scrape  # tests/test_metrics.py

    inputs = [httpclient.InferInput("IN", [1, 3], "FP32")]
    inputs[0].set_data_from_numpy(_fp32(1))
    with httpclient.InferenceServerClient(server.http_url) as client:
        with pytest.raises(InferenceServerException) as error:
            client.infer("wrong_model", inputs)
        assert client.is_model_ready("wrong_model")
    assert (error.value.status(), error.value.message()) == (
        "500",
        "Failed to process the request(s) for model 'wrong_model_0_0', message: "
        "NameError: name 'undefined_name_in_execute' is not defined\n\nAt:\n"
        f"  {repo}/wrong_model/1/model.py(10): execute\n",
    )
    failures = labels(model="wrong_model", reason="BACKEND", version="1")

    def count() -> float:
        series = samples(scrape(server.metrics_url))
        return series.get(("nv_inference_request_failure", failures), 0.0)

    wait_until(lambda: count() >= 1, "the failure is counted")
    assert count() == 1


def test_repeated_exceptions_in_a_decoupled_execute(
    server: RunningServer, repo: Path
) -> None:
    """Every request of the stream gets the exception as its error; the model
    stays ready."""
    seen = _stream(
        server,
        "decoupled_raise",
        [(f"r{i}", {"IN": _fp32(i)}, None) for i in range(6)],
        6,
    )
    text = (
        "Failed to process the request(s) for model 'decoupled_raise_0_0', message: "
        "ValueError: raised on purpose\n\nAt:\n"
        f"  {repo}/decoupled_raise/1/model.py(5): execute\n"
    )
    assert seen == {"error": [text] * 6}
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_model_ready("decoupled_raise")


def test_a_decoupled_execute_that_returns_responses(server: RunningServer) -> None:
    ones = np.ones(4, np.float32)
    seen = _stream(
        server,
        "decoupled_returns_list",
        [("r", {"INPUT0": ones, "INPUT1": ones}, None)],
        1,
    )
    assert seen == {
        "error": [
            "Failed to process the request(s) for model 'decoupled_returns_list_0', "
            "message: Python model 'decoupled_returns_list_0' is using the decoupled "
            "mode and the execute function must return None."
        ]
    }


@pytest.mark.parametrize("wanted", [["OUTPUT1"], ["OUTPUT0"], None])
def test_requested_outputs_filter_returned_responses(
    server: RunningServer, wanted: list[str] | None
) -> None:
    a = np.arange(4, dtype=np.float32)
    b = np.ones(4, np.float32)
    everything = {"OUTPUT0": (a + b).tolist(), "OUTPUT1": (a - b).tolist()}
    expected = {k: v for k, v in everything.items() if wanted is None or k in wanted}
    seen = _stream(server, "add_sub", [("r", {"INPUT0": a, "INPUT1": b}, wanted)], 1)
    assert seen == {"r": [expected]}
    inputs = [httpclient.InferInput(n, [4], "FP32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    outputs = (
        None if wanted is None else [httpclient.InferRequestedOutput(o) for o in wanted]
    )
    with httpclient.InferenceServerClient(server.http_url) as client:
        result = client.infer("add_sub", inputs, outputs=outputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert {n: result.as_numpy(n).tolist() for n in names} == expected


@pytest.mark.parametrize("wanted", [["OUTPUT0"], ["OUTPUT1"], None])
def test_requested_outputs_filter_sent_responses(
    server: RunningServer, wanted: list[str] | None
) -> None:
    a = np.arange(4, dtype=np.float32)
    b = np.full(4, 3, np.float32)
    everything = {"OUTPUT0": (a + b).tolist(), "OUTPUT1": (a - b).tolist()}
    expected = {k: v for k, v in everything.items() if wanted is None or k in wanted}
    seen = _stream(
        server, "add_sub_decoupled", [("r", {"INPUT0": a, "INPUT1": b}, wanted)], 2
    )
    assert seen == {"r": [expected, expected]}
