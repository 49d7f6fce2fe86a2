"""model.py sources shared by several test modules (written into repositories the
tests make)."""

from __future__ import annotations

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
