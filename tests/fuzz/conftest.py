"""Fixtures of the fuzz suites: one server per module, a liveness prober beside it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# --import-mode=importlib does not put this directory on sys.path.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fuzzutil import (  # noqa: E402
    EXAMPLES,
    MAX_INPUT,
    SEED,
    TALLY,
    LivenessProber,
    Target,
)
from serverutil import RunningServer, run_server  # noqa: E402

EXAMPLE_REPO = HERE.parents[1] / "model_repository"

BYTES_CONFIG = """
name: "fuzz_bytes"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
"""
BYTES_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""


@pytest.fixture(scope="module")
def fuzz_models() -> tuple[str, ...]:
    """The example models a module's repository links; a module may override it
    (the differential suite leaves simple_onnx out: the reference lacks ONNX)."""
    return ("add_sub", "identity", "simple_onnx")


@pytest.fixture(scope="module")
def fuzz_repo(
    tmp_path_factory: pytest.TempPathFactory, fuzz_models: tuple[str, ...]
) -> Path:
    """The example models (``fuzz_models``) plus a BYTES echo, fuzz_bytes."""
    repo = tmp_path_factory.mktemp("fuzz_repo")
    for model in fuzz_models:
        (repo / model).symlink_to(EXAMPLE_REPO / model, target_is_directory=True)
    version = repo / "fuzz_bytes" / "1"
    version.mkdir(parents=True)
    (repo / "fuzz_bytes" / "config.pbtxt").write_text(textwrap.dedent(BYTES_CONFIG))
    (version / "model.py").write_text(textwrap.dedent(BYTES_MODEL))
    return repo


@pytest.fixture(scope="module", params=["native", "python"])
def server(fuzz_repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """Both HTTP engines: the C++ one (the default) and the Python one (HTTPS)."""
    print(f"fuzz: {EXAMPLES} examples per protocol, seed {SEED or 'derandomized'}")
    with run_server(
        fuzz_repo,
        f"--http-max-input-size={MAX_INPUT}",
        f"--http-engine={request.param}",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def target(server: RunningServer) -> Target:
    return Target(server)


@pytest.fixture(scope="module")
def prober(server: RunningServer) -> Iterator[LivenessProber]:
    probe = LivenessProber(server.ports["http"], server.process.pid)
    yield probe
    probe.close()


@pytest.fixture(autouse=True)
def _alive_and_live(server: RunningServer, prober: LivenessProber) -> Iterator[None]:
    """After each test: the server still runs and stayed live for the prober."""
    prober.report()  # start this test's window
    TALLY.take_failures()
    yield
    assert server.process.poll() is None, (
        f"server exited with {server.process.returncode}:\n{server.log_text()[-4000:]}"
    )
    prober.check()
    failures = TALLY.take_failures()
    assert not failures, f"{len(failures)} bad answers, first ones:\n" + "\n".join(
        failures[:5]
    )


@pytest.fixture(scope="session", autouse=True)
def _write_tally() -> Iterator[None]:
    yield
    TALLY.write()
