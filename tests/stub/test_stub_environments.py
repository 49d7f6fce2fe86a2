"""Python models in their own environments (EXECUTION_ENV_PATH) through the wire:
a venv, a packed archive beside the model, an archive on a read-only shelf, and
Triton's text for an environment that is missing or is none."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from serverutil import run_either, run_server
from stubprocess import infer_grpc, infer_http, write_model
from testmodels import venv_with_onlyinenv

ENV_MODEL = """
import onlyinenv
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", np.full((1, 4), onlyinenv.VALUE, np.float32)),
                pb_utils.Tensor("OUTPUT1", np.array([[b"a", b"b"]], dtype=object)),
            ])
            for r in requests
        ]
"""


def _env_path(value: str) -> str:
    return f'parameters {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{value}" }} }}\n'


def test_model_in_its_own_environment(tmp_path: Path) -> None:
    """EXECUTION_ENV_PATH names a venv whose package the server's environment
    lacks; the model imports it in its stub."""
    env = tmp_path / "env"
    venv_with_onlyinenv(env, 42.0)
    repo = tmp_path / "repo"
    write_model(repo, "envmodel", _env_path(str(env)), model=ENV_MODEL)
    with run_server(repo) as server:
        result = infer_grpc(server, "envmodel")
        assert result.as_numpy("OUTPUT0").tolist() == [[42.0] * 4]


def test_model_in_a_packed_environment(tmp_path: Path) -> None:
    """EXECUTION_ENV_PATH names a packed environment beside the model, as Triton's
    docs show for conda-pack archives ("$$TRITON_MODEL_DIRECTORY/env.tar.gz"): it
    is unpacked once, and the stub runs its interpreter and imports its packages."""
    env = tmp_path / "env"
    module = venv_with_onlyinenv(env, 7.0)
    repo = tmp_path / "repo"
    path = _env_path("$$TRITON_MODEL_DIRECTORY/env.tar.gz")
    write_model(repo, "packed", path, model=ENV_MODEL)
    with tarfile.open(repo / "packed" / "env.tar.gz", "w:gz") as archive:
        archive.add(env, arcname=".")  # conda-pack's layout: bin/, lib/ at the top
    module.unlink()  # only the archive's copy can answer
    with run_server(repo) as server:
        result = infer_http(server, "packed")
        assert result.as_numpy("OUTPUT0").tolist() == [[7.0] * 4]
    assert (repo / "packed" / "env.unpacked" / "bin" / "python3").exists()


def test_packed_environment_in_a_read_only_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive whose directory cannot be written (a read-only repository mount)
    is unpacked in the temporary space instead, nothing written beside it.
    (Tests run as root here, so the directory's mode cannot show it: the check
    itself is made to say read-only.)"""
    from tritonx.backends.stub import environment

    env = tmp_path / "env"
    venv_with_onlyinenv(env, 3.0)
    shelf = tmp_path / "read-only"
    shelf.mkdir()
    archive = shelf / "env.tar.gz"
    with tarfile.open(archive, "w:gz") as packed:
        packed.add(env, arcname=".")
    monkeypatch.setattr(environment.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        environment.os,
        "access",
        lambda path, mode: False if Path(path) == shelf else real_access(path, mode),
    )
    python = environment.interpreter(str(archive), tmp_path, "packed")
    assert python.is_file()
    assert python.is_relative_to(tmp_path / "tmp" / "tritonx-envs")
    assert [p.name for p in shelf.iterdir()] == ["env.tar.gz"]


@pytest.mark.parametrize("server_kind", ["tritonx", "reference"])
def test_a_missing_environment_fails_the_load_with_tritons_text(
    tmp_path: Path, server_kind: str
) -> None:
    """EXECUTION_ENV_PATH naming nothing, or a directory that is no environment: the
    model is UNAVAILABLE with the reason Triton gives, word for word."""
    repo = tmp_path / "repo"
    write_model(repo, "missing", _env_path("$$TRITON_MODEL_DIRECTORY/missing.tar.gz"))
    write_model(repo, "notenv", _env_path("$$TRITON_MODEL_DIRECTORY/notenv"))
    (repo / "notenv" / "notenv" / "bin").mkdir(parents=True)
    args = ("--exit-on-error=false", "--strict-readiness=false")
    with (
        run_either(server_kind, repo, *args) as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):
        reasons = {e["name"]: e["reason"] for e in client.get_model_repository_index()}
    assert reasons == {
        "missing": "Internal: Failed to get the canonical path for "
        f"{repo}/missing/missing.tar.gz.",
        "notenv": f"Internal: Path {repo}/notenv/notenv/bin/activate does not exist. "
        "The Python environment should contain an 'activate' script.",
    }
