"""Statistics of decoupled models, read through the wire (HTTP JSON, gRPC, /metrics).

Request-level counters count a stream once per request, whatever its number of
responses; a request the client cancels while it is still queued is a CANCELED
failure; ``response_stats`` has Triton's shape on both protocols. Triton 2.51's python
backend reports no per-response statistics (the map stays empty there); tritonx fills
it for decoupled models the way Triton's core aggregates a backend's reports, which
the tritonx-only test checks value by value.
"""

from __future__ import annotations

import json
import queue
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serverutil import RunningServer, reference_command, run_reference, run_server


def _write_repeat(repo: Path) -> None:
    """The ``repeat`` and ``echo`` models of this directory's conftest (imported by
    path: the name ``conftest`` resolves to tests/conftest.py here)."""
    import importlib.util

    path = Path(__file__).with_name("conftest.py")
    spec = importlib.util.spec_from_file_location("_streaming_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_repeat(repo)


FINAL_PARAM = "triton_final_response"
RESPONSE_KEYS = {
    "compute_infer",
    "compute_output",
    "success",
    "fail",
    "empty_response",
    "cancel",
}

# One instance whose execute holds a request until the client cancels it: the next
# request of the stream waits in the queue, where a cancellation fails it. Dynamic
# batching on: without it Triton 2.51 hands queued requests to the backend even when
# cancelled (no queue to check them in); tritonx fails them CANCELED either way.
HOLD_CONFIG = """
name: "hold"
backend: "python"
max_batch_size: 1
input [ { name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
dynamic_batching { }
model_transaction_policy { decoupled: true }
"""

HOLD_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]

    def execute(self, requests):
        for request in requests:
            with open(os.path.join(self.dir, "executing-" + request.request_id()), "w"):
                pass
            deadline = time.monotonic() + 60
            while not request.is_cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
            request.get_response_sender().send(
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""


@pytest.fixture(scope="module", params=["tritonx", "triton"])
def stats_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, RunningServer, Path]]:
    repo = tmp_path_factory.mktemp("repo")
    _write_repeat(repo)
    (repo / "hold" / "1").mkdir(parents=True)
    (repo / "hold" / "config.pbtxt").write_text(HOLD_CONFIG)
    (repo / "hold" / "1" / "model.py").write_text(HOLD_MODEL)
    if request.param == "triton":
        if reference_command() is None:
            pytest.skip("TRITONX_REFERENCE_CMD not set: no reference Triton")
        with run_reference([repo]) as server:
            yield "triton", server, repo
        return
    with run_server([Path(repo)]) as server:
        yield "tritonx", server, repo


def _inputs(shape: tuple[int, ...] = (1,), **values: int) -> list[Any]:
    import tritonclient.grpc as grpcclient

    tensors = []
    for name, value in values.items():
        tensor = grpcclient.InferInput(name, list(shape), "INT32")
        tensor.set_data_from_numpy(np.full(shape, value, dtype=np.int32))
        tensors.append(tensor)
    return tensors


def _run_stream(url: str, plan: list[tuple[int, int]]) -> int:
    """Sends (count, mode) requests on one stream, asking for empty final responses
    so that every request ends with a visible FINAL, and waits for them all; returns
    the number of responses (errors included) received."""
    import tritonclient.grpc as grpcclient

    events: queue.Queue[tuple[bool, bool]] = queue.Queue()

    def on_response(result: Any, error: Any) -> None:
        if error is not None:
            events.put((False, True))
            return
        final = result.get_response().parameters[FINAL_PARAM].bool_param
        events.put((final, False))

    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=on_response)
    try:
        for i, (count, mode) in enumerate(plan):
            client.async_stream_infer(
                "repeat",
                _inputs(COUNT=count, MODE=mode),
                request_id=f"s{i}",
                enable_empty_final_response=True,
            )
        finals = received = 0
        while finals < len(plan):
            final, _ = events.get(timeout=60)
            received += 1
            finals += final
        return received
    finally:
        client.stop_stream()
        client.close()


def _http_stats(server: RunningServer, model: str) -> dict[str, Any]:
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    [entry] = body["model_stats"]
    return dict(entry)


def _grpc_stats(server: RunningServer, model: str) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient
    from google.protobuf import json_format

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        message = client.get_inference_statistics(model)
    finally:
        client.close()
    [entry] = message.model_stats
    return dict(json_format.MessageToDict(entry, preserving_proto_field_name=True))


def _metric(server: RunningServer, name: str, model: str, reason: str = "") -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            if reason and f'reason="{reason}"' not in line:
                continue
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} for {model} not in /metrics")


def _eventually(check: Callable[[], bool]) -> None:
    """The server records a request's statistics when its execution ends, which may
    be just after the client saw its FINAL: poll (bounded) until it has."""
    for _ in range(300):
        if check():
            return
        time.sleep(0.05)
    assert check()


