"""A decoupled model in a stub process: its responses come back through the stub's
response stream (csrc/core/stub_stream.h: a socket pair read by a server C++ thread,
bytes in a circular memfd) and answer exactly as in-process.

The stream region is as big as shm-default-byte-size (64 KiB here), so a long
stream of mixed sizes wraps around it many times, and outputs bigger than the whole
region take the fallback (a one-off region). Sender threads answer several requests
at once, after execute returned; error responses, parameters, BYTES outputs and bare
FINALs ride along.
"""

from __future__ import annotations

import queue
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import wait_until
from serverutil import reference_command, run_reference, run_server

CONFIG = """
name: "%s"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "COUNT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }
]
"""
PROCESS = 'parameters { key: "EXECUTION_MODE" value: { string_value: "process" } }\n'

# Response i of a request carries OUT = [i, i, ...] with a size cycling through 16 B,
# 12 KiB, 40 KiB and 160 KiB (past the 64 KiB stream: the fallback), TEXT = "r<i>"
# and parameter i; every seventh is an error response instead. Each request is
# answered by its own thread, so several requests stream at once; FINAL comes alone.
MODEL = """
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

SIZES = [4, 3 * 1024, 10 * 1024, 40 * 1024]


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy()[0])
            thread = threading.Thread(target=self.answer, args=(request, count))
            thread.start()
            self.threads.append(thread)
        return None

    def answer(self, request, count):
        sender = request.get_response_sender()
        for i in range(count):
            if i % 7 == 6:
                error = pb_utils.TritonError("response %d failed" % i)
                sender.send(pb_utils.InferenceResponse(error=error))
                continue
            out = np.full(SIZES[i % len(SIZES)], i, dtype=np.float32)
            text = np.array([("r%d" % i).encode()], dtype=object)
            sender.send(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", out), pb_utils.Tensor("TEXT", text)],
                parameters={"i": i}))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def finalize(self):
        for thread in self.threads:
            thread.join()
"""


def _stream(url: str, model: str, counts: list[int]) -> dict[str, list[Any]]:
    """Per request id, what came back in order: (parameter i, OUT, TEXT) tuples,
    error texts, and "FINAL" for the empty final response."""
    events: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: events.put((result, error)))
    try:
        for n, count in enumerate(counts):
            tensor = grpcclient.InferInput("COUNT", [1], "INT32")
            tensor.set_data_from_numpy(np.array([count], dtype=np.int32))
            client.async_stream_infer(
                model, [tensor], request_id=f"q{n}", enable_empty_final_response=True
            )
        seen: dict[str, list[Any]] = {f"q{n}": [] for n in range(len(counts))}
        open_requests = len(counts)
        errors = []
        while open_requests:
            result, error = events.get(timeout=60)
            if error is not None:
                errors.append(error.message())  # no request id on a stream error
                continue
            response = result.get_response()
            if response.parameters["triton_final_response"].bool_param:
                seen[response.id].append("FINAL")
                open_requests -= 1
                continue
            out = result.as_numpy("OUT")
            text = result.as_numpy("TEXT")
            param = response.parameters.get("i")
            i = None if param is None else param.int64_param
            seen[response.id].append((i, out.tolist(), text.tolist()))
        seen["errors"] = sorted(errors)
        return seen
    finally:
        client.stop_stream()
        client.close()


