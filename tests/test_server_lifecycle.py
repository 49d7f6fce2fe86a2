"""Server lifecycle: in-process start/stop and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serverutil import RunningServer, infer_json, run_server

SLOW_CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# Sleeps in execute so that requests are still queued/running when SIGTERM comes,
# and records finalize() in a file next to the model so the test can see it ran.
SLOW_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(args["model_repository"], "finalized")

    def execute(self, requests):
        time.sleep(0.5)
        return [
            pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(
                    r, "INPUT0").as_numpy() * 2)])
            for r in requests
        ]

    def finalize(self):
        with open(self.marker, "w") as f:
            f.write("done")
"""


def _infer_in_threads(
    server: RunningServer, count: int
) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * count

    def one(i: int) -> None:
        tensor = {"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": [i]}
        try:
            results[i] = infer_json(server, "slow", [tensor])
        except Exception as error:  # recorded and asserted on below
            results[i] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def _wait_for_requests_in_flight(metrics_url: str, count: int) -> None:
    """Block until the model has `count` requests queued or executing."""
    import urllib.request

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        pending = success = 0.0
        for line in text.splitlines():
            if line.startswith("nv_inference_pending_request_count{"):
                pending = float(line.rsplit(" ", 1)[1])
            if line.startswith("nv_inference_request_success{"):
                success = float(line.rsplit(" ", 1)[1])
        if pending + success >= count - 1:  # one is executing, not pending
            return
        time.sleep(0.02)
    raise AssertionError("requests never reached the server")


def test_sigterm_drains_in_flight_requests_then_finalizes(
    write_model: Callable[..., Path],
) -> None:
    repo: Path = write_model("slow", SLOW_CONFIG, SLOW_MODEL)
    marker = repo / "slow" / "finalized"
    count = 4  # 4 x 0.5 s with one instance: the last ends ~2 s after SIGTERM
    with run_server(repo, "--exit-timeout-secs=20") as server:
        threads, results = _infer_in_threads(server, count)
        _wait_for_requests_in_flight(server.metrics_url, count)
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        assert server.process.wait(timeout=30) == 0
    for i, result in enumerate(results):
        assert not isinstance(result, Exception), result
        status, body = result
        assert status == 200, body
        assert body["outputs"][0]["data"] == [2.0 * i]  # type: ignore[index]
    assert marker.read_text() == "done"
    text = server.log_text()
    assert "Signal (15) received." in text
    assert text.index("All models are stopped") < text.index("successfully unloaded")
    assert "Waiting for in-flight requests to complete." in text
    assert "All models are stopped, unloading models" in text


def test_exit_timeout_bounds_shutdown(write_model: Callable[..., Path]) -> None:
    repo: Path = write_model("slow", SLOW_CONFIG, SLOW_MODEL)
    count = 8  # ~4 s of work; the server must give up after ~1 s
    with run_server(repo, "--exit-timeout-secs=1") as server:
        threads, results = _infer_in_threads(server, count)
        _wait_for_requests_in_flight(server.metrics_url, count)
        server.process.send_signal(signal.SIGINT)
        # Queued requests were abandoned: a non-zero exit says so.
        assert server.process.wait(timeout=30) == 1
        for thread in threads:
            thread.join(timeout=30)
    # The server gave up before the ~4 s of queued work was done: some requests
    # never got an answer (no timing is measured: the outcome shows it).
    answered = [r for r in results if isinstance(r, tuple) and r[0] == 200]
    assert len(answered) < count, results
    assert "Signal (2) received." in server.log_text()


STUCK_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(args["model_repository"], "stuck")

    def execute(self, requests):
        open(self.marker, "w").close()
        time.sleep(3600)
