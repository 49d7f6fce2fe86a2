"""Concurrent ``async def execute`` of a decoupled model, after Triton's
L0_backend_python/async_execute QA, as a differential test: one instance runs
several executes at once while they await, directly and behind a BLS caller; a
later request can finish before an earlier one; an execute that raises after
sending FINAL is logged. The same requests go to tritonx (in-process and in stub
processes) and to Triton 2.51, and every case asserts the same concrete answers
on each.

The QA times sleeps; here the model waits on observable state instead: WANT = n
waits until n executes of its GROUP have started (it can only get there if they
run at once), WANT = -1 waits until the test creates a gate file."""

from __future__ import annotations

import queue
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import wait_until
from serverutil import PYTHON_MODEL_SERVERS, RunningServer, run_python_model_server
from testmodels import write_model

CONFIG = """
backend: "python"
max_batch_size: 8
input [ {{ name: "GROUP", data_type: TYPE_INT32, dims: [ 1 ] }},
        {{ name: "WANT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "SEEN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
model_transaction_policy {{ decoupled: true }}
{extra}
"""

# One response per request, with FINAL: SEEN (one row per batch row) is the number
# of executes of the request's GROUP started by the time it answered. WANT = n:
# wait until n have started (at most 60 s); -1: wait until the file gate_<GROUP>
# exists in the model's directory; -2: send FINAL alone, then raise.
WAITER = """
import asyncio
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.root = args["model_repository"]  # the model's directory
        self.started = {}

    async def execute(self, requests):
        plans = []
        for request in requests:
            group = int(pb_utils.get_input_tensor_by_name(request, "GROUP").as_numpy()[0][0])
            want = int(pb_utils.get_input_tensor_by_name(request, "WANT").as_numpy()[0][0])
            rows = pb_utils.get_input_tensor_by_name(request, "WANT").as_numpy().shape[0]
            if want == -2:
                for r in requests:
                    r.get_response_sender().send(
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
                    )
                raise ValueError("WANT cannot be -2")
            self.started[group] = self.started.get(group, 0) + 1
            plans.append((request.get_response_sender(), group, want, rows))
        for sender, group, want, rows in plans:
            gate = os.path.join(self.root, f"gate_{group}")
            for _ in range(6000):
                if want == -1 and os.path.exists(gate):
                    break
                if want >= 0 and self.started[group] >= want:
                    break
                await asyncio.sleep(0.01)
            seen = np.full((rows, 1), self.started[group], np.int32)
            sender.send(
                pb_utils.InferenceResponse([pb_utils.Tensor("SEEN", seen)]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )
        return None
"""

