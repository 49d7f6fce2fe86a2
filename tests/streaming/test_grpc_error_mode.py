"""Triton's `triton_grpc_error: true` stream header: the first error a response
carries ends the stream with that error's gRPC status; errors found before a
request runs still travel in the stream, and without the header nothing changes.
Compared with Triton 2.51 when a reference command is given."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from serverutil import differential, run_either
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "CODE", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
{policy}
"""

# What both models share. error(code): a pb_utils.TritonError with that code, given
# as the enum member (Triton's constructor refuses a plain int).
HELPERS = """
import numpy as np
import triton_python_backend_utils as pb_utils


def out(value):
    return pb_utils.Tensor("OUT", np.array([value], np.int32))


def error(code):
    # (looked up here: Triton's module has no TritonError while it is imported)
    member = {1: "INTERNAL", 3: "INVALID_ARG"}[code]
    return pb_utils.TritonError("failed with code %d" % code,
                                getattr(pb_utils.TritonError, member))
"""

# CODE 0: OUT = 0. CODE > 0: an error response with that code.
MODEL = (
    HELPERS
    + """


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            code = int(pb_utils.get_input_tensor_by_name(request, "CODE").as_numpy()[0])
            if code:
                responses.append(pb_utils.InferenceResponse(error=error(code)))
            else:
                responses.append(pb_utils.InferenceResponse([out(0)]))
        return responses
"""
)

# Sends OUT 10 and 11, then (CODE > 0) an error response, then OUT 12 and FINAL.
DECOUPLED_MODEL = (
    HELPERS
    + """

def response(value):
    return pb_utils.InferenceResponse([out(value)])


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            code = int(pb_utils.get_input_tensor_by_name(request, "CODE").as_numpy()[0])
            sender = request.get_response_sender()
            sender.send(response(10))
            sender.send(response(11))
            if code:
                sender.send(pb_utils.InferenceResponse(error=error(code)))
            sender.send(response(12))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""
)

INTERNAL, INVALID_ARG = 1, 3


def _repository(root: Path) -> Path:
    for name, model, policy in (
        ("plain", MODEL, ""),
        ("decoupled", DECOUPLED_MODEL, "model_transaction_policy { decoupled: true }"),
    ):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(
            CONFIG.format(name=name, policy=policy)
        )
        (root / name / "1" / "model.py").write_text(model)
    return root


class _Stream:
    """One stream; what its callback received, as comparable tuples."""

    def __init__(self, url: str, error_mode: bool) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        headers = {"triton_grpc_error": "true"} if error_mode else None
        self.client.start_stream(callback=self._on_response, headers=headers)

    def _on_response(self, result: Any, error: Any) -> None:
        if error is not None:
            self.events.put(("error", error.status(), error.message()))
        else:
            self.events.put(("ok", int(result.as_numpy("OUT")[0])))

    def send(self, model: str, code: int) -> str:
        tensor = grpcclient.InferInput("CODE", [1], "INT32")
        tensor.set_data_from_numpy(np.array([code], np.int32))
        try:
            self.client.async_stream_infer(model, [tensor])
        except InferenceServerException:
            return "refused by the client: the stream has ended"
        return "sent"

    def next(self) -> tuple[Any, ...]:
        return self.events.get(timeout=60)

    def close(self) -> list[tuple[Any, ...]]:
        """Ends the stream (its reader thread is joined) and returns what else came."""
        self.client.stop_stream()
        self.client.close()
        rest = []
        while not self.events.empty():
            rest.append(self.events.get())
        return rest


def test_a_response_error_ends_the_stream_with_its_status(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")

    def scenario(kind: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with run_either(kind, repo) as server:
            for code in (INTERNAL, INVALID_ARG):
                stream = _Stream(server.grpc_url, error_mode=True)
                seen[f"{code} first"] = (stream.send("plain", 0), stream.next())
                seen[f"{code} failing"] = (stream.send("plain", code), stream.next())
                seen[f"{code} after"] = stream.send("plain", 0)
                seen[f"{code} rest"] = stream.close()
            stream = _Stream(server.grpc_url, error_mode=True)
            # found before the request runs: in the stream, which goes on
            seen["unknown model"] = (stream.send("missing", 0), stream.next())
            seen["then"] = (stream.send("plain", 0), stream.next())
            stream.close()
            stream = _Stream(server.grpc_url, error_mode=False)
            seen["no header"] = [stream.send("plain", INTERNAL), stream.next()]
            seen["no header"] += [stream.send("plain", 0), stream.next()]
            stream.close()
        return seen

    seen = differential(scenario)
    assert seen["1 failing"] == (
        "sent",
        ("error", "StatusCode.INTERNAL", "failed with code 1"),
    )
    assert seen["3 failing"][1][1] == "StatusCode.INVALID_ARGUMENT"
    assert seen["1 after"] == "refused by the client: the stream has ended"
    assert seen["1 rest"] == []
    assert seen["unknown model"][1][1] is None
    assert seen["then"] == ("sent", ("ok", 0))
    assert seen["no header"][1][1] is None and seen["no header"][3] == ("ok", 0)


def test_a_decoupled_error_ends_the_stream_after_earlier_responses(
    tmp_path: Path,
) -> None:
    """Without the header, checked against Triton 2.51; with it, tritonx alone:
    there Triton 2.51 is unreliable once a decoupled model sends on after the
    error (it crashed, or never sent the error, in some of this project's runs)."""
    repo = _repository(tmp_path / "repo")

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repo) as server:
            stream = _Stream(server.grpc_url, error_mode=False)
            stream.send("decoupled", INTERNAL)
            return {"no header": [stream.next() for _ in range(4)] + stream.close()}

    assert differential(scenario)["no header"] == [
        ("ok", 10),
        ("ok", 11),
        ("error", None, "failed with code 1"),
        ("ok", 12),
    ]
    with run_either("tritonx", repo) as server:
        stream = _Stream(server.grpc_url, error_mode=True)
        stream.send("decoupled", INTERNAL)
        events = [stream.next() for _ in range(3)]
        assert events + stream.close() == [
            ("ok", 10),
            ("ok", 11),
            ("error", "StatusCode.INTERNAL", "failed with code 1"),
        ]
        # the server goes on: a new stream is served
        stream = _Stream(server.grpc_url, error_mode=True)
        stream.send("plain", 0)
        assert stream.next() == ("ok", 0)
        stream.close()
