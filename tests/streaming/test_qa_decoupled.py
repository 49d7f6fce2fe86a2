"""Decoupled and response-sender models over gRPC and HTTP after Triton's
L0_decoupled QA (decoupled_test.py), as differential tests: the same requests go to
tritonx and to Triton 2.51 (tritonx started with ``--grpc-max-response-pool-size=1``,
the QA's second pass) and the same must be seen.

What is not already covered by test_decoupled_grpc.py and test_response_sender.py:
the order in which the responses of two requests on one stream reach the client
when the model interleaves them (the QA's test_response_order: each response is
written as it is sent, whatever request it belongs to), directly and through an
ensemble whose first step is that model (the QA's sequence_repeat), many requests
of 0, 1 or many responses on one stream, and a default-mode (non-decoupled) model
that sends its response and its FINAL flag separately through the response sender,
over HTTP, gRPC and gRPC async (the QA's NonDecoupledTest), also cancelled before
its response.

The QA's model sleeps to order responses; here each response waits for a file the
test creates once the previous response has reached the client.
"""

from __future__ import annotations

import itertools
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_for
from serverutil import RunningServer, run_either
from testmodels import ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

GATED_CONFIG = """
name: "gated"
backend: "python"
max_batch_size: 0
input [
  { name: "IN", data_type: TYPE_INT32, dims: [ -1 ] },
  { name: "TAG", data_type: TYPE_INT32, dims: [ 1 ] }
]
output [
  { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] },
  { name: "IDX", data_type: TYPE_INT32, dims: [ 1 ] }
]
instance_group [ { count: 1, kind: KIND_CPU } ]
model_transaction_policy { decoupled: true }
"""

# Decoupled: for each value of IN, from a thread, waits for "go-<tag>-<index>" (or
# "go-<tag>-all") next to the model, then sends OUT = the value, IDX = the index;
# then sends FINAL alone. Execute returns at once, so one instance serves every
# request of a stream together.
GATED_MODEL = """
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
        self.threads = []

    def _wait(self, tag, index):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for name in (f"go-{tag}-{index}", f"go-{tag}-all"):
                if os.path.exists(os.path.join(self.dir, name)):
                    return

            time.sleep(0.01)

    def _respond(self, sender, tag, values):
        for index, value in enumerate(values):
            self._wait(tag, index)
            sender.send(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUT", np.array([value], np.int32)),
                pb_utils.Tensor("IDX", np.array([index], np.int32)),
            ]))
        sender.send(flags=FINAL)

    def execute(self, requests):
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            tag = int(pb_utils.get_input_tensor_by_name(request, "TAG").as_numpy()[0])
            thread = threading.Thread(target=self._respond, args=(
                request.get_response_sender(), tag, values.tolist()))
            thread.start()
            self.threads.append(thread)
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=30)
"""

# The QA's sequence_repeat: the decoupled model, then an identity step on OUT; the
# ensemble is decoupled, each response of the first step makes one of its own.
PIPE_CONFIG = """
name: "gated_pipe"
platform: "ensemble"
max_batch_size: 0
input [
  { name: "IN", data_type: TYPE_INT32, dims: [ -1 ] },
  { name: "TAG", data_type: TYPE_INT32, dims: [ 1 ] }
]
output [
  { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] },
  { name: "IDX", data_type: TYPE_INT32, dims: [ 1 ] }
]
ensemble_scheduling { step [
  { model_name: "gated", model_version: -1,
    input_map { key: "IN", value: "IN" }, input_map { key: "TAG", value: "TAG" },
    output_map { key: "OUT", value: "repeated" }, output_map { key: "IDX", value: "IDX" } },
  { model_name: "identity_int32", model_version: -1,
    input_map { key: "INPUT0", value: "repeated" },
    output_map { key: "OUTPUT0", value: "OUT" } }
] }
"""

IDENTITY_CONFIG = """
name: "identity_int32"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""

SENDER_CONFIG = """
name: "sender"
backend: "python"
max_batch_size: 0
input [
  { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] },
  { name: "TAG", data_type: TYPE_INT32, dims: [ 1 ] }
]
output [
  { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] },
  { name: "IDX", data_type: TYPE_INT32, dims: [ 1 ] }
]
instance_group [ { count: 2, kind: KIND_CPU } ]
"""

# Default transaction policy, answering through the response sender: leaves
# "ran-<tag>", waits for "respond-<tag>" (or its cancellation: "cancelled-<tag>"),
# sends its one response without FINAL, waits for "finish-<tag>", then sends FINAL
# alone. Execute returns None.
SENDER_MODEL = """
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _wait(self, name, request, tag):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not os.path.exists(self._path(name)):
            if request.is_cancelled():
                open(self._path(f"cancelled-{tag}"), "w").close()
                return
            time.sleep(0.01)

    def execute(self, requests):
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            tag = int(pb_utils.get_input_tensor_by_name(request, "TAG").as_numpy()[0])
            sender = request.get_response_sender()
            open(self._path(f"ran-{tag}"), "w").close()
            self._wait(f"respond-{tag}", request, tag)
            sender.send(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUT", value.astype(np.int32)),
                pb_utils.Tensor("IDX", np.array([0], np.int32)),
            ]))
            open(self._path(f"responded-{tag}"), "w").close()
            self._wait(f"finish-{tag}", request, tag)
            sender.send(flags=FINAL)
        return None
