"""Implicit state as clients see it, after Triton's L0_implicit_state QA
(test_no_update, test_request_output_not_allowed, test_request_output), as a
differential test against Triton 2.51: a state the model never updates stays at
its initial value; a state output is not a model output a client may ask for,
unless the config also declares it as an output.

Triton 2.51's python backend does not carry a state from one step to the next
(every step reads the initial state), so only what does not depend on carrying
is compared: the state a model never writes, and the outputs of a sequence's
first step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# OUTPUT = STATE_IN + INPUT; STATE_OUT (the next state) the same, unless the
# model is "no_state_update", which never returns it.
MODEL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.update = json.loads(args["model_config"])["name"] != "no_state_update"

    def execute(self, requests):
        responses = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy()
            state = pb_utils.get_input_tensor_by_name(r, "STATE_IN").as_numpy()
            total = (state + x).astype(np.int32)
            outputs = [pb_utils.Tensor("OUTPUT", total)]
            if self.update:
                outputs.append(pb_utils.Tensor("STATE_OUT", total))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""


def config(name: str, state_is_output: bool) -> str:
    extra = (
        ',\n         { name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 1 ] }'
        if state_is_output
        else ""
    )
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }}{extra} ]
sequence_batching {{
  max_sequence_idle_microseconds: 60000000
  state [ {{
    input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32
    dims: [ 1 ]
    initial_state {{ data_type: TYPE_INT32 dims: [ 1 ] data_file: "init.bin"
                     name: "init" }}
  }} ]
}}
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    repo = tmp_path_factory.mktemp("implicit_state")
    for name, state_is_output in (
        ("state_hidden", False),
        ("state_output", True),
        ("no_state_update", False),
    ):
        write_model(repo, name, config(name, state_is_output), MODEL)
        (repo / name / "initial_state").mkdir()
        (repo / name / "initial_state" / "init.bin").write_bytes(
            (100).to_bytes(4, "little", signed=True)
        )
    with ExitStack() as stack:
        running = {"tritonx": stack.enter_context(run_server(repo))}
        if reference_command() is not None:
            running["reference"] = stack.enter_context(run_reference([repo]))
        yield running


def step(
    server: RunningServer,
    model: str,
    value: int,
    seq: int,
    outputs: tuple[str, ...] = (),
    **flags: bool,
) -> Any:
    """One request: the outputs returned (name -> values), or the error's text."""
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("INPUT", [1], "INT32")
    tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
    requested = [httpclient.InferRequestedOutput(name) for name in outputs] or None
    try:
        result = client.infer(
            model, [tensor], outputs=requested, sequence_id=seq, **flags
        )
    except InferenceServerException as error:
        return error.message()
    finally:
        client.close()
    names = [output["name"] for output in result.get_response()["outputs"]]
    return {name: result.as_numpy(name).tolist() for name in sorted(names)}


def compare(servers: dict[str, RunningServer], observe: Any) -> Any:
    seen = {kind: observe(server) for kind, server in servers.items()}
    if "reference" in seen:
        assert seen["tritonx"] == seen["reference"]
    return seen["tritonx"]


def test_state_never_updated_stays_initial(servers: dict[str, RunningServer]) -> None:
    def observe(server: RunningServer) -> list[Any]:
        steps = [step(server, "no_state_update", 1, 3, sequence_start=True)]
        steps += [step(server, "no_state_update", v, 3) for v in (2, 3)]
        steps.append(step(server, "no_state_update", 4, 3, sequence_end=True))
        return steps

    seen = compare(servers, observe)
    assert seen == [{"OUTPUT": [101]}, {"OUTPUT": [102]}, {"OUTPUT": [103]},
                    {"OUTPUT": [104]}]  # fmt: skip


def test_state_output_is_not_a_model_output(servers: dict[str, RunningServer]) -> None:
    def observe(server: RunningServer) -> list[Any]:
        flags = {"sequence_start": True, "sequence_end": True}
        return [
            step(server, "state_hidden", 1, 5, ("STATE_OUT",), **flags),
            step(server, "state_hidden", 1, 5, ("OUTPUT", "STATE_OUT"), **flags),
            # Not asked for by name: only the model's outputs come back.
            step(server, "state_hidden", 1, 5, **flags),
        ]

    seen = compare(servers, observe)
    refusal = "unexpected inference output 'STATE_OUT' for model 'state_hidden'"
    assert seen[:2] == [refusal, refusal]
    assert seen[2] == {"OUTPUT": [101]}


def test_state_declared_as_output_may_be_requested(
    servers: dict[str, RunningServer],
) -> None:
    def observe(server: RunningServer) -> list[Any]:
        flags = {"sequence_start": True, "sequence_end": True}
        return [
            step(server, "state_output", 2, 7, ("STATE_OUT", "OUTPUT"), **flags),
            step(server, "state_output", 3, 7, ("STATE_OUT",), **flags),
            step(server, "state_output", 4, 7, **flags),
        ]

    seen = compare(servers, observe)
    assert seen == [
        {"OUTPUT": [102], "STATE_OUT": [102]},
        {"STATE_OUT": [103]},
        {"OUTPUT": [104], "STATE_OUT": [104]},
    ]
