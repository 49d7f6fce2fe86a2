"""Triton's Vertex AI endpoint: its flags, the defaults the AIP_* environment gives
them, and the errors that stop tritonserver before or while it starts (exit code 1,
its words), against tritonx and, when $TRITONX_REFERENCE_CMD names it, the real
Triton 2.51; and the rules behind them, unit by unit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("tritonx._native", reason="core not built")

from cloudutil import VERTEX_ENV_KEYS as AIP_KEYS
from cloudutil import (
    launch_command,
    refused_at_start,
    write_model,
)
from serverutil import free_port, free_ports, server_env
from testmodels import ADD_SUB, ADD_SUB_PY

from tritonx.cli import UsageError, parse_args
from tritonx.errors import InvalidArgumentError
from tritonx.frontends.http_routes import resolve
from tritonx.frontends.vertex_ai import default_model, redirect_url

KINDS = ["tritonx", "reference"]
HEALTH = "/health"
PREDICT_PATTERN = "/v1/endpoints/[0-9]+/deployedModels/[0-9]+:predict"
ROUTES = {"AIP_HEALTH_ROUTE": HEALTH, "AIP_PREDICT_ROUTE": PREDICT_PATTERN}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models (no decoupled one: its stub outlives a reference that exits)."""
    root = tmp_path_factory.mktemp("vertex_two_models")
    write_model(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    second = ADD_SUB.replace('name: "add_sub"', 'name: "add_sub2"')
    write_model(root, "add_sub2", second, ADD_SUB_PY)
    return root


def _environment(env: dict[str, str]) -> dict[str, str]:
    """The server's environment: no AIP_* variable but those of ``env``."""
    full = server_env()
    for key in AIP_KEYS:
        full.pop(key, None)
    full.update(env)
    return full


def _start_failure(
    kind: str, repo: Path, env: dict[str, str], *args: str
) -> tuple[int, str]:
    """Run a server that must refuse to start; returns its exit code and output.
    The output goes to a file: the reference's python stubs, which outlive it a
    moment, would hold a pipe open."""
    command = launch_command(kind)
    names = ("http", "grpc", "metrics", "vertex-ai")
    ports = [
        f"--{name}-port={port}"
        for name, port in zip(names, free_ports(len(names)), strict=True)
        if f"--{name}-port" not in " ".join(args)
    ]
    log = repo.parent / f"{repo.name}-{kind}-{free_port()}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, f"--model-repository={repo}", *ports, *args],
            env=_environment(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            code = process.wait(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return code, log.read_text()


START_ERRORS: dict[str, tuple[dict[str, str], list[str], str]] = {
    "no-predict-route": (
        {"AIP_HEALTH_ROUTE": HEALTH},
        [],
        "API_PREDICT_ROUTE is not defined for Vertex AI endpoint",
    ),
    "no-health-route": (
        {"AIP_PREDICT_ROUTE": PREDICT_PATTERN},
        [],
        "AIP_HEALTH_ROUTE is not defined for Vertex AI endpoint",
    ),
    "two-models-no-default": (
        ROUTES,
        [],
        "Expect the model repository contains only a single model if default model "
        "is not specified",
    ),
    "default-not-loaded": (
        ROUTES,
        ["--vertex-ai-default-model=nope"],
        "Expect the default model 'nope' is loaded",
    ),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(START_ERRORS))
def test_start_errors(kind: str, case: str, repo: Path) -> None:
    env, args, message = START_ERRORS[case]
    code, log = _start_failure(
        kind,
        repo,
        env,
        "--allow-vertex-ai=true",
        *args,
    )
    assert code == 1
    assert f"failed to start Vertex AI service: Invalid argument - {message}" in log


# -- flags -----------------------------------------------------------------------------

FLAG_CASES: dict[str, tuple[dict[str, str], list[str], str]] = {
    "same-port": (
        {},
        ["--allow-vertex-ai=true", "--vertex-ai-port=8000", "--http-port=8000"],
        "The server cannot listen to HTTP requests and Vertex AI requests at the "
        "same address and port 0.0.0.0:8000",
    ),
    "port-from-environment": (
        {"AIP_HTTP_PORT": "8001"},
        ["--allow-vertex-ai=true", "--grpc-port=8001"],
        "The server cannot listen to GRPC requests and Vertex AI requests at the "
        "same address and port 0.0.0.0:8001",
    ),
    "flag-over-environment": (
        {"AIP_HTTP_PORT": "8001"},
        ["--allow-vertex-ai=true", "--vertex-ai-port=8002", "--metrics-port=8002"],
        "The server cannot listen to metrics requests and Vertex AI requests at the "
        "same address and port 0.0.0.0:8002",
    ),
    "outside-sagemaker-range": (
        {},
        [
            "--allow-sagemaker=true",
            "--sagemaker-safe-port-range=8000-8002",
            "--http-port=8000",
            "--allow-vertex-ai=true",
            "--vertex-ai-port=9000",
        ],
        "The server cannot listen to Vertex AI requests at port 9000, allowed port "
        "range is [8000, 8002]",
    ),
    "bad-environment-port": (
        {"AIP_HTTP_PORT": "abc"},
        ["--vertex-ai-port=9000"],
        "Invalid option value. Got abc",
    ),
    "bad-bool": (
        {},
        ["--allow-vertex-ai=yes"],
        'Bad option: "--allow-vertex-ai".\ninvalid value for bool option: yes',
    ),
    "bad-port": (
        {},
        ["--vertex-ai-port=abc"],
        'Bad option: "--vertex-ai-port".\nInvalid option value. Got abc',
    ),
    "bad-thread-count": (
        {},
        ["--vertex-ai-thread-count=x"],
        'Bad option: "--vertex-ai-thread-count".\nInvalid option value. Got x',
    ),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_flag_errors(kind: str, case: str, tmp_path: Path) -> None:
    """Refused before anything starts, exit code 1, in tritonserver's words. (A
    repository that does not exist makes a wrongly accepted command fail fast.)"""
    env, args, message = FLAG_CASES[case]
    stderr = refused_at_start(kind, tmp_path / "missing", args, _environment(env))
    assert message in stderr, stderr


def _parse(env: dict[str, str], *args: str) -> object:
    with pytest.MonkeyPatch.context() as patch:
        for key in AIP_KEYS:
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        options, _, _ = parse_args(list(args))
    return options


def test_flags_and_environment_reach_the_server_options() -> None:
    options = _parse(
        {},
        "--model-repository=/m",
        "--allow-vertex-ai=on",
        "--vertex-ai-port=9123",
        "--vertex-ai-thread-count=2",
        "--vertex-ai-default-model=m1",
    )
    assert (
        options.allow_vertex_ai,  # type: ignore[attr-defined]
        options.vertex_ai_port,  # type: ignore[attr-defined]
        options.vertex_ai_default_model,  # type: ignore[attr-defined]
    ) == (True, 9123, "m1")
    defaults = _parse({}, "--model-repository=/m")
    assert (
        defaults.allow_vertex_ai,  # type: ignore[attr-defined]
        defaults.vertex_ai_port,  # type: ignore[attr-defined]
        defaults.allow_http,  # type: ignore[attr-defined]
        defaults.allow_grpc,  # type: ignore[attr-defined]
    ) == (False, 8080, True, True)
    aip = _parse(
        {"AIP_MODE": "PREDICTION", "AIP_HTTP_PORT": "7080"}, "--model-store=/m"
    )
    assert (
        aip.allow_vertex_ai,  # type: ignore[attr-defined]
        aip.vertex_ai_port,  # type: ignore[attr-defined]
        aip.allow_http,  # type: ignore[attr-defined]
        aip.allow_grpc,  # type: ignore[attr-defined]
    ) == (True, 7080, False, False)
    # Flags win over the environment's defaults.
    chosen = _parse(
        {"AIP_MODE": "PREDICTION"},
        "--model-store=/m",
        "--allow-http=true",
        "--allow-vertex-ai=false",
    )
    assert chosen.allow_http and not chosen.allow_vertex_ai  # type: ignore[attr-defined]


def test_storage_uri_is_the_default_repository() -> None:
    local = _parse({"AIP_STORAGE_URI": "/srv/models"})
    assert local.model_repositories == [Path("/srv/models")]  # type: ignore[attr-defined]
    given = _parse({"AIP_STORAGE_URI": "/srv/models"}, "--model-repository=/m")
    assert given.model_repositories == [Path("/m")]  # type: ignore[attr-defined]
    # Vertex AI hands over its model as a gs:// location: served from there.
    cloud = _parse({"AIP_STORAGE_URI": "gs://bucket/models"})
    assert cloud.model_repositories == ["gs://bucket/models"]  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="names storage tritonx cannot read"):
        _parse({"AIP_STORAGE_URI": "ftp://host/models"})
    with pytest.raises(UsageError, match="--model-repository must be specified"):
        _parse({})


def test_default_model_rule() -> None:
    one = [{"name": "a", "version": "1", "state": "READY"}]
    two_versions = [*one, {"name": "a", "version": "2", "state": "READY"}]
    assert default_model("", one) == "a"
    assert default_model("a", two_versions) == "a"
    with pytest.raises(InvalidArgumentError, match="only a single model"):
        default_model("", two_versions)  # tritonserver counts versions
    with pytest.raises(InvalidArgumentError, match="only a single model"):
        default_model("", [])
    with pytest.raises(InvalidArgumentError, match="'b' is loaded"):
        default_model("b", one)


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (b"v2/models/a/infer", b"/v2/models/a/infer"),
        (b"v2/models/a?b/ready", b"/v2/models/a%3Fb/ready"),
        (b"v2/models/a%20b", b"/v2/models/a%2520b"),
        (b"v2#x", b"/v2%23x"),
    ],
)
def test_redirect_value_is_taken_as_it_is(value: bytes, url: bytes) -> None:
    assert redirect_url(value) == url
    if b"models/" in value:
        name = value.split(b"/")[2].decode()
        assert resolve(url).model == name