# Forwards each request to "waiter" with async_exec and its responses back.
CALLER = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        for request in requests:
            call = pb_utils.InferenceRequest(
                model_name="waiter",
                inputs=[pb_utils.get_input_tensor_by_name(request, name)
                        for name in ("GROUP", "WANT")],
                requested_output_names=["SEEN"],
            )
            responses = await call.async_exec(decoupled=True)
            sender = request.get_response_sender()
            for response in responses:
                seen = pb_utils.get_output_tensor_by_name(response, "SEEN")
                if response.has_error():
                    sender.send(pb_utils.InferenceResponse(error=response.error()))
                elif seen is not None:
                    sender.send(pb_utils.InferenceResponse([seen]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


class Served:
    def __init__(self, server: RunningServer, repo: Path) -> None:
        self.server = server
        self.repo = repo


@pytest.fixture(scope="module", params=list(PYTHON_MODEL_SERVERS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    repo = tmp_path_factory.mktemp(f"async_{request.param}")
    write_model(repo, "waiter", CONFIG.format(extra=""), WAITER)
    write_model(repo, "caller", CONFIG.format(extra=""), CALLER)
    with run_python_model_server(request.param, repo) as server:
        yield Served(server, repo)
    shutil.rmtree(repo, ignore_errors=True)


def _inputs(group: int, want: int, rows: int = 1) -> list[grpcclient.InferInput]:
    tensors = []
    for name, value in (("GROUP", group), ("WANT", want)):
        tensor = grpcclient.InferInput(name, [rows, 1], "INT32")
        tensor.set_data_from_numpy(np.full((rows, 1), value, np.int32))
        tensors.append(tensor)
    return tensors


class Stream:
    """A gRPC stream whose responses (SEEN as a list, None for an empty FINAL,
    or the error's text) arrive in ``answers``."""

    def __init__(self, server: RunningServer) -> None:
        self.answers: queue.Queue[Any] = queue.Queue()
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.client.start_stream(callback=self._got)

    def _got(self, result: Any, error: Any) -> None:
        if error is not None:
            self.answers.put(("error", error.message()))
            return
        seen = result.as_numpy("SEEN")
        self.answers.put(None if seen is None else seen.reshape(-1).tolist())

    def send(self, model: str, group: int, want: int, rows: int = 1) -> None:
        self.client.async_stream_infer(
            model, _inputs(group, want, rows), enable_empty_final_response=True
        )

    def take(self, count: int) -> list[Any]:
        return [self.answers.get(timeout=90) for _ in range(count)]

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


def _executions(server: RunningServer, model: str) -> int:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics(model, as_json=True)
    return int(stats["model_stats"][0].get("execution_count", 0))


def test_executes_of_one_instance_run_at_once(served: Served) -> None:
    """Four requests, four executes of the one instance, all waiting together
    (run one after the other, the first would answer 1 after a minute)."""
    stream = Stream(served.server)
    for _ in range(4):
        stream.send("waiter", group=1, want=4)
    answers = stream.take(4)
    stream.close()
    assert answers == [[4]] * 4


def test_a_batch_of_four_in_one_execute(served: Served) -> None:
    stream = Stream(served.server)
    stream.send("waiter", group=2, want=1, rows=4)
    answers = stream.take(1)
    stream.close()
    assert answers == [[1, 1, 1, 1]]


def test_a_later_request_finishes_first(served: Served) -> None:
    """The first request (two rows) waits for a gate the test opens only once the
    second (one row), sent after it to the same instance, has been answered."""
    stream = Stream(served.server)
    stream.send("waiter", group=3, want=-1, rows=2)
    stream.send("waiter", group=4, want=1, rows=1)
    assert stream.take(1) == [[1]]
    (served.repo / "waiter" / "gate_3").write_text("open")
    assert stream.take(1) == [[1, 1]]
    stream.close()


def test_executes_behind_bls_calls_run_at_once(served: Served) -> None:
    """Four requests to an async caller, each awaiting async_exec to the waiter:
    both models' executes overlap."""
    before = _executions(served.server, "caller")
    stream = Stream(served.server)
    for _ in range(4):
        stream.send("caller", group=5, want=4)
    answers = stream.take(8)
    stream.close()
    assert sorted(a for a in answers if a is not None) == [[4]] * 4
    assert answers.count(None) == 4  # the caller sends FINAL apart
    wait_until(
        lambda: _executions(served.server, "caller") == before + 4,
        "the caller's executions counted",
    )


def test_an_exception_after_final_is_logged(served: Served) -> None:
    """The execute sends FINAL, then raises: the client has the empty FINAL only
    and the error is in the log."""
    text = "WANT cannot be -2"
    assert text not in served.server.log_text()
    stream = Stream(served.server)
    stream.send("waiter", group=6, want=-2)
    assert stream.take(1) == [None]
    wait_until(lambda: text in served.server.log_text(), "the error logged")
    # Nothing else reaches the client: a request answered afterwards on the same
    # stream is the next thing that arrives.
    stream.send("waiter", group=7, want=1)
    assert stream.take(1) == [[1]]
    stream.close()
    assert "ValueError" in served.server.log_text()