def test_streams_count_once_per_request(
    stats_server: tuple[str, RunningServer, Path],
) -> None:
    _, server, _ = stats_server
    before = int(_http_stats(server, "repeat")["inference_stats"]["success"]["count"])
    plan = [(5, 0), (16, 1), (0, 0), (1, 0)]
    received = _run_stream(server.grpc_url, plan)
    assert received == (5 + 16 + 0 + 1) + len(plan)  # data, then an empty FINAL each
    expected = before + len(plan)
    _eventually(
        lambda: (
            _http_stats(server, "repeat")["inference_stats"]["success"]["count"]
            == expected
        )
    )
    http = _http_stats(server, "repeat")
    assert http["inference_count"] == expected
    assert http["execution_count"] == expected
    assert http["inference_stats"]["fail"]["count"] == 0
    assert isinstance(http["response_stats"], dict)
    grpc = _grpc_stats(server, "repeat")
    assert int(grpc["inference_stats"]["success"]["count"]) == expected
    # A map field: absent from the JSON rendering when empty (Triton's python backend).
    assert isinstance(grpc.get("response_stats", {}), dict)
    assert _metric(server, "nv_inference_request_success", "repeat") == expected
    assert _metric(server, "nv_inference_count", "repeat") == expected


def test_cancelled_queued_requests_are_canceled(
    stats_server: tuple[str, RunningServer, Path],
) -> None:
    import tritonclient.grpc as grpcclient

    kind, server, repo = stats_server
    queued = ("q1", "q2", "q3")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: None)
    client.async_stream_infer("hold", _inputs((1, 1), COUNT=0), request_id="held")
    # The first request occupies the only instance; the others wait behind it.
    _eventually((repo / "hold" / "executing-held").exists)
    for request_id in queued:
        client.async_stream_infer(
            "hold", _inputs((1, 1), COUNT=0), request_id=request_id
        )
    _eventually(
        lambda: _metric(server, "nv_inference_pending_request_count", "hold") == 3
    )
    client.stop_stream(cancel_requests=True)
    client.close()

    def settled() -> bool:
        stats = _http_stats(server, "hold")["inference_stats"]
        return stats["success"]["count"] + stats["fail"]["count"] == 1 + len(queued)

    _eventually(settled)
    canceled = _metric(server, "nv_inference_request_failure", "hold", "CANCELED")
    stats = _http_stats(server, "hold")
    # A cancelled request still in the scheduler's queue fails CANCELED; those that
    # reached the model (its is_cancelled() turned true) end as successes. Triton
    # 2.51 has already committed the next one or two to its instance's payloads, so
    # fewer of its queued requests are still cancellable than tritonx's.
    assert canceled >= 1
    assert stats["inference_stats"]["fail"]["count"] == canceled
    assert stats["execution_count"] == stats["inference_stats"]["success"]["count"]
    assert _metric(server, "nv_inference_request_success", "hold") == (
        1 + len(queued) - canceled
    )
    assert _metric(server, "nv_inference_request_failure", "hold", "BACKEND") == 0
    if kind == "tritonx":
        assert canceled == len(queued)
        assert not any((repo / "hold" / f"executing-{q}").exists() for q in queued)


def _counts(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        index: {key: int(entry[key].get("count", 0)) for key in RESPONSE_KEYS}
        for index, entry in stats["response_stats"].items()
    }


def test_response_stats_per_index(
    stats_server: tuple[str, RunningServer, Path],
) -> None:
    kind, server, _ = stats_server
    if kind != "tritonx":
        pytest.skip("Triton 2.51's python backend reports no per-response statistics")
    before = _counts(_http_stats(server, "repeat"))
    # 3 responses then an empty FINAL; an empty FINAL only; a response, an error, a
    # last response carrying FINAL (mode 2).
    _run_stream(server.grpc_url, [(3, 0), (0, 0), (0, 2)])

    def delta() -> dict[str, dict[str, int]]:
        now = _counts(_http_stats(server, "repeat"))
        return {
            index: {
                key: value - before.get(index, {}).get(key, 0)
                for key, value in entry.items()
                if value - before.get(index, {}).get(key, 0)
            }
            for index, entry in now.items()
        }

    expected = {
        "0": {
            "success": 2,
            "empty_response": 1,
            "compute_infer": 3,
            "compute_output": 2,
        },
        "1": {"success": 1, "fail": 1, "compute_infer": 2, "compute_output": 1},
        "2": {"success": 2, "compute_infer": 2, "compute_output": 2},
        "3": {"empty_response": 1, "compute_infer": 1},
    }
    _eventually(lambda: {k: v for k, v in delta().items() if v} == expected)
    http = _http_stats(server, "repeat")
    assert list(http["response_stats"]) == sorted(http["response_stats"])
    for entry in http["response_stats"].values():
        assert set(entry) == RESPONSE_KEYS
        for duration in entry.values():
            assert set(duration) == {"count", "ns"}
            if duration["count"] == 0:
                assert duration["ns"] == 0
    # The gRPC shape carries the same numbers.
    grpc = _grpc_stats(server, "repeat")
    assert {
        index: {
            key: {"count": int(d.get("count", 0)), "ns": int(d.get("ns", 0))}
            for key, d in entry.items()
        }
        for index, entry in grpc["response_stats"].items()
    } == http["response_stats"]
    # A model that is not decoupled has none, as in Triton.
    assert _http_stats(server, "echo")["response_stats"] == {}
