"""Behaviours from Triton's QA directory L0_lifecycle not covered elsewhere, as
differential tests: each expectation is checked on tritonx and, when
TRITONX_REFERENCE_CMD is given, on Triton 2.51 started the same way.

* A repository that does not exist, with --exit-on-error=false: the server keeps
  running, neither live nor ready, still answers its metadata and refuses model
  queries with "Server not ready" (test_parse_error_noexit, alone and beside a
  good repository; also with no --model-repository at all).
* A --load-model naming a model in no repository stops the start-up.
* --model-config-name: a configs/<name>.pbtxt added to a model in poll mode is
  what the model is loaded with next, and deleting it goes back to config.pbtxt
  (test_add_custom_config / test_delete_custom_config).
* An explicit load of a model already loaded builds only the versions whose files
  changed or that were not loaded (test_load_new_model_version).

Covered elsewhere: version directories and policies (test_scanning.py,
test_lifecycle.py), poll-mode changes (tests/pollmode), load/unload control and
its refusals (tests/frontends/test_http_control_differential.py), reloads under
traffic (test_reload.py), load retries (test_load_retry.py), overrides
(test_warmup_and_overrides.py), port collisions (tests/frontends/
test_reuse_port.py), shutdown (tests/test_server_lifecycle.py). Left out: GPU
memory limits, load-speed and stress runs, and non-Python backends."""

from __future__ import annotations

import py_compile
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import (
    free_ports,
    reference_command,
    run_either,
    server_command,
    server_env,
    terminate,
)
from tritonclient.utils import InferenceServerException

# Leaves "init-<version>" (one line per initialize) in the directory its config's
# "markers" parameter names (outside the model directory: a file written there
# would change the timestamp every version shares).
MODEL = """
import json
import os

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        markers = config["parameters"]["markers"]["string_value"]
        path = os.path.join(markers, "init-" + args["model_version"])
        with open(path, "a") as f:
            f.write("x\\n")

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "OUTPUT0",
                    pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
                for r in requests]
"""


def _config(name: str, extra: str = "", max_batch_size: int = 8) -> str:
    return f"""
name: "{name}"
parameters {{ key: "markers" value: {{ string_value: "{MARKERS}" }} }}
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU }} ]
{extra}
"""


# Set per test by the markers fixture (autouse).
MARKERS = ""


@pytest.fixture(autouse=True)
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    monkeypatch.setattr(f"{__name__}.MARKERS", str(path))
    return path


def _write(root: Path, name: str, versions: list[int], extra: str = "") -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(_config(name, extra))
    for version in versions:
        _add_version(root / name, version)
    return root / name


def _add_version(model_dir: Path, version: int) -> None:
    (model_dir / str(version)).mkdir()
    _write_model(model_dir / str(version) / "model.py", MODEL)


def _write_model(path: Path, text: str) -> None:
    """model.py and its bytecode beside it, up to date: Triton 2.51's python stub
    writes __pycache__ into the version directory during the load whatever
    PYTHONDONTWRITEBYTECODE says, a change of the version's files that the next
    load would see (tritonx, with that variable set, writes none)."""
    path.write_text(text)
    py_compile.compile(str(path), doraise=True)


def _inits(versions: list[int]) -> list[int]:
    """How often each version was initialized."""
    counts = []
    for version in versions:
        path = Path(MARKERS) / f"init-{version}"
        counts.append(len(path.read_text().splitlines()) if path.exists() else 0)
    return counts


def _ready(url: str, model: str, versions: list[str]) -> list[bool]:
    with httpclient.InferenceServerClient(url) as client:
        return [client.is_model_ready(model, v) for v in versions]


@dataclass
class Started:
    process: subprocess.Popen[str]
    http: int
    grpc: int
    log: Path


@contextmanager
def _start(
    kind: str, tmp_path: Path, repos: list[str], *args: str
) -> Iterator[Started]:
    """A server of ``kind`` on its own ports, logging to a file, whatever state
    it reaches (run_either waits for readiness)."""
    http, grpc, metrics = free_ports(3)
    ports = [f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}"]
    if kind == "reference":
        command = reference_command()
        if command is None:
            pytest.skip("TRITONX_REFERENCE_CMD is not set")
        full = [*command, *(f"--model-repository={r}" for r in repos), *ports]
        full += args
    else:
        full = server_command(repos, [*ports, *args])
    log = tmp_path / f"{kind}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            full, env=server_env(), stdout=out, stderr=subprocess.STDOUT, text=True
        )
    try:
        yield Started(process, http, grpc, log)
    finally:
        terminate(process)


