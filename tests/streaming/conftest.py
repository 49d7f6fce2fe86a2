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
from testmodels import REPEAT_CONFIG, REPEAT_MODEL

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