"""


def test_sigterm_exits_even_with_a_model_stuck_in_execute(
    write_model: Callable[..., Path],
) -> None:
    repo: Path = write_model("slow", SLOW_CONFIG, STUCK_MODEL)
    with run_server(repo, "--exit-timeout-secs=2") as server:
        threads, results = _infer_in_threads(server, 1)
        marker = repo / "slow" / "stuck"
        for _ in range(2000):
            if marker.exists():
                break
            time.sleep(0.01)
        assert marker.exists()
        server.process.send_signal(signal.SIGTERM)
        # Exits on its own (bounded by the exit timeout), non-zero: work was abandoned.
        assert server.process.wait(timeout=60) == 1
        for thread in threads:
            thread.join(timeout=30)
    assert "Exit timeout expired" in server.log_text()
    # The client was not left hanging: its connection was closed.
    assert isinstance(results[0], Exception) or results[0][0] != 200


def test_in_process_start_and_stop(example_repo: Path) -> None:
    pytest.importorskip("tritonx._native")
    from tritonx import loops
    from tritonx.server import Server
    from tritonx.server_options import ServerOptions

    options = ServerOptions(
        model_repositories=[example_repo],
        model_control_mode="explicit",
        startup_models=["identity"],
        http_address="127.0.0.1",
        grpc_address="127.0.0.1",
        http_port=0,
        grpc_port=0,
        metrics_port=0,
    )

    async def scenario() -> dict[str, int]:
        server = Server(options)
        await server.start()
        try:
            ports = dict(server.ports)
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["http"])
            writer.write(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            status = await reader.readline()
            writer.close()
            assert b" 200 " in status
            assert server.manager.model_ready("identity")
        finally:
            await server.stop()
        return ports

    ports = loops.run(scenario())
    assert set(ports) == {"http", "grpc", "metrics"}
    assert all(port > 0 for port in ports.values())


def test_sigterm_drains_grpc_requests(write_model: Callable[..., Path]) -> None:
    import numpy as np
    import tritonclient.grpc as grpcclient

    repo: Path = write_model("slow", SLOW_CONFIG, SLOW_MODEL)
    count = 3
    with run_server(repo, "--exit-timeout-secs=20") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        done = threading.Semaphore(0)
        results: list[Any] = [None] * count

        def finished(i: int, result: Any, error: Any) -> None:
            results[i] = error if error is not None else result.as_numpy("OUTPUT0")
            done.release()

        for i in range(count):
            tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
            tensor.set_data_from_numpy(np.array([i], dtype=np.float32))
            client.async_infer(
                "slow",
                [tensor],
                lambda result, error, i=i: finished(i, result, error),
                timeout=60,
            )
        _wait_for_requests_in_flight(server.metrics_url, count)
        server.process.send_signal(signal.SIGTERM)
        for _ in range(count):
            assert done.acquire(timeout=30)
        assert server.process.wait(timeout=30) == 0
        client.close()
    assert [r.tolist() for r in results] == [[2.0 * i] for i in range(count)]


ASYNC_CONFIG = """
name: "async_echo"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 2 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 2 ] } ]
"""

ASYNC_MODEL = """
import asyncio

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        await asyncio.sleep(0)
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", data)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


def test_async_execute_model_serves_many_requests(
    write_model: Callable[..., Path],
) -> None:
    # Cheap models may run on the request's own thread (inline dispatch); for HTTP
    # that is the server's event loop, where an async execute could not run its loop.
    repo: Path = write_model("async_echo", ASYNC_CONFIG, ASYNC_MODEL)
    tensor = {"name": "INPUT0", "shape": [2], "datatype": "FP32"}
    with run_server(repo) as server:
        for i in range(40):
            status, body = infer_json(
                server, "async_echo", [{**tensor, "data": [i, 1]}]
            )
            assert status == 200, body


# An initialize that never ends (weights that take very long to load).
ENDLESS_INIT_MODEL = """
import os
import time


class TritonPythonModel:
    def initialize(self, args):
        open(os.path.join(args["model_repository"], "loading"), "w").close()
        time.sleep(3600)

    def execute(self, requests):
        return []
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_models_load(
    write_model: Callable[..., Path], signum: signal.Signals
) -> None:
    # The server used to finish every load first (here: never) before it looked at
    # the signal, then opened its endpoints only to close them.
    repo: Path = write_model("slow", SLOW_CONFIG, SLOW_MODEL)
    write_model(
        "endless", SLOW_CONFIG.replace('"slow"', '"endless"'), ENDLESS_INIT_MODEL
    )
    with run_server(repo, "--exit-timeout-secs=600", services=[]) as server:
        assert server.wait_for_log("successfully loaded 'slow'")
        for _ in range(3000):
            if (repo / "endless" / "loading").exists():
                break
            time.sleep(0.01)
        server.process.send_signal(signum)
        # Non-zero: a load was abandoned.
        assert server.process.wait(timeout=120) == 1
    text = server.log_text()
    assert f"Signal ({int(signum)}) received." in text
    assert "loads still running are abandoned" in text
    assert "Started HTTPService" not in text and "Started GRPC" not in text
    # The model that had loaded was unloaded: its finalize ran.
    assert (repo / "slow" / "finalized").read_text() == "done"