def _input(client_module: Any) -> Any:
    """An INPUT0 of the test model for tritonclient's http or grpc module."""
    tensor = client_module.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    return tensor


def _answers(url: str) -> bool:
    try:
        with httpclient.InferenceServerClient(url) as client:
            client.get_server_metadata()
        return True
    except Exception:
        return False


@pytest.mark.parametrize("kind", ["tritonx", "tritonx-python-http", "reference"])
@pytest.mark.parametrize("strict", ["true", "false"])
@pytest.mark.parametrize("repositories", ["none", "alone", "with-good"])
def test_missing_repository_without_exit_on_error(
    kind: str, strict: str, repositories: str, tmp_path: Path
) -> None:
    """The server failed to initialize but keeps running: neither live nor ready
    whatever --strict-readiness says, its metadata still answered, and every
    model query refused with "Server not ready"."""
    good = tmp_path / "good"
    _write(good, "m", [1])
    repos = {
        "none": [],
        "alone": [str(tmp_path / "xyzx")],
        "with-good": [str(tmp_path / "xyzx"), str(good)],
    }[repositories]
    args = ("--exit-on-error=false", f"--strict-readiness={strict}")
    if kind == "tritonx-python-http":  # the default engine answers live in C++
        kind, args = "tritonx", (*args, "--http-engine=python")
    with _start(kind, tmp_path, repos, *args) as started:
        http_url = f"127.0.0.1:{started.http}"
        wait_until(
            lambda: started.process.poll() is not None or _answers(http_url),
            "the server to answer",
            timeout=120,
        )
        assert started.process.poll() is None, started.log.read_text()
        with httpclient.InferenceServerClient(http_url) as http:
            assert not http.is_server_live()
            assert not http.is_server_ready()
            assert http.get_server_metadata()["name"] == "triton"
            assert not http.is_model_ready("m")
            with pytest.raises(InferenceServerException, match="Server not ready"):
                http.get_model_repository_index()
            with pytest.raises(InferenceServerException, match="Server not ready"):
                http.infer("m", [_input(httpclient)])
        with grpcclient.InferenceServerClient(f"127.0.0.1:{started.grpc}") as grpc:
            assert not grpc.is_server_live()
            assert not grpc.is_server_ready()
            assert grpc.get_server_metadata().name == "triton"
            with pytest.raises(InferenceServerException, match="Server not ready"):
                grpc.is_model_ready("m")
            with pytest.raises(InferenceServerException, match="Server not ready"):
                grpc.get_model_repository_index()
            with pytest.raises(InferenceServerException, match="Server not ready"):
                grpc.infer("m", [_input(grpcclient)])
        error = "failed to stat file" if repos else "--model-repository must be"
        assert error in started.log.read_text()


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_startup_model_in_no_repository(kind: str, tmp_path: Path) -> None:
    good = tmp_path / "good"
    _write(good, "m", [1])
    args = ("--model-control-mode=explicit", "--load-model=nosuch")
    with _start(kind, tmp_path, [str(good)], *args) as started:
        wait_until(
            lambda: started.process.poll() is not None, "the server to exit", 120
        )
        assert started.process.returncode != 0
    log = started.log.read_text()
    assert "'nosuch'" in log, log
    assert "model not found in any model repository" in log


