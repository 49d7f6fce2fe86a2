"""An ensemble with a cycle through one of its inputs (a step writes a tensor it
depends on) is refused when the repository is polled, with the reason in the log
and "failed to poll" to the client, like Triton's other ensemble graph errors.

Triton 2.51's readiness checks miss such a cycle (the input is ready from the
start), load the ensemble, and never answer a request to it; found by
tests/config/test_ensemble_config_fuzz.py. tritonx's own check, so tritonx only.
A step writing an ensemble input without a cycle still loads and answers (as in
Triton: the first value of the tensor wins).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ensemble_repo as er
import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import RunningServer, run_server
from tritonclient.utils import InferenceServerException

CYCLE = "is written by a step that depends on it: the ensemble would never finish"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo: Path = tmp_path_factory.mktemp("ensemble_cycles")
    er.write_unary(repo, "add_one", add=1.0)
    io = {"inputs": [er.tensor("X")], "outputs": [er.tensor("Y")]}
    # X -> add_one -> X: the step reads the input it writes.
    er.write_ensemble(
        repo, "self_loop",
        [er.step("add_one", {"INPUT0": "X"}, {"OUTPUT0": "Y"}),
         er.step("add_one", {"INPUT0": "X"}, {"OUTPUT0": "X"})],
        **io,
    )  # fmt: skip
    # X -> add_one -> t -> add_one -> X: a longer way round.
    er.write_ensemble(
        repo, "two_step_loop",
        [er.step("add_one", {"INPUT0": "X"}, {"OUTPUT0": "t"}),
         er.step("add_one", {"INPUT0": "t"}, {"OUTPUT0": "X"}),
         er.step("add_one", {"INPUT0": "t"}, {"OUTPUT0": "Y"})],
        **io,
    )  # fmt: skip
    # Z (an input) is also written, from X: no cycle.
    er.write_ensemble(
        repo, "input_written",
        [er.step("add_one", {"INPUT0": "X"}, {"OUTPUT0": "Z"}),
         er.step("add_one", {"INPUT0": "Z"}, {"OUTPUT0": "Y"})],
        inputs=[er.tensor("X"), er.tensor("Z")], outputs=[er.tensor("Y")],
    )  # fmt: skip
    with run_server(repo, "--model-control-mode=explicit") as running:
        yield running


@pytest.mark.parametrize("name", ["self_loop", "two_step_loop"])
def test_a_cycle_is_refused_at_load(server: RunningServer, name: str) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as error:
        client.load_model(name)
    assert "failed to poll from model repository" in error.value.message()
    assert server.wait_for_log(f"ensemble '{name}' {CYCLE}")
    assert not client.is_model_ready(name)
    assert client.is_server_live()


def test_an_input_written_without_a_cycle_loads(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    client.load_model("input_written")
    inputs = []
    for name in ("X", "Z"):
        tensor = httpclient.InferInput(name, [1, 4], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
        inputs.append(tensor)
    result = client.infer("input_written", inputs)
    assert result.as_numpy("Y").shape == (1, 4)