def test_stream_wraps_falls_back_and_matches_in_process(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name, extra in (("inproc", ""), ("stub", PROCESS)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(CONFIG % name + extra)
        (repo / name / "1" / "model.py").write_text(MODEL)
    counts = [60, 0, 25, 41]
    with run_server(
        repo, "--backend-config=python,shm-default-byte-size=65536"
    ) as server:
        expected = _stream(server.grpc_url, "inproc", counts)
        got = _stream(server.grpc_url, "stub", counts)
        assert got == expected
        # what the in-process answer holds: every size, the fallback's included
        sizes = [4, 3 * 1024, 10 * 1024, 40 * 1024]
        answers = [a for a in expected["q0"] if a != "FINAL"]
        assert [a[0] for a in answers] == [i for i in range(60) if i % 7 != 6]
        for i, out, text in answers:
            assert out == [float(i)] * sizes[i % 4]
            assert text == [f"r{i}".encode()]
        assert expected["q1"] == ["FINAL"]
        assert len(expected["errors"]) == 8 + 0 + 3 + 5
        assert any("response 6 failed" in e for e in expected["errors"])
        # a second round on the same stub: the stream's space was given back
        assert _stream(server.grpc_url, "stub", counts) == expected


@pytest.mark.skipif(reference_command() is None, reason="TRITONX_REFERENCE_CMD unset")
def test_stream_answers_as_triton(tmp_path: Path) -> None:
    """The same streams from the real Triton 2.51, which always runs the model in a
    stub (its responses cross through its own shared memory)."""
    repo = tmp_path / "repo"
    (repo / "stub" / "1").mkdir(parents=True)
    (repo / "stub" / "config.pbtxt").write_text(CONFIG % "stub" + PROCESS)
    # Triton 2.51's InferenceResponse takes no parameters yet.
    model = MODEL.replace(',\n                parameters={"i": i}))', "))")
    assert model != MODEL
    (repo / "stub" / "1" / "model.py").write_text(model)
    counts = [30, 0, 13]
    # Default region sizes: Triton 2.51 refuses a shm-default-byte-size under 4 MiB.
    with run_reference([repo]) as server:
        expected = _stream(server.grpc_url, "stub", counts)
    with run_server(repo) as server:
        assert _stream(server.grpc_url, "stub", counts) == expected


# Sends |COUNT| responses, closes the request when COUNT < 0, then raises.
FAILING_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy()[0])
            sender = request.get_response_sender()
            for i in range(abs(count)):
                out = np.full(2, i, dtype=np.float32)
                text = np.array([b"r%d" % i], dtype=object)
                sender.send(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", out), pb_utils.Tensor("TEXT", text)]))
            if count < 0:
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        raise RuntimeError("execute broke")
"""


def _put_pair(events: queue.Queue[tuple[Any, Any]], result: Any, error: Any) -> None:
    events.put((result, error))


def _failing_streams(server: Any, model: str, counts: list[int]) -> dict[str, Any]:
    """One stream per request (an error carries no request id): what came back in
    order, then the model's request statistics and BACKEND failures."""
    import tritonclient.http as httpclient
    from test_metrics import labels, samples, scrape  # tests/test_metrics.py

    seen: dict[str, Any] = {}
    for count in counts:
        events: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        client.start_stream(callback=partial(_put_pair, events))
        try:
            tensor = grpcclient.InferInput("COUNT", [1], "INT32")
            tensor.set_data_from_numpy(np.array([count], dtype=np.int32))
            client.async_stream_infer(model, [tensor], enable_empty_final_response=True)
            answers: list[Any] = []
            while True:
                result, error = events.get(timeout=60)
                if error is not None:  # the execute's error ends the request
                    answers.append(error.message().replace(model, "MODEL"))
                    break
                if result.get_response().parameters["triton_final_response"].bool_param:
                    answers.append("FINAL")
                    break
                answers.append(result.as_numpy("OUT").tolist())
            seen[str(count)] = answers
        finally:
            client.stop_stream()
            client.close()
    http = httpclient.InferenceServerClient(server.http_url)

    def read() -> dict[str, Any]:
        stats: dict[str, Any] = http.get_inference_statistics(model)["model_stats"][0]
        return stats

    # Triton 2.51 may count a request after its error reached the client.
    wait_until(
        lambda: (
            sum(read()["inference_stats"][k]["count"] for k in ("success", "fail"))
            >= len(counts)
        ),
        "every request to be counted",
    )
    stats = read()
    http.close()
    seen["success"] = stats["inference_stats"]["success"]["count"]
    seen["fail"] = stats["inference_stats"]["fail"]["count"]
    seen["executions"] = stats["execution_count"]
    failures = labels(model=model, reason="BACKEND", version="1")
    seen["BACKEND"] = samples(scrape(server.metrics_url))[
        ("nv_inference_request_failure", failures)
    ]
    return seen


def test_failed_execute_ends_open_requests_and_counts_failures(tmp_path: Path) -> None:
    """A decoupled execute that raises: the responses sent before still arrive, in
    order, then the error ends each request left open; every request of the
    execution fails (BACKEND), as in process and in Triton 2.51, although in a stub
    the error travels on the response stream, behind those responses."""
    repo = tmp_path / "repo"
    for name, extra in (("inproc", ""), ("stub", PROCESS)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(CONFIG % name + extra)
        (repo / name / "1" / "model.py").write_text(FAILING_MODEL)
    counts = [3, -2, 0]
    with run_server(repo) as server:
        expected = _failing_streams(server, "inproc", counts)
        got = _failing_streams(server, "stub", counts)
    assert got == expected
    error = "Failed to process the request(s) for model 'MODEL_0', message: "
    assert expected["3"][:3] == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
    assert expected["3"][3].startswith(error + "RuntimeError: execute broke")
    assert expected["-2"] == [[0.0, 0.0], [1.0, 1.0], "FINAL"]
    assert expected["0"][0].startswith(error)
    assert (expected["success"], expected["fail"], expected["BACKEND"]) == (0, 3, 3)
    if reference_command() is not None:
        with run_reference([repo]) as reference:
            assert _failing_streams(reference, "stub", counts) == expected
