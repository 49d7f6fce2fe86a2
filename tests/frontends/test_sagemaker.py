"""Triton's SageMaker endpoint (``--allow-sagemaker``) through the wire: /ping,
/invocations with JSON and SageMaker's binary content type, and the flags (the
multi-model routes are in test_sagemaker_mme.py). Each table states Triton 2.51's
answer (status, content type, body) and runs against tritonx and, when
$TRITONX_REFERENCE_CMD names it, the real Triton (python-backend models only)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonx._native", reason="core not built")

from cloudutil import (
    BINARY_ANSWER,
    BINARY_ANSWER_HEADER,
    BINARY_HEADER,
    BINARY_REQUEST,
    BROKEN,
    BROKEN_PY,
    DEC_CONFIG,
    DECOUPLED,
    JSON,
    JSON_ANSWER,
    JSON_REQUEST,
    NOT_ALLOWED,
    PARSE_ERROR,
    RAW_TWO_INPUTS,
    TEXT,
    call,
    check_add_sub_answer,
    refused_at_start,
    sagemaker,
    tritonclient_binary_request,
)
from cloudutil import SAGEMAKER_MIME as MIME
from cloudutil import check_reply as _check
from cloudutil import error_json as _error
from cloudutil import write_model as _write
from serverutil import free_port, server_env
from testmodels import ADD_SUB, ADD_SUB_PY, REPEAT_MODEL

from tritonx.errors import InvalidArgumentError
from tritonx.frontends.sagemaker import (
    c_atoi,
    header_length,
)

KINDS = ["tritonx", "reference"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sagemaker_repo")
    _write(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    _write(root, "dec", DEC_CONFIG, REPEAT_MODEL)
    return root


@pytest.fixture(scope="module")
def broken_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sagemaker_broken")
    _write(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    _write(root, "broken", BROKEN, BROKEN_PY)
    _write(root, "dec", DEC_CONFIG, REPEAT_MODEL)
    return root


SIZE = len(BINARY_REQUEST)
# (method, path, body, headers) -> (status, content type, body); a body ending in
# "..." is a prefix (the JSON parser's own words differ: Python's json in tritonx's
# Python engine, RapidJSON in Triton).
CASES: dict[str, tuple[str, str, bytes, dict[str, str], int, str, bytes]] = {
    "ping": ("GET", "/ping", b"", {}, 200, TEXT, b""),
    "ping-query": ("GET", "/ping?probe=1", b"", {}, 200, TEXT, b""),
    "ping-post": ("POST", "/ping", b"", {}, 405, TEXT, NOT_ALLOWED),
    "ping-slash": ("GET", "/ping/", b"", {}, 400, TEXT, b""),
    "kserve-path": ("GET", "/v2/health/ready", b"", {}, 400, TEXT, b""),
    "unknown-path": ("POST", "/predict", JSON_REQUEST, {}, 400, TEXT, b""),
    "json": (
        "POST",
        "/invocations",
        JSON_REQUEST,
        {"Content-Type": "application/json"},
        200,
        JSON,
        JSON_ANSWER,
    ),
    "json-no-type": ("POST", "/invocations", JSON_REQUEST, {}, 200, JSON, JSON_ANSWER),
    "kserve-header-ignored": (
        "POST",
        "/invocations",
        JSON_REQUEST,
        {"Inference-Header-Content-Length": "7"},
        200,
        JSON,
        JSON_ANSWER,
    ),
    "accept-encoding-ignored": (
        "POST",
        "/invocations",
        JSON_REQUEST,
        {"Accept-Encoding": "gzip"},
        200,
        JSON,
        JSON_ANSWER,
    ),
    "get-invocations": ("GET", "/invocations", b"", {}, 405, TEXT, NOT_ALLOWED),
    "binary": (
        "POST",
        "/invocations",
        BINARY_REQUEST,
        {"Content-Type": MIME + str(len(BINARY_HEADER))},
        200,
        MIME + str(len(BINARY_ANSWER_HEADER)),
        BINARY_ANSWER,
    ),
    "binary-mime-not-first": (
        "POST",
        "/invocations",
        BINARY_REQUEST,
        {"Content-Type": f"text/x;{MIME}{len(BINARY_HEADER)}"},
        400,
        TEXT,
        _error(
            f"expect MIME type for binary data starts with '{MIME}', got: "
            f"text/x;{MIME}{len(BINARY_HEADER)}"
        ),
    ),
    "binary-size-negative": (
        "POST",
        "/invocations",
        BINARY_REQUEST,
        {"Content-Type": MIME + "-3"},
        400,
        TEXT,
        _error(f"inference header size should be in range (0, {SIZE}), got: -3"),
    ),
    "binary-size-too-big": (
        "POST",
        "/invocations",
        BINARY_REQUEST,
        {"Content-Type": MIME + "99999"},
        400,
        TEXT,
        _error(f"inference header size should be in range (0, {SIZE}), got: 99999"),
    ),
    # atoi: no digits read as 0, a raw body; digits then junk read as the digits.
    "binary-size-not-a-number": (
        "POST",
        "/invocations",
        BINARY_REQUEST,
        {"Content-Type": MIME + "abc"},
        400,
        JSON,
        RAW_TWO_INPUTS,
    ),
    "binary-size-leading-digits": (
        "POST",
        "/invocations",
        BINARY_REQUEST,
        {"Content-Type": MIME + " 12x"},
        500,
        JSON,
        PARSE_ERROR + b"...",
    ),
    "empty-body-is-raw": ("POST", "/invocations", b"", {}, 400, JSON, RAW_TWO_INPUTS),
    "bad-json": ("POST", "/invocations", b"{bad", {}, 500, JSON, PARSE_ERROR + b"..."),
    "gzip-not-inflated": (
        "POST",
        "/invocations",
        gzip.compress(JSON_REQUEST),
        {"Content-Encoding": "gzip"},
        500,
        JSON,
        PARSE_ERROR + b"...",
    ),
    "models": ("GET", "/models", b"", {}, 200, TEXT, b'{"models":[]}'),
    "models-slash": ("GET", "/models/", b"", {}, 200, TEXT, b'{"models":[]}'),
    "model-get": ("GET", "/models/foo", b"", {}, 404, TEXT, b""),
    "model-get-invoke": ("GET", "/models/foo/invoke", b"", {}, 404, TEXT, b""),
    "model-invoke": (
        "POST",
        "/models/add_sub/invoke",
        JSON_REQUEST,
        {},
        404,
        TEXT,
        b"",
    ),
    "model-delete": ("DELETE", "/models/add_sub", b"", {}, 404, TEXT, b""),
    "models-delete": ("DELETE", "/models", b"", {}, 404, TEXT, b""),
    "model-put": ("PUT", "/models/foo", b"", {}, 400, TEXT, b""),
    "model-other-action": ("POST", "/models/foo/bar", b"", {}, 400, TEXT, b""),
    "model-load-not-explicit": (
        "POST",
        "/models",
        json.dumps(
            {"model_name": "m1", "url": "/opt/ml/models/nonexistent/model"}
        ).encode(),
        {},
        400,
        TEXT,
        _error(
            "repository registration is not allowed if model control mode is not "
            "EXPLICIT"
        ),
    ),
}


@pytest.fixture(scope="module", params=KINDS)
def single_model(request: pytest.FixtureRequest, repo: Path) -> Iterator[int]:
    env = {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "add_sub"}
    with sagemaker(request.param, repo, env) as port:
        yield port


@pytest.mark.parametrize("case", list(CASES))
def test_single_model_endpoint(single_model: int, case: str) -> None:
    method, path, body, headers, status, content_type, answer = CASES[case]
    _check(
        call(single_model, method, path, body, headers), status, content_type, answer
    )


def test_tritonclient_binary_round_trip(single_model: int) -> None:
    """The way Triton's own SageMaker tests build a request: tritonclient's
    generate_request_body, its size in the SageMaker content type, and
    parse_response_body on the answer."""
    body, size = tritonclient_binary_request()
    reply = call(
        single_model, "POST", "/invocations", body, {"Content-Type": MIME + str(size)}
    )
    assert reply.status == 200
    assert reply.content_type.startswith(MIME)
    check_add_sub_answer(reply.body, int(reply.content_type[len(MIME) :]))


@pytest.mark.parametrize("kind", KINDS)
def test_decoupled_default_model_not_ready_server(kind: str, broken_repo: Path) -> None:
    """A model failed to load: /ping in "ready" mode says 400; a decoupled default
    model is refused before the body is read (text/plain, 501)."""
    env = {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "dec"}
    with sagemaker(
        kind, broken_repo, env, "--exit-on-error=false", ready=False
    ) as port:
        _check(call(port, "GET", "/ping"), 400, TEXT, b"")
        _check(call(port, "POST", "/invocations", JSON_REQUEST), 501, TEXT, DECOUPLED)


@pytest.mark.parametrize("kind", KINDS)
def test_live_ping_and_unset_model(kind: str, broken_repo: Path) -> None:
    """SAGEMAKER_TRITON_PING_MODE=live answers 200 though a model failed; without
    SAGEMAKER_TRITON_DEFAULT_MODEL_NAME /invocations asks for Triton's placeholder."""
    env = {"SAGEMAKER_TRITON_PING_MODE": "live"}
    with sagemaker(
        kind, broken_repo, env, "--exit-on-error=false", ready=False
    ) as port:
        _check(call(port, "GET", "/ping"), 200, TEXT, b"")
        unknown = _error(
            "Request for unknown model: "
            "'unspecified_SAGEMAKER_TRITON_DEFAULT_MODEL_NAME' is not found"
        )
        _check(call(port, "POST", "/invocations", JSON_REQUEST), 404, TEXT, unknown)


