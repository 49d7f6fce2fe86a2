"""model.py sources shared by several test modules (written into repositories the
tests make)."""

from __future__ import annotations

from pathlib import Path


def write_model(repo: Path, name: str, config: str, model: str) -> None:
    """A one-version Python model ``name`` in ``repo``."""
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    (repo / name / "1" / "model.py").write_text(model)


# INPUT0 echoed as OUTPUT0, whatever the datatype and shape the config gives them.
ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0",
                 pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]
            )
            for r in requests
        ]
"""

# A config for ECHO_MODEL: FP32 vectors of any length, no batching.
ECHO_FP32_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""

# FP32 INPUT0 -> OUTPUT0. Each execution leaves "ran-<value>" next to the model, then
# waits until its request is cancelled (leaving "cancelled-<value>") or a file named
# "open" appears: tests control what is in flight without timing.
HELD_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]

    def execute(self, requests):
        responses = []
        for r in requests:
            value = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            tag = str(int(value[0]))
            open(os.path.join(self.dir, "ran-" + tag), "w").close()
            while not os.path.exists(os.path.join(self.dir, "open")):
                if r.is_cancelled():
                    open(os.path.join(self.dir, "cancelled-" + tag), "w").close()
                    break
                time.sleep(0.01)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor("OUTPUT0", value)]))
        return responses
"""


# A decoupled Python model (tests serve it under other names by replacing the name).
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
# is cancelled, then marks it on disk ("cancelled-<request id>"); 4 sends FINAL then
# tries once more and writes the error it got ("after-final"); 5 is 3 after a first
# response.
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

    def _wait_cancel(self, sender, tag, first=False):
        if first:
            sender.send(out(0))
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
            elif mode == 5:
                self._start(self._wait_cancel, sender, request.request_id(), True)
            elif mode == 6:  # a decoupled model may not return responses
                return [out(0) for _ in requests]
        return None

    def finalize(self):
        for thread in self.threads:
            thread.join(timeout=30)
"""

# A Python add_sub model (FP32 [4]; OUTPUT0 = a + b, OUTPUT1 = a - b).
ADD_SUB = """
name: "add_sub"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
        { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
         { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] } ]
"""
ADD_SUB_PY = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]))
        return out
"""


def venv_with_onlyinenv(env: Path, value: float) -> Path:
    """A venv at ``env`` whose module ``onlyinenv`` (absent from the server's
    environment) holds VALUE; returns the module's file."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", env],
        check=True,
    )
    (site,) = env.glob("lib/python*/site-packages")
    module = site / "onlyinenv.py"
    module.write_text(f"VALUE = {value}\n")
    return module


# INPUT0 back as OUTPUT0, and OUTPUT1 the instance's execution count: a response
# cache hit is told from a miss by content, not by timing.
COUNTING_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.executions = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            self.executions += 1
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            count = np.array([self.executions], dtype=np.int64)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", data),
                pb_utils.Tensor("OUTPUT1", count),
            ]))
        return responses
"""


# A BLS model "bls": FP32 INPUT0 sent through TARGET CALLS times in turn (each call's
# OUTPUT0 the next one's INPUT0), the last OUTPUT0 answered. BATCH adds a batch
# dimension of 1 for a TARGET that batches. See bls_chain_model.
BLS_CHAIN_CONFIG = """
name: "bls"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""
_BLS_CHAIN_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            x = x[None] if BATCH else x
            for _ in range(CALLS):
                reply = pb_utils.InferenceRequest(
                    model_name="TARGET",
                    inputs=[pb_utils.Tensor("INPUT0", x)],
                    requested_output_names=["OUTPUT0"],
                ).exec()
                if reply.has_error():
                    raise pb_utils.TritonModelException(reply.error().message())
                x = pb_utils.get_output_tensor_by_name(reply, "OUTPUT0").as_numpy()
            y = x[0] if BATCH else x
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
        return out
"""


def bls_chain_model(target: str, calls: int, batch: bool) -> str:
    return (
        _BLS_CHAIN_MODEL.replace("TARGET", target)
        .replace("CALLS", str(calls))
        .replace("BATCH", str(batch))
    )
