"""Unloads and reloads while a request runs, as differential tests against Triton
2.51: the control call is answered once the model stops serving (unload) or the
new version serves (reload), not when the request in flight has finished.

* unload (gRPC and HTTP): answered while the request runs; the model is then not
  ready, its index row says UNLOADING, a new request is refused ("has no
  available versions"); the request in flight still completes.
* load right after, while the old version still drains: answered once the new
  version is READY and serving; the old request completes on the old version.
* reload of a changed version while a request runs: the same.
* unload of a model while an ensemble's request runs in it: answered at once, the
  ensemble and the model both UNLOADING; the ensemble's request completes.
* unload of a model a gRPC stream carried requests to (a decoupled one still
  sending a request's responses, or a plain one): answered at once; the rest of
  the responses still arrive on the stream. Kept difference: Triton 2.51 keeps
  the model UNLOADING (not finalized) until the client closes that stream, even
  after the last response; tritonx finalizes it once its requests are done, so a
  long-lived stream cannot hold an unload (or the reload behind it) up.

The held model answers a request tagged N only once the test writes release-N
beside its config (ran-N says it started), so nothing here waits on a clock.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import HELD_MODEL, config_text, held_inputs, wait_for, wait_until
from serverutil import RunningServer, differential, run_either
from testmodels import ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

MODEL = "held"
ENSEMBLE = f"""
name: "pipeline"
platform: "ensemble"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }} ]
ensemble_scheduling {{ step [ {{
  model_name: "{MODEL}" model_version: -1
  input_map {{ key: "INPUT0" value: "IN" }}
  output_map {{ key: "OUTPUT0" value: "OUT" }}
}} ] }}
"""
# Decoupled: a request's first response at once, the second (its value + 1) and
# the final flag from another thread once the test writes "release-more".
STREAMER = "streamer"
STREAMER_CONFIG = f"""
name: "{STREAMER}"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
"""
STREAMER_MODEL = """
import os
import threading
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
        self.threads = []

    def _rest(self, sender, value):
        while not os.path.exists(os.path.join(self.dir, "release-more")):
            time.sleep(0.01)
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", value + 1)]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def execute(self, requests):
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            sender = request.get_response_sender()
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", value)]))
            thread = threading.Thread(target=self._rest, args=(sender, value))
            thread.start()
            self.threads.append(thread)
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join()
        open(os.path.join(self.dir, "finalized"), "w").close()
