"""A decoupled Python model (``repeat``) and a server that serves it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import (
    REFERENCE_CMD_ENV,
    RunningServer,
    reference_command,
    run_reference,
    run_server,
)

REPEAT_CONFIG = """
name: "repeat"
backend: "python"
max_batch_size: 0
input [
  { name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] },
  { name: "MODE", data_type: TYPE_INT32, dims: [ 1 ] }
]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
instance_group [ { count: 2, kind: KIND_CPU } ]
model_transaction_policy { decoupled: true }
"""

# MODE: 0 sends COUNT responses from execute; 1 from a thread after execute returned;
# 2 sends a response, an error, a last response with FINAL; 3 waits until the request
# is cancelled, then marks it on disk; 4 sends FINAL then tries once more and writes
# the error it got.
REPEAT_MODEL = """
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def out(i):
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor("OUT", np.array([i], dtype=np.int32))])


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
        self.threads = []

    def _mark(self, name, text=""):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    def _send_all(self, sender, count, delay=0.0):
        for i in range(count):
            sender.send(out(i))
            if delay:
                time.sleep(delay)
        sender.send(flags=FINAL)

    def _wait_cancel(self, sender, tag):
        while not sender.is_cancelled():
            time.sleep(0.01)
        self._mark("cancelled-" + tag)
        sender.send(flags=FINAL)

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args)
        thread.start()
        self.threads.append(thread)

    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "COUNT").as_numpy()[0])
            mode = int(pb_utils.get_input_tensor_by_name(request, "MODE").as_numpy()[0])
            sender = request.get_response_sender()
            if mode == 0:
                self._send_all(sender, count)
            elif mode == 1:
                self._start(self._send_all, sender, count, 0.002)
            elif mode == 2:
                sender.send(out(0))
                sender.send(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("mid-stream failure")))
                sender.send(out(2), flags=FINAL)
            elif mode == 3:
                self._start(self._wait_cancel, sender, request.request_id())
            elif mode == 4:
                sender.send(out(0), flags=FINAL)
                try:
                    sender.send(out(1))
                except pb_utils.TritonModelException as error:
                    self._mark("after-final", str(error))
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=30)
"""


ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "COUNT", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""

# Not decoupled: one response per request, returned from execute.
ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "COUNT").as_numpy())])
            for r in requests]
"""


def write_repeat(repo: Path) -> Path:
    (repo / "echo" / "1").mkdir(parents=True, exist_ok=True)
    (repo / "echo" / "config.pbtxt").write_text(ECHO_CONFIG)
    (repo / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    (repo / "repeat" / "1").mkdir(parents=True, exist_ok=True)
    (repo / "repeat" / "config.pbtxt").write_text(REPEAT_CONFIG)
    (repo / "repeat" / "1" / "model.py").write_text(REPEAT_MODEL)
    return repo / "repeat"


@pytest.fixture(scope="module", params=["tritonx", "tritonx-process", "triton"])
def streaming_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Path]]:
    """tritonx (python models in process and in stub processes), and the reference
    Triton when $TRITONX_REFERENCE_CMD names one: the same tests hold for all."""
    repo = tmp_path_factory.mktemp("repo")
    model_dir = write_repeat(repo)
    if request.param == "triton":
        if reference_command() is None:
            pytest.skip(f"{REFERENCE_CMD_ENV} not set: no reference Triton")
        with run_reference([repo]) as server:
            yield server, model_dir
        return
    example = Path(__file__).resolve().parents[2] / "model_repository"
    # tritonx-process: every python model in stub processes (EXECUTION_MODE)
    mode = "process" if request.param == "tritonx-process" else "in-process"
    with run_server(
        [repo, example], f"--backend-config=python,execution-mode={mode}"
    ) as server:
        yield server, model_dir


@pytest.fixture
def repeat_repo(tmp_path: Path) -> Path:
    """A fresh repository with the `repeat` (and `echo`) models."""
    write_repeat(tmp_path)
    return tmp_path
