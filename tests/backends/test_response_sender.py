"""Response senders against Triton's rules, over a gRPC stream, in every mode.

One model, four variants (default or decoupled transaction policy, plain or
``async def`` execute), answers a plan: send N responses (then maybe FINAL) during
execute, return a response or not, send M more (then maybe FINAL) from a thread or
an asyncio task 0.2 s after execute returned. What reaches the client is what
Triton 2.51 sends (checked against the reference when one is given), except where
Triton never answers: there tritonx answers or fails the request.
"""

from __future__ import annotations

import queue
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from serverutil import (
    REFERENCE_CMD_ENV,
    RunningServer,
    reference_command,
    run_reference,
    run_server,
)

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "PLAN", data_type: TYPE_INT32, dims: [ 5 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
{policy}
"""

# PLAN: [responses before return, FINAL before return, return a response,
#        responses after return, FINAL after return]. Ids: 0 returned, 1000+ sent
# during execute, 2000+ after it returned.
MODEL = """
import asyncio
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def response(i):
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor("OUT", np.array([i], np.int32))])


def send(sender, count, final, first):
    for i in range(count):
        sender.send(response(first + i))
    if final:
        sender.send(flags=FINAL)


def send_quietly(sender, count, final, first):
    try:  # Triton's rules refuse some of these sends: the model just stops
        send(sender, count, final, first)
    except pb_utils.TritonModelException:
        pass


class TritonPythonModel:
    def plans(self, requests):
        out = []
        for request in requests:
            plan = pb_utils.get_input_tensor_by_name(request, "PLAN").as_numpy()
            uses_sender = plan[0] or plan[1] or plan[3] or plan[4]
            sender = request.get_response_sender() if uses_sender else None
            out.append((plan.tolist(), sender))
        return out

    def answer(self, requests, later):
        returned = []
        for (pre, pre_final, ret, post, post_final), sender in self.plans(requests):
            if pre or pre_final:
                send(sender, pre, pre_final, 1000)
            if post or post_final:
                later(sender, post, post_final)
            returned.append(response(0) if ret else None)
        return None if returned == [None] * len(requests) else returned
"""

SYNC_EXECUTE = """
    def execute(self, requests):
        def later(sender, count, final):
            def run():
                time.sleep(0.2)
                send_quietly(sender, count, final, 2000)
            threading.Thread(target=run, daemon=True).start()
        return self.answer(requests, later)