"""
ECHO = "echo"
# Long enough for any load; a control call still running then is reported, and
# the test's clean-up releases what it held.
CONTROL_WAIT_S = 60.0


def _index_row(
    client: grpcclient.InferenceServerClient, model: str = MODEL
) -> tuple[str, str]:
    for row in client.get_model_repository_index(as_json=True)["models"]:
        if row["name"] == model:
            return row.get("state", ""), row.get("reason", "")
    return "", ""


def _control(call: Callable[[], Any]) -> str:
    """Runs a load or unload call; "answered" if it returned within
    CONTROL_WAIT_S (the request held meanwhile cannot finish by then)."""
    outcome: dict[str, str] = {}

    def run() -> None:
        try:
            call()
            outcome["result"] = "answered"
        except InferenceServerException as error:
            outcome["result"] = str(error.message())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(CONTROL_WAIT_S)
    return outcome.get("result", "still waiting for the request in flight")


class HeldRequest:
    """A request to the held model, sent on a thread and answered once released."""

    def __init__(
        self, server: RunningServer, repo: Path, tag: int, model: str = MODEL
    ) -> None:
        self.repo, self.tag, self.model = repo, tag, model
        self.result: Any = None
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()
        wait_for(repo / MODEL / f"ran-{tag}")

    def _send(self) -> None:
        inputs = held_inputs(self.tag)
        output = "OUTPUT0"
        if self.model != MODEL:  # the ensemble's names
            inputs[0] = grpcclient.InferInput("IN", [1], "FP32")
            inputs[0].set_data_from_numpy(np.array([self.tag], dtype=np.float32))
            output = "OUT"
        try:
            result = self.client.infer(self.model, inputs)
            self.result = result.as_numpy(output).tolist()
        except InferenceServerException as error:
            self.result = str(error.message())

    def release(self) -> Any:
        (self.repo / MODEL / f"release-{self.tag}").touch()
        self.thread.join(CONTROL_WAIT_S)
        self.client.close()
        return self.result


def _serve(
    stack: ExitStack, kind: str, tmp_path: Path, load: str = MODEL
) -> tuple[RunningServer, Path]:
    repo = tmp_path / kind
    write_model(repo, MODEL, config_text(MODEL, max_batch=0), HELD_MODEL)
    write_model(repo, STREAMER, STREAMER_CONFIG, STREAMER_MODEL)
    write_model(repo, ECHO, config_text(ECHO, max_batch=0), ECHO_MODEL)
    (repo / "pipeline" / "1").mkdir(parents=True)
    (repo / "pipeline" / "config.pbtxt").write_text(ENSEMBLE)
    server = stack.enter_context(
        run_either(kind, repo, "--model-control-mode=explicit", f"--load-model={load}")
    )
    # Whatever happens, nothing stays held when the server stops.
    stack.callback((repo / MODEL / "release-all").touch)
    stack.callback((repo / STREAMER / "release-more").touch)
    return server, repo


def _after_stop(client: grpcclient.InferenceServerClient) -> dict[str, Any]:
    seen: dict[str, Any] = {"ready": client.is_model_ready(MODEL)}
    seen["index"] = _index_row(client)
    try:
        client.infer(MODEL, held_inputs(0))
        seen["new request"] = "answered"
    except InferenceServerException as error:
        seen["new request"] = str(error.message())
    return seen


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unload_is_answered_while_a_request_runs(tmp_path: Path, protocol: str) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with ExitStack() as stack:
            server, repo = _serve(stack, kind, tmp_path / protocol)
            client = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(client.close)
            control: Any = client
            if protocol == "http":
                control = httpclient.InferenceServerClient(server.http_url)
                stack.callback(control.close)
            held = HeldRequest(server, repo, 1)
            seen: dict[str, Any] = {
                "unload": _control(lambda: control.unload_model(MODEL))
            }
            seen.update(_after_stop(client))
            seen["held"] = held.release()
            wait_until(
                lambda: _index_row(client)[0] != "UNLOADING", "the unload to end"
            )
            seen["index at the end"] = _index_row(client)
            return seen

    seen = differential(scenario)
    assert seen == {
        "unload": "answered",
        "ready": False,
        "index": ("UNLOADING", ""),
        "new request": f"Request for unknown model: '{MODEL}' has no available versions",
        "held": [1.0],
        "index at the end": ("UNAVAILABLE", "unloaded"),
    }


@pytest.mark.parametrize("change", ["unload then load", "reload a changed version"])
def test_load_is_answered_while_the_old_version_drains(
    tmp_path: Path, change: str
) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with ExitStack() as stack:
            server, repo = _serve(stack, kind, tmp_path / change.replace(" ", "_"))
            client = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(client.close)
            held = HeldRequest(server, repo, 1)
            seen: dict[str, Any] = {}
            if change == "unload then load":
                seen["unload"] = _control(lambda: client.unload_model(MODEL))
            else:
                # A newer model.py: the version is built again, not kept.
                source = repo / MODEL / "1" / "model.py"
                stat = source.stat()
                os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            seen["load"] = _control(lambda: client.load_model(MODEL))
            seen["ready"] = client.is_model_ready(MODEL)
            seen["index"] = _index_row(client)
            # The new version serves while the old one still runs request 1.
            (repo / MODEL / "release-2").touch()
            seen["new version"] = (
                client.infer(MODEL, held_inputs(2)).as_numpy("OUTPUT0").tolist()
            )
            seen["held"] = held.release()
            return seen

    seen = differential(scenario)
    expected: dict[str, Any] = {
        "load": "answered",
        "ready": True,
        "index": ("READY", ""),
        "new version": [2.0],
        "held": [1.0],
    }
    if change == "unload then load":
        expected["unload"] = "answered"
    assert seen == expected


def test_unload_of_a_model_an_ensemble_request_runs_in(tmp_path: Path) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with ExitStack() as stack:
            server, repo = _serve(stack, kind, tmp_path, load="pipeline")
            client = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(client.close)
            held = HeldRequest(server, repo, 1, model="pipeline")
            seen: dict[str, Any] = {
                "unload": _control(lambda: client.unload_model(MODEL))
            }
            seen["ready"] = [client.is_model_ready(m) for m in ("pipeline", MODEL)]
            seen["index"] = [_index_row(client, m) for m in ("pipeline", MODEL)]
            seen["held"] = held.release()
            wait_until(
                lambda: (
                    "UNLOADING"
                    not in {_index_row(client, m)[0] for m in ("pipeline", MODEL)}
                ),
                "the unloads to end",
            )
            seen["index at the end"] = [
                _index_row(client, m) for m in ("pipeline", MODEL)
            ]
            return seen

    unloaded = ("UNAVAILABLE", "unloaded")
    assert differential(scenario) == {
        "unload": "answered",
        "ready": [False, False],
        "index": [("UNLOADING", ""), ("UNLOADING", "")],
        "held": [1.0],
        "index at the end": [unloaded, unloaded],
    }


@pytest.mark.parametrize("model", [STREAMER, ECHO])
def test_unload_of_a_model_a_stream_carried_requests_to(
    tmp_path: Path, model: str
) -> None:
    # What each server shows while the stream stays open after the last response.
    stream_open: dict[str, tuple[str, str]] = {}

    def scenario(kind: str) -> dict[str, Any]:
        with ExitStack() as stack:
            server, repo = _serve(stack, kind, tmp_path, load=model)
            client = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(client.close)
            answers: queue.Queue[Any] = queue.Queue()

            def on_answer(result: Any, error: Any) -> None:
                answers.put(
                    str(error.message())
                    if error
                    else result.as_numpy("OUTPUT0").tolist()
                )

            client.start_stream(callback=on_answer)
            stack.callback(client.stop_stream)

            def send(value: float) -> None:
                tensor = grpcclient.InferInput("INPUT0", [1], "FP32")
                tensor.set_data_from_numpy(np.array([value], dtype=np.float32))
                client.async_stream_infer(model, [tensor])

            send(5)
            seen: dict[str, Any] = {"first": answers.get(timeout=CONTROL_WAIT_S)}
            seen["unload"] = _control(lambda: client.unload_model(model))
            seen["index"] = _index_row(client, model)
            send(7)  # on the same stream, after the unload
            seen["new request"] = answers.get(timeout=CONTROL_WAIT_S)
            if model == STREAMER:
                (repo / STREAMER / "release-more").touch()
                seen["rest"] = answers.get(timeout=CONTROL_WAIT_S)
            if kind == "tritonx":
                wait_until(
                    lambda: _index_row(client, model)[0] != "UNLOADING",
                    "the unload to end, the stream still open",
                )
            else:
                # Triton finalizes only once the stream ends; a moment's wait shows
                # it still UNLOADING with the requests long done.
                time.sleep(2)
            stream_open[kind] = _index_row(client, model)
            client.stop_stream()
            wait_until(
                lambda: _index_row(client, model)[0] != "UNLOADING",
                "the unload to end",
            )
            seen["index at the end"] = _index_row(client, model)
            if model == STREAMER:
                seen["finalized"] = (repo / STREAMER / "finalized").exists()
            return seen

    expected: dict[str, Any] = {
        "first": [5.0],
        "unload": "answered",
        "index": ("UNLOADING", ""),
        "new request": f"Request for unknown model: '{model}' has no available "
        "versions",
        "index at the end": ("UNAVAILABLE", "unloaded"),
    }
    if model == STREAMER:
        expected.update(rest=[6.0], finalized=True)
    assert differential(scenario) == expected
    assert stream_open["tritonx"] == ("UNAVAILABLE", "unloaded")
    if "reference" in stream_open:
        assert stream_open["reference"] == ("UNLOADING", "")