@pytest.mark.parametrize("kind", ["generate", "generate_stream", "other"])
def test_inference_type_other_than_infer_refused(kind: str, repo: Path) -> None:
    """tritonx's SageMaker listener serves infer only (generate lives in the native
    HTTP engine); Triton 2.51 does not read the variable."""
    env = server_env({"SAGEMAKER_TRITON_INFERENCE_TYPE": kind})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonx",
            f"--model-repository={repo}",
            "--allow-sagemaker=true",
            f"--sagemaker-port={free_port()}",
            "--http-port=0",
            "--grpc-port=0",
            "--metrics-port=0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "SAGEMAKER_TRITON_INFERENCE_TYPE" in done.stderr + done.stdout


# -- flags -----------------------------------------------------------------------------

FLAG_CASES: dict[str, tuple[list[str], str]] = {
    "range-without-dash": (
        ["--sagemaker-safe-port-range=8000"],
        'Bad option: "--sagemaker-safe-port-range".\nCannot parse pair option due '
        "to incorrect number of inputs.--<pair option> argument requires format "
        "<first>-<second>. Found: 8000",
    ),
    "range-not-a-number": (
        ["--sagemaker-safe-port-range=abc-9000"],
        'Bad option: "--sagemaker-safe-port-range".\nInvalid option value. Got abc',
    ),
    "port-outside-range": (
        [
            "--allow-sagemaker=true",
            "--sagemaker-safe-port-range=8000-9000",
            "--http-port=7000",
        ],
        "The server cannot listen to HTTP requests at port 7000, allowed port range "
        "is [8000, 9000]",
    ),
    "same-port": (
        ["--allow-sagemaker=true", "--sagemaker-port=8000"],
        "The server cannot listen to HTTP requests and SageMaker requests at the "
        "same address and port 0.0.0.0:8000",
    ),
    "bad-bool": (
        ["--allow-sagemaker=yes"],
        'Bad option: "--allow-sagemaker".\ninvalid value for bool option: yes',
    ),
    "bad-port": (
        ["--sagemaker-port=abc"],
        'Bad option: "--sagemaker-port".\nInvalid option value. Got abc',
    ),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_flag_errors(kind: str, case: str, tmp_path: Path) -> None:
    """Refused before anything starts, exit code 1, in tritonserver's words. (A
    repository that does not exist makes a wrongly accepted command fail fast.)"""
    args, message = FLAG_CASES[case]
    stderr = refused_at_start(kind, tmp_path / "missing", args, server_env())
    assert message in stderr, stderr


def test_flags_reach_the_server_options() -> None:
    from tritonx.cli import parse_args

    options, _, _ = parse_args(
        [
            "--model-repository=/m",
            "--allow-sagemaker=on",
            "--sagemaker-port=9123",
            "--sagemaker-safe-port-range=8000-9200",
            "--sagemaker-thread-count=2",
            "--http-port=8000",
            "--grpc-port=8001",
            "--metrics-port=8002",
        ]
    )
    assert (options.allow_sagemaker, options.sagemaker_port) == (True, 9123)
    defaults, _, _ = parse_args(["--model-repository=/m"])
    assert (defaults.allow_sagemaker, defaults.sagemaker_port) == (False, 8080)


# -- header size, as C's atoi reads it --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12", 12),
        (" +7x", 7),
        ("-3", -3),
        ("abc", 0),
        ("", 0),
        ("4294967297", 1),
        ("99999999999999999999", -1),
    ],
)
def test_atoi(text: str, value: int) -> None:
    assert c_atoi(text) == value


def test_header_length_rules() -> None:
    assert header_length(None, 10) == 10
    assert header_length(b"application/json", 10) == 10
    assert header_length((MIME + "4").encode(), 10) == 4
    assert header_length((MIME + "0").encode(), 10) == 0
    with pytest.raises(InvalidArgumentError, match="should be in range"):
        header_length((MIME + "11").encode(), 10)
    with pytest.raises(InvalidArgumentError, match="starts with"):
        header_length(("x/y; " + MIME + "4").encode(), 10)


# -- multi-model endpoint: POST /models, invoke, unload ----------------------------------
