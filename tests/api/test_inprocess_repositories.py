"""tritonx.api.Server's repository calls: register_model_repository /
unregister_model_repository (EXPLICIT mode, with name mappings) and
poll_model_repository (POLL mode, with no timer, so only the call rescans), with
Triton's errors in the other modes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cloudutil import write_model
from testmodels import ADD_SUB, ADD_SUB_PY

import tritonx.api as api


def _add_sub(server: api.Server, name: str) -> np.ndarray:
    a = np.arange(4, dtype=np.float32)
    inputs = {"INPUT0": a, "INPUT1": np.ones(4, np.float32)}
    (response,) = list(server.model(name).infer(inputs=inputs))
    return np.from_dlpack(response.outputs["OUTPUT0"])


@pytest.fixture
def explicit(tmp_path: Path) -> Iterator[api.Server]:
    (tmp_path / "startup").mkdir()
    server = api.Server(
        model_repository=str(tmp_path / "startup"),
        model_control_mode=api.ModelControlMode.EXPLICIT,
    ).start()
    yield server
    server.stop()


def test_register_with_mapping_then_unregister(
    explicit: api.Server, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    write_model(extra, "add_sub", ADD_SUB, ADD_SUB_PY)
    # The mapped directory is reached under its new name only.
    explicit.register_model_repository(str(extra), {"add_sub": "renamed"})
    names = {name for name, _ in explicit.models()}
    assert "renamed" in names and "add_sub" not in names
    explicit.load("renamed")
    assert explicit.model("renamed").ready()
    assert _add_sub(explicit, "renamed")[1] == 2.0
    assert explicit.model("renamed").config()["name"] == "renamed"
    with pytest.raises(api.AlreadyExistsError, match="has already been registered"):
        explicit.register_model_repository(str(extra))
    with pytest.raises(api.InvalidArgumentError, match="repository not found"):
        explicit.register_model_repository(str(tmp_path / "missing"))
    explicit.unregister_model_repository(str(extra))
    # Loaded models stay loaded; the repository's entries leave the index.
    assert explicit.model("renamed").ready()
    assert "renamed" not in {name for name, _ in explicit.models()}
    with pytest.raises(api.InvalidArgumentError, match="repository not found"):
        explicit.unregister_model_repository(str(extra))


def test_registration_needs_explicit_mode_and_poll_needs_poll_mode(
    tmp_path: Path,
) -> None:
    write_model(tmp_path / "repo", "add_sub", ADD_SUB, ADD_SUB_PY)
    server = api.Server(model_repository=str(tmp_path / "repo")).start()
    try:
        with pytest.raises(api.UnsupportedError, match="not allowed if model control"):
            server.register_model_repository(str(tmp_path / "repo"))
        with pytest.raises(api.UnsupportedError, match="unregistration"):
            server.unregister_model_repository(str(tmp_path / "repo"))
        with pytest.raises(api.UnavailableError, match="polling is disabled"):
            server.poll_model_repository()
    finally:
        server.stop()
    with pytest.raises(api.InvalidArgumentError, match="Server not started"):
        server.poll_model_repository()


def test_poll_loads_new_changed_and_removed_models(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    server = api.Server(
        model_repository=str(repo),
        model_control_mode=api.ModelControlMode.POLL,
        repository_poll_secs=0,  # no timer: only the call rescans
    ).start()
    try:
        assert not list(server.models())
        write_model(repo, "add_sub", ADD_SUB, ADD_SUB_PY)
        server.poll_model_repository()
        assert server.model("add_sub").ready()
        assert _add_sub(server, "add_sub")[0] == 1.0
        # A changed model is reloaded: a second version appears.
        shutil.copytree(repo / "add_sub" / "1", repo / "add_sub" / "2")
        config = repo / "add_sub" / "config.pbtxt"
        config.write_text(config.read_text() + "version_policy: { all: {} }\n")
        server.poll_model_repository()
        assert server.model("add_sub", 2).ready()
        assert server.model("add_sub", 1).ready()
        shutil.rmtree(repo / "add_sub")
        server.poll_model_repository()
        assert not server.model("add_sub").ready()
    finally:
        server.stop()
