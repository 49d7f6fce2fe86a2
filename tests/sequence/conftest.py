"""Model repositories for the sequence batcher tests."""

from __future__ import annotations

from pathlib import Path

# Echoes its control inputs as CONTROLS = [START, END, READY, CORRID] (int64) and,
# with an implicit state, returns OUTPUT = state + INPUT, which is also the next
# state; without one, OUTPUT = INPUT. With the config parameter "gated", a batch
# holding a negative INPUT first creates the file ENTERED beside config.pbtxt and
# waits until a file RELEASE appears there (which it removes): a test holds an
# execution open for as long as it needs.
SEQUENCE_MODEL = """
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.has_state = bool(config.get("sequence_batching", {}).get("state"))
        self.gated = "gated" in config.get("parameters", {})
        self.dir = os.path.dirname(os.path.dirname(__file__))

    def wait_for_release(self):
        open(os.path.join(self.dir, "ENTERED"), "a").close()
        release = os.path.join(self.dir, "RELEASE")
        while not os.path.exists(release):
            time.sleep(0.01)
        os.remove(release)

    def execute(self, requests):
        # (A null request's INPUT is whatever Triton's buffer held: READY says.)
        if self.gated and any(
            pb_utils.get_input_tensor_by_name(r, "READY").as_numpy().all()
            and (pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() < 0).any()
            for r in requests
        ):
            self.wait_for_release()
        responses = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy()
            parts = [
                pb_utils.get_input_tensor_by_name(r, name).as_numpy().astype(np.int64)
                for name in ("START", "END", "READY", "CORRID")
            ]
            outputs = [pb_utils.Tensor("CONTROLS", np.concatenate(parts, axis=-1))]
            if self.has_state:
                state = pb_utils.get_input_tensor_by_name(r, "STATE_IN").as_numpy()
                total = (state + x).astype(np.int32)
                outputs.append(pb_utils.Tensor("OUTPUT", total))
                outputs.append(pb_utils.Tensor("STATE_OUT", total))
            else:
                outputs.append(pb_utils.Tensor("OUTPUT", x))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

CONTROLS = """
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
"""

STATE = """
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32
            dims: [ 1 ] } ]
"""


def write_sequence_model(
    repo: Path,
    name: str,
    *,
    max_batch_size: int = 4,
    strategy: str = "direct { }",
    idle_us: int = 5_000_000,
    state: bool = True,
    instances: int = 1,
    initial: int | None = None,
    gated: bool = False,
) -> Path:
    """A SEQUENCE_MODEL; `initial`: the state starts at this value (an
    initial_state read from initial_state/init.bin) instead of zeros; `gated`: a
    negative INPUT holds its execution until the test releases it."""
    model = repo / name
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(SEQUENCE_MODEL)
    state_text = STATE if state else ""
    if initial is not None:
        (model / "initial_state").mkdir()
        (model / "initial_state" / "init.bin").write_bytes(
            initial.to_bytes(4, "little", signed=True)
        )
        state_text = state_text.replace(
            "dims: [ 1 ] }",
            "dims: [ 1 ]\n initial_state { data_type: TYPE_INT32 dims: [ 1 ] "
            'data_file: "init.bin" name: "init" } }',
        )
    (model / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
        'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] },\n'
        '         { name: "CONTROLS" data_type: TYPE_INT64 dims: [ 4 ] } ]\n'
        "sequence_batching {\n"
        f"  max_sequence_idle_microseconds: {idle_us}\n  {strategy}\n"
        + CONTROLS
        + state_text
        + "}\n"
        f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
        + (
            'parameters { key: "gated" value: { string_value: "1" } }\n'
            if gated
            else ""
        )
    )
    return model