"""

FINAL_PARAM = "triton_final_response"
_tags = itertools.count(1)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decoupled")
    write_model(root, "gated", GATED_CONFIG, GATED_MODEL)
    write_model(root, "sender", SENDER_CONFIG, SENDER_MODEL)
    write_model(root, "identity_int32", IDENTITY_CONFIG, ECHO_MODEL)
    (root / "gated_pipe" / "1").mkdir(parents=True)
    (root / "gated_pipe" / "config.pbtxt").write_text(PIPE_CONFIG)
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    # The QA's second pass: a gRPC response pool of one. Triton 2.51 predates the
    # flag (it refuses it as unrecognized), tritonx accepts and ignores it.
    args = ["--grpc-max-response-pool-size=1"] if request.param == "tritonx" else []
    with run_either(request.param, repo, *args) as running:
        yield running


def _tensor(module: Any, name: str, values: list[int]) -> Any:
    tensor = module.InferInput(name, [len(values)], "INT32")
    tensor.set_data_from_numpy(np.array(values, dtype=np.int32))
    return tensor


class Stream:
    """A gRPC stream that records (request id, OUT, IDX, final) per response,
    OUT and IDX None for an empty FINAL, or the error's text."""

    def __init__(self, url: str) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.got: queue.Queue[Any] = queue.Queue()
        self.client.start_stream(callback=self._on_response)

    def _on_response(self, result: Any, error: Any) -> None:
        if error is not None:
            self.got.put(error.message())
            return
        response = result.get_response()
        final = response.parameters[FINAL_PARAM].bool_param
        out, idx = result.as_numpy("OUT"), result.as_numpy("IDX")
        self.got.put(
            (
                response.id,
                None if out is None else int(out[0]),
                None if idx is None else int(idx[0]),
                final,
            )
        )

    def send(
        self, request_id: str, values: list[int], tag: int, model: str = "gated"
    ) -> None:
        self.client.async_stream_infer(
            model,
            [_tensor(grpcclient, "IN", values), _tensor(grpcclient, "TAG", [tag])],
            request_id=request_id,
            enable_empty_final_response=True,
        )

    def next_data(self, finals: list[Any]) -> Any:
        """The next response with data; empty FINALs on the way go to
        ``finals``."""
        while True:
            item = self.got.get(timeout=60)
            if isinstance(item, tuple) and item[1] is None and item[3]:
                finals.append(item)
                continue
            return item

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


# The QA's five cases: the order (request, response index) in which the model
# sends the four responses of each of two requests; "late": the second request
# is sent once the first response of the first has arrived.
ORDERS = {
    "interleaved": ("AB" * 4, False),
    "second_first": ("BBBBAAAA", False),
    "second_mostly_first": ("ABBBBAAA", True),
    "first_first": ("AAAABBBB", False),
    "first_first_late": ("AAAABBBB", True),
}


@pytest.mark.parametrize("case", list(ORDERS))
@pytest.mark.parametrize("model", ["gated", "gated_pipe"])
def test_responses_reach_the_client_in_the_order_sent(
    server: RunningServer, repo: Path, model: str, case: str
) -> None:
    order, late = ORDERS[case]
    tags = {"A": next(_tags), "B": next(_tags)}
    values = {"A": [100, 101, 102, 103], "B": [200, 201, 202, 203]}
    stream = Stream(server.grpc_url)
    finals: list[Any] = []
    try:
        stream.send("A", values["A"], tags["A"], model)
        if not late:
            stream.send("B", values["B"], tags["B"], model)
        seen = []
        sent = {"A": 0, "B": 0}
        for step, request in enumerate(order):
            if late and step == 1:
                stream.send("B", values["B"], tags["B"], model)
            (repo / "gated" / f"go-{tags[request]}-{sent[request]}").touch()
            sent[request] += 1
            seen.append(stream.next_data(finals))
        # Each request ends with one FINAL. The model sends it alone after its
        # last response; through the ensemble it may come with that response
        # instead (Triton 2.51 and tritonx alike: the ensemble marks its last
        # response final when the step's FINAL is already in), so the flag is
        # compared wherever it comes.
        ended = [item[0] for item in seen if item[3]] + [item[0] for item in finals]
        while len(ended) < 2:
            item = stream.got.get(timeout=60)
            assert item[1:] == (None, None, True), item
            ended.append(item[0])
    finally:
        for tag in tags.values():
            (repo / "gated" / f"go-{tag}-all").touch()
        stream.close()
    expected = []
    count = {"A": 0, "B": 0}
    for request in order:
        index = count[request]
        count[request] += 1
        expected.append((request, values[request][index], index))
    assert [item[:3] for item in seen] == expected
    # A final flag only on a request's last response.
    assert all(item[2] == 3 for item in seen if item[3])
    assert sorted(ended) == ["A", "B"]
    if model == "gated":
        assert not any(item[3] for item in seen)
    assert stream.got.empty()


