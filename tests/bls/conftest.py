"""One tritonx server over the BLS repository (tests/bls/blsmodels.py) per module.
Tests that hold the "held" model use tags of their own (see HELD_MODEL)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from blsmodels import write_repo  # noqa: E402
from serverutil import RunningServer, run_server  # noqa: E402


@pytest.fixture(scope="module", params=["in-process", "process"])
def bls_mode(request: pytest.FixtureRequest) -> str:
    """Every BLS test runs against both execution modes: in a stub process the
    calls (plain, async and decoupled) are forwarded to the server."""
    return str(request.param)


@pytest.fixture(scope="module")
def bls_repo(tmp_path_factory: pytest.TempPathFactory, bls_mode: str) -> Path:
    # one repository per mode: the held model keeps its state in files there
    return write_repo(tmp_path_factory.mktemp(f"bls-{bls_mode}") / "repo")


@pytest.fixture(scope="module")
def bls_server(bls_repo: Path, bls_mode: str) -> Iterator[RunningServer]:
    mode = f"--backend-config=python,execution-mode={bls_mode}"
    with run_server(bls_repo, mode) as server:
        yield server