CUSTOM_POLICY = "version_policy: { specific: { versions: [ 2 ] } }"


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_custom_config_added_then_deleted_in_poll_mode(
    kind: str, tmp_path: Path
) -> None:
    """With --model-config-name=custom, configs/custom.pbtxt wins over
    config.pbtxt once it appears, and config.pbtxt is used again once it goes."""
    repo = tmp_path / "repo"
    model_dir = _write(
        repo, "m", [1, 2, 3], "version_policy: { specific: { versions: [ 1, 3 ] } }"
    )
    (model_dir / "configs").mkdir()
    args = (
        "--model-control-mode=poll",
        "--repository-poll-secs=1",
        "--model-config-name=custom",
    )
    with run_either(kind, repo, *args) as server:
        url = server.http_url
        assert _ready(url, "m", ["1", "2", "3"]) == [True, False, True]
        custom = _config("m", CUSTOM_POLICY, max_batch_size=2)
        (model_dir / "configs" / "custom.pbtxt").write_text(custom)
        wait_until(
            lambda: _ready(url, "m", ["1", "2", "3"]) == [False, True, False],
            "the custom config to be loaded",
        )
        with httpclient.InferenceServerClient(url) as client:
            assert client.get_model_config("m")["max_batch_size"] == 2
        (model_dir / "configs" / "custom.pbtxt").unlink()
        wait_until(
            lambda: _ready(url, "m", ["1", "2", "3"]) == [True, False, True],
            "config.pbtxt to be loaded again",
        )
        with httpclient.InferenceServerClient(url) as client:
            assert client.get_model_config("m")["max_batch_size"] == 8


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_custom_config_name_on_explicit_load(kind: str, tmp_path: Path) -> None:
    """A model without configs/<name>.pbtxt uses config.pbtxt; a load after the
    custom config appears uses it."""
    repo = tmp_path / "repo"
    model_dir = _write(repo, "m", [1, 2])
    args = ("--model-control-mode=explicit", "--model-config-name=custom")
    with (
        run_either(kind, repo, *args) as server,
        httpclient.InferenceServerClient(server.http_url) as client,
    ):
        client.load_model("m")
        assert client.get_model_config("m")["max_batch_size"] == 8
        (model_dir / "configs").mkdir()
        custom = _config("m", "version_policy: { all: {} }", max_batch_size=2)
        (model_dir / "configs" / "custom.pbtxt").write_text(custom)
        client.load_model("m")
        assert client.get_model_config("m")["max_batch_size"] == 2
        assert [client.is_model_ready("m", v) for v in ("1", "2")] == [True, True]


def _new_version_scenario(kind: str, tmp_path: Path) -> list[list[int]]:
    """L0_lifecycle's test_load_new_model_version: the initializations of
    versions 1-4 after each explicit load."""
    repo = tmp_path / "repo"
    model_dir = _write(
        repo, "m", [1, 2, 3], "version_policy: { specific: { versions: [ 1, 2 ] } }"
    )
    config = model_dir / "config.pbtxt"
    seen = []
    args = ("--model-control-mode=explicit", "--load-model=*")
    with run_either(kind, repo, *args) as server:

        def reload(policy: str) -> None:
            text = _config("m", f"version_policy: {{ specific: {{ {policy} }} }}")
            config.write_text(text)
            with httpclient.InferenceServerClient(server.http_url) as client:
                client.load_model("m")

        seen.append(_inits([1, 2, 3, 4]))
        # Version 2's file changes, version 4 is new, 3 was there but not loaded.
        _write_model(model_dir / "2" / "model.py", MODEL + "\n")
        _add_version(model_dir, 4)
        reload("versions: [ 1, 2, 3, 4 ]")
        seen.append(_inits([1, 2, 3, 4]))
        # A file every version shares changes: all are loaded again.
        (model_dir / "dependency.py").write_text("")
        reload("versions: [ 1, 2, 3, 4 ]")
        seen.append(_inits([1, 2, 3, 4]))
        # Only version 4 stays; then version 1 comes back.
        reload("versions: [ 4 ]")
        seen.append(_inits([1, 2, 3, 4]))
        reload("versions: [ 1, 4 ]")
        seen.append(_inits([1, 2, 3, 4]))
        assert _ready(server.http_url, "m", ["1", "2", "3", "4"]) == [
            True,
            False,
            False,
            True,
        ]
    return seen


@pytest.mark.parametrize("kind", ["tritonx", "reference"])
def test_explicit_load_rebuilds_only_changed_versions(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Importing model.py must not write __pycache__ into the version directory:
    # that would change the version's timestamp during its load (see
    # _write_model for the reference).
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    # Initializations of versions 1-4 after each step, as L0_lifecycle expects:
    # a version still selected whose files did not change is kept (1 at the first
    # reload, 4 when the policy goes from [1-4] to [4] and then to [1, 4]); a
    # version whose files changed (2), a new one (4) or one not loaded before (3)
    # is built; a change of a file every version shares builds them all.
    assert _new_version_scenario(kind, tmp_path) == [
        [1, 1, 0, 0],
        [1, 2, 1, 1],
        [2, 3, 2, 2],
        [2, 3, 2, 2],
        [3, 3, 2, 2],
    ]