@pytest.mark.parametrize("count", [0, 1, 5], ids=["none", "one", "many"])
def test_many_requests_on_one_stream(
    server: RunningServer, repo: Path, count: int
) -> None:
    """test_one_to_none / _one / _many with five requests on one stream (the QA
    runs them with a response pool of one too): each request's responses, in
    order, then its empty FINAL."""
    stream = Stream(server.grpc_url)
    requests = {f"r{i}": next(_tags) for i in range(5)}
    try:
        for request_id, tag in requests.items():
            (repo / "gated" / f"go-{tag}-all").touch()
            stream.send(request_id, list(range(100, 100 + count)), tag)
        got = [stream.got.get(timeout=60) for _ in range(5 * (count + 1))]
    finally:
        stream.close()
    for request_id in requests:
        mine = [item[1:] for item in got if item[0] == request_id]
        assert mine == [(100 + i, i, False) for i in range(count)] + [
            (None, None, True)
        ]
    assert stream.got.empty()


def _sender_inputs(module: Any, tag: int) -> list[Any]:
    return [_tensor(module, "IN", [1]), _tensor(module, "TAG", [tag])]


def _open_sender(repo: Path, tag: int, finish: bool = True) -> None:
    (repo / "sender" / f"respond-{tag}").touch()
    if finish:
        (repo / "sender" / f"finish-{tag}").touch()


def _result(result: Any) -> tuple[int, int]:
    return int(result.as_numpy("OUT")[0]), int(result.as_numpy("IDX")[0])


@pytest.mark.parametrize("final", ["with_response", "later"])
@pytest.mark.parametrize("protocol", ["http", "grpc", "grpc_async"])
def test_default_mode_sender_answers_once(
    server: RunningServer, repo: Path, protocol: str, final: str
) -> None:
    """NonDecoupledTest: a default-mode model sends its response, then FINAL
    alone (at once, or once the test has seen the response sent): the client
    gets that one response, whichever protocol it uses."""
    tag = next(_tags)
    _open_sender(repo, tag, finish=final == "with_response")
    answers: queue.Queue[Any] = queue.Queue()

    def call() -> None:
        if protocol == "http":
            with httpclient.InferenceServerClient(server.http_url) as client:
                answers.put(client.infer("sender", _sender_inputs(httpclient, tag)))
        elif protocol == "grpc":
            with grpcclient.InferenceServerClient(server.grpc_url) as client:
                answers.put(client.infer("sender", _sender_inputs(grpcclient, tag)))

    import threading

    if protocol == "grpc_async":
        client = grpcclient.InferenceServerClient(server.grpc_url)
        client.async_infer(
            "sender",
            _sender_inputs(grpcclient, tag),
            lambda result, error: answers.put(error or result),
        )
        thread = None
    else:
        thread = threading.Thread(target=call)
        thread.start()
    try:
        if final == "later":
            wait_for(repo / "sender" / f"responded-{tag}")
            (repo / "sender" / f"finish-{tag}").touch()
        result = answers.get(timeout=60)
    finally:
        _open_sender(repo, tag)
        if thread is not None:
            thread.join(timeout=60)
        else:
            client.close()
    assert not isinstance(result, Exception), result
    assert _result(result) == (1, 0)
    assert answers.empty()


def test_default_mode_sender_cancelled(server: RunningServer, repo: Path) -> None:
    """NonDecoupledTest test_grpc_async_cancel: an async call cancelled while the
    model holds it, before its response, is CANCELLED for the client; the model
    sees the cancellation, stays ready and answers the next call.

    (Cancelled between the response and the FINAL flag, Triton 2.51 answers
    CANCELLED too: its frontends hold a default-mode response until FINAL.
    tritonx's python backend answers the request with the response itself, so
    the client has its answer before the cancel; not compared here.)"""
    tag = next(_tags)
    answers: queue.Queue[Any] = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        future = client.async_infer(
            "sender",
            _sender_inputs(grpcclient, tag),
            lambda result, error: answers.put(error or result),
        )
        wait_for(repo / "sender" / f"ran-{tag}")
        future.cancel()
        error = answers.get(timeout=60)
        assert isinstance(error, InferenceServerException), error
        assert (str(error.status()), error.message()) == (
            "StatusCode.CANCELLED",
            "Locally cancelled by application!",
        )
        wait_for(repo / "sender" / f"cancelled-{tag}")
        _open_sender(repo, tag)
        assert client.is_model_ready("sender")
        after = next(_tags)
        _open_sender(repo, after)
        result = client.infer("sender", _sender_inputs(grpcclient, after))
        assert _result(result) == (1, 0)
    assert answers.empty()
