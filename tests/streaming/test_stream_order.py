"""The order of answers on one ModelStreamInfer stream, as in Triton 2.51: requests
to non-decoupled models (and requests naming no model) are answered in the order
they were sent, a quick one waiting for a slow one before it; a decoupled model's
responses go out as they come. Real ``tritonx`` (and, with a reference command,
Triton 2.51) and ``tritonclient.grpc``.

Timing decides nothing: the slow request is the held model's (tests/grpcutil.py),
released by the test once the decoupled request has been answered and the quick
request has run (its statistics say so). One stream writes its answers one after
another, so they arrive in the order they were written."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from grpcutil import Held, fp32_input, success_count, wait_until, write_repository
from serverutil import differential, run_either
from testmodels import REPEAT_CONFIG, REPEAT_MODEL, write_model


def _label(result: Any, error: Any) -> str:
    if error is not None:
        return "error: " + str(error.message())
    response = result.get_response()
    return response.id or f"decoupled {result.as_numpy('OUT').tolist()}"


def test_non_decoupled_answers_keep_request_order(tmp_path: Path) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        repo = write_repository(tmp_path / kind, ["slowmodel", "identity"])
        write_model(repo, "repeat", REPEAT_CONFIG, REPEAT_MODEL)
        held = Held(repo)
        tag = held.new_tag()
        answers: queue.Queue = queue.Queue()
        with run_either(kind, repo) as server:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                client.start_stream(
                    callback=lambda result, error: answers.put(_label(result, error))
                )
                client.async_stream_infer(
                    "slowmodel", [held.input(tag)], request_id="slow"
                )
                held.started(tag)
                count = grpcclient.InferInput("COUNT", [1], "INT32")
                count.set_data_from_numpy(np.array([1], np.int32))
                mode = grpcclient.InferInput("MODE", [1], "INT32")
                mode.set_data_from_numpy(np.array([0], np.int32))
                client.async_stream_infer("repeat", [count, mode])
                client.async_stream_infer(
                    "missing", [fp32_input()], request_id="unknown model"
                )
                client.async_stream_infer(
                    "identity", [fp32_input()], request_id="quick"
                )
                # The decoupled response does not wait for the held request.
                first = answers.get(timeout=60)
                wait_until(
                    lambda: success_count(client, "identity") == 1, "quick to run"
                )
                held.release(tag)
                rest = [answers.get(timeout=60) for _ in range(3)]
                client.stop_stream()
            finally:
                held.release("all")
                client.close()
        return {"first": first, "rest": rest}

    seen = differential(scenario)
    assert seen["first"] == "decoupled [0]"
    assert seen["rest"][0] == "slow"
    assert seen["rest"][1].startswith("error: Request for unknown model: 'missing'")
    assert seen["rest"][2] == "quick"