"""

ASYNC_EXECUTE = """
    async def execute(self, requests):
        tasks = self.tasks = getattr(self, "tasks", set())
        def later(sender, count, final):
            async def run():
                await asyncio.sleep(0.2)
                send_quietly(sender, count, final, 2000)
            task = asyncio.create_task(run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return self.answer(requests, later)
"""

VARIANTS = {
    "plain": ("", SYNC_EXECUTE),
    "plain_async": ("", ASYNC_EXECUTE),
    "decoupled": ("model_transaction_policy { decoupled: true }", SYNC_EXECUTE),
    "decoupled_async": ("model_transaction_policy { decoupled: true }", ASYNC_EXECUTE),
}

RETURN_NOT_NONE = (
    "is using the decoupled mode and the execute function must return None."
)
FINAL_FIRST = (
    "Unable to send response. Non-decoupled model cannot send complete final before "
    "sending a response."
)

HANGS_IN_TRITON = "Triton 2.51 never answers this request"
# plan -> {variant: what the client receives (ids, or an error text it contains)}.
# A (expected, reason) pair: tritonx's answer where Triton never answers.
CASES: dict[str, tuple[list[int], dict[str, Any]]] = {
    "on_return": (
        [0, 0, 1, 0, 0],
        {"plain": [0], "plain_async": [0], "decoupled": RETURN_NOT_NONE},
    ),
    "pre_return": ([1, 1, 0, 0, 0], {v: [1000] for v in VARIANTS}),
    "post_return": ([0, 0, 0, 1, 1], {v: [2000] for v in VARIANTS}),
    "pre_and_on_return": ([1, 1, 1, 0, 0], {v: [1000] for v in VARIANTS}),
    "two_pre_return": (
        [2, 1, 0, 0, 0],
        {
            "plain": [1000],
            "plain_async": [1000],
            "decoupled": [1000, 1001],
            "decoupled_async": [1000, 1001],
        },
    ),
    "two_post_return": (
        [0, 0, 0, 2, 1],
        {
            "plain": ([2000], HANGS_IN_TRITON),
            "decoupled": [2000, 2001],
            "decoupled_async": [2000, 2001],
        },
    ),
    "pre_and_post_return": (
        [1, 0, 0, 3, 1],
        {
            "plain": ([1000], HANGS_IN_TRITON),
            "plain_async": ([1000], HANGS_IN_TRITON),
            "decoupled": [1000, 2000, 2001, 2002],
            "decoupled_async": [1000, 2000, 2001, 2002],
        },
    ),
    "final_first_pre_return": (
        [0, 1, 0, 0, 0],
        {
            "plain": FINAL_FIRST,
            "plain_async": FINAL_FIRST,
            "decoupled": [],
            "decoupled_async": [],
        },
    ),
    "final_first_post_return": (
        [0, 0, 0, 0, 1],
        {
            "plain": (FINAL_FIRST, HANGS_IN_TRITON),
            "decoupled": [],
            "decoupled_async": [],
        },
    ),
    "on_and_post_return": (
        [0, 0, 1, 1, 1],
        # An async decoupled execute runs in the background: what it returns is
        # only logged, its task's responses go out.
        {
            "plain": [0],
            "plain_async": [0],
            "decoupled": RETURN_NOT_NONE,
            "decoupled_async": [2000],
        },
    ),
}


@pytest.fixture(scope="module", params=["tritonx", "tritonx-process", "triton"])
def sender_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RunningServer]]:
    repo = tmp_path_factory.mktemp("senders")
    for variant, (policy, execute) in VARIANTS.items():
        name = f"sender_{variant}"
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(
            CONFIG.format(name=name, policy=policy)
        )
        (repo / name / "1" / "model.py").write_text(
            textwrap.dedent(MODEL) + textwrap.indent(textwrap.dedent(execute), "    ")
        )
    if request.param == "triton":
        if reference_command() is None:
            pytest.skip(f"{REFERENCE_CMD_ENV} not set: no reference Triton")
        with run_reference([repo]) as server:
            yield request.param, server
        return
    mode = "process" if request.param == "tritonx-process" else "in-process"
    with run_server([repo], f"--backend-config=python,execution-mode={mode}") as server:
        yield request.param, server


def _stream_answers(url: str, model: str, plans: list[list[int]]) -> list[Any]:
    """Sends every plan on one stream and returns what came back once the server
    ended the stream: ids, or error messages."""
    import tritonclient.grpc as grpcclient

    got: queue.Queue[Any] = queue.Queue()

    def on_response(result: Any, error: Any) -> None:
        got.put(error.message() if error is not None else result.as_numpy("OUT"))

    with grpcclient.InferenceServerClient(url) as client:
        client.start_stream(callback=on_response)
        for plan in plans:
            tensor = grpcclient.InferInput("PLAN", [5], "INT32")
            tensor.set_data_from_numpy(np.array(plan, np.int32))
            client.async_stream_infer(model, [tensor])
        client.stop_stream()  # waits until every request was answered in full
    answers = []
    while not got.empty():
        item = got.get()
        answers.append(item if isinstance(item, str) else int(item[0]))
    return answers


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", list(CASES))
def test_what_the_client_receives(
    sender_server: tuple[str, RunningServer], case: str, variant: str
) -> None:
    kind, server = sender_server
    plan, expectations = CASES[case]
    if variant not in expectations:
        pytest.skip("Triton 2.51 never answers this request, nor does its model")
    expected = expectations[variant]
    if isinstance(expected, tuple):
        if kind == "triton":
            pytest.skip(expected[1])
        expected = expected[0]
    answers = _stream_answers(server.grpc_url, f"sender_{variant}", [plan])
    if isinstance(expected, str):
        assert len(answers) == 1 and expected in answers[0], answers
    else:
        assert answers == expected


def test_a_batch_mixes_returned_and_sent_responses(
    sender_server: tuple[str, RunningServer],
) -> None:
    """One stream, three requests that may share an execute: each gets its own
    answer whichever way the model gave it."""
    _, server = sender_server
    plans = [[0, 0, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]]
    answers = _stream_answers(server.grpc_url, "sender_plain", plans)
    assert sorted(answers) == [0, 1000, 2000]


def test_tasks_of_a_decoupled_async_execute_run_on_after_it_returned(
    sender_server: tuple[str, RunningServer],
) -> None:
    """A decoupled coroutine execute runs in the background on the instance's
    loop, which keeps running: the tasks of four executes, each answering 0.2 s
    after its execute returned, all answer in full."""
    _, server = sender_server
    plans = [[0, 0, 0, 2, 1]] * 4
    answers = _stream_answers(server.grpc_url, "sender_decoupled_async", plans)
    assert sorted(answers) == [2000] * 4 + [2001] * 4
