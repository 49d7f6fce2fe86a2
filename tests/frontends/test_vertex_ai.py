"""Triton's Vertex AI endpoint (``--allow-vertex-ai``) through the wire: the health
and predict routes of the AIP_* environment, the default model rule, the
X-Vertex-Ai-Triton-Redirect header, the binary content type, start-up errors and
the flags. Each table states Triton 2.51's answer (status, content type, body) and
runs against tritonx and, when $TRITONX_REFERENCE_CMD names it, the real Triton
(python-backend models only)."""

from __future__ import annotations

import subprocess
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
    error_json,
    launch_command,
    tritonclient_binary_request,
    vertex,
    wait_for_port,
    write_model,
)
from cloudutil import check_reply as _check
from serverutil import free_port, server_env
from testmodels import ADD_SUB, ADD_SUB_PY, REPEAT_MODEL

KINDS = ["tritonx", "reference"]
MIME = "application/vnd.vertex-ai-triton.binary+json;json-header-size="
OCTETS = "application/octet-stream"
REDIRECT = "X-Vertex-Ai-Triton-Redirect"
HEALTH = "/health"
# A regular expression, as Vertex AI's routes are read.
PREDICT_PATTERN = "/v1/endpoints/[0-9]+/deployedModels/[0-9]+:predict"
PREDICT = "/v1/endpoints/7/deployedModels/42:predict"
ROUTES = {"AIP_HEALTH_ROUTE": HEALTH, "AIP_PREDICT_ROUTE": PREDICT_PATTERN}
SIZE = len(BINARY_REQUEST)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vertex_repo")
    write_model(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    write_model(root, "dec", DEC_CONFIG, REPEAT_MODEL)
    return root


@pytest.fixture(scope="module")
def single_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vertex_single")
    write_model(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    return root


def _to(path: str, body: bytes = b"", **headers: str) -> tuple[str, bytes, dict]:
    """A redirected POST to ``path``."""
    return (PREDICT, body, {REDIRECT: path, **headers})


CONFIG_START = b'{"name":"add_sub","platform":"","backend":"python",...'
METADATA = (
    b'{"name":"add_sub","versions":["1"],"platform":"python","inputs":['
    b'{"name":"INPUT0","datatype":"FP32","shape":[4]},'
    b'{"name":"INPUT1","datatype":"FP32","shape":[4]}],"outputs":['
    b'{"name":"OUTPUT0","datatype":"FP32","shape":[4]},'
    b'{"name":"OUTPUT1","datatype":"FP32","shape":[4]}]}'
)
UNKNOWN = error_json("Request for unknown model: 'nope' is not found")
BINARY = {"Content-Type": MIME + str(len(BINARY_HEADER))}

# (method, path, body, headers) -> (status, content type, body); a body ending in
# "..." is a prefix (the JSON parser's own words differ: Python's json in tritonx's
# Python engine, RapidJSON in Triton).
CASES: dict[str, tuple[str, str, bytes, dict[str, str], int, str, bytes]] = {
    "health": ("GET", HEALTH, b"", {}, 200, TEXT, b""),
    "health-query": ("GET", HEALTH + "?probe=1", b"", {}, 200, TEXT, b""),
    "health-post": ("POST", HEALTH, b"", {}, 405, TEXT, NOT_ALLOWED),
    "health-slash": ("GET", HEALTH + "/", b"", {}, 400, TEXT, b""),
    "health-redirect-ignored": ("GET", HEALTH, b"", {REDIRECT: "v2"}, 200, TEXT, b""),
    "kserve-path": ("GET", "/v2/health/ready", b"", {}, 400, TEXT, b""),
    "unknown-path": ("POST", "/predict", JSON_REQUEST, {}, 400, TEXT, b""),
    "route-not-matched": (
        "POST",
        "/v1/endpoints/x/deployedModels/42:predict",
        JSON_REQUEST,
        {},
        400,
        TEXT,
        b"",
    ),
    "predict": ("POST", PREDICT, JSON_REQUEST, {}, 200, JSON, JSON_ANSWER),
    "predict-other-ids": (
        "POST",
        "/v1/endpoints/1/deployedModels/2:predict?x=1",
        JSON_REQUEST,
        {"Content-Type": "application/json"},
        200,
        JSON,
        JSON_ANSWER,
    ),
    "kserve-header-ignored": (
        "POST",
        PREDICT,
        JSON_REQUEST,
        {"Inference-Header-Content-Length": "7"},
        200,
        JSON,
        JSON_ANSWER,
    ),
    "accept-encoding-ignored": (
        "POST",
        PREDICT,
        JSON_REQUEST,
        {"Accept-Encoding": "gzip"},
        200,
        JSON,
        JSON_ANSWER,
    ),
    "get-predict": ("GET", PREDICT, b"", {}, 405, TEXT, NOT_ALLOWED),
    "put-predict": ("PUT", PREDICT, JSON_REQUEST, {}, 405, TEXT, NOT_ALLOWED),
    "binary": ("POST", PREDICT, BINARY_REQUEST, BINARY, 200, OCTETS, BINARY_ANSWER),
    "binary-mime-not-first": (
        "POST",
        PREDICT,
        BINARY_REQUEST,
        {"Content-Type": f"text/x;{MIME}{len(BINARY_HEADER)}"},
        400,
        TEXT,
        error_json(
            f"expect MIME type for binary data starts with '{MIME}', got: "
            f"text/x;{MIME}{len(BINARY_HEADER)}"
        ),
    ),
    "binary-size-negative": (
        "POST",
        PREDICT,
        BINARY_REQUEST,
        {"Content-Type": MIME + "-3"},
        400,
        TEXT,
        error_json(f"inference header size should be in range (0, {SIZE}), got: -3"),
    ),
    "binary-size-not-a-number": (
        "POST",
        PREDICT,
        BINARY_REQUEST,
        {"Content-Type": MIME + "abc"},
        400,
        JSON,
        RAW_TWO_INPUTS,
    ),
    "empty-body-is-raw": ("POST", PREDICT, b"", {}, 400, JSON, RAW_TWO_INPUTS),
    "bad-json": ("POST", PREDICT, b"{bad", {}, 500, JSON, PARSE_ERROR + b"..."),
    # -- the redirect header --
    "redirect-get": ("GET", PREDICT, b"", {REDIRECT: "v2"}, 405, TEXT, b""),
    "redirect-lower-case": (
        "POST",
        PREDICT,
        b"",
        {REDIRECT.lower(): "v2/health/live"},
        200,
        TEXT,
        b"",
    ),
    "redirect-leading-slash": ("POST", *_to("/v2"), 400, TEXT, b""),
    "redirect-empty": ("POST", *_to(""), 400, TEXT, b""),
    "redirect-unknown": ("POST", *_to("nothing"), 400, TEXT, b""),
    "redirect-ready": ("POST", *_to("v2/health/ready"), 200, TEXT, b""),
    "redirect-live": ("POST", *_to("v2/health/live"), 200, TEXT, b""),
    "redirect-health-other": ("POST", *_to("v2/health/other"), 400, TEXT, b""),
    "redirect-metadata": ("POST", *_to("v2/models/add_sub"), 200, JSON, METADATA),
    "redirect-metadata-version": (
        "POST",
        *_to("v2/models/add_sub/versions/1"),
        200,
        JSON,
        METADATA,
    ),
    "redirect-metadata-unknown": ("POST", *_to("v2/models/nope"), 404, JSON, UNKNOWN),
    "redirect-model-ready": ("POST", *_to("v2/models/add_sub/ready"), 200, TEXT, b""),
    "redirect-model-not-ready": (
        "POST",
        *_to("v2/models/nope/ready"),
        400,
        TEXT,
        error_json("Model version not ready"),
    ),
    "redirect-config": (
        "POST",
        *_to("v2/models/add_sub/config"),
        200,
        JSON,
        CONFIG_START,
    ),
    "redirect-stats": (
        "POST",
        *_to("v2/models/add_sub/stats"),
        200,
        JSON,
        b'{"model_stats":[{"name":"add_sub","version":"1",...',
    ),
    "redirect-all-stats": (
        "POST",
        *_to("v2/models/stats"),
        200,
        JSON,
        b'{"model_stats":[{"name":"add_sub","version":"1",...',
    ),
    "redirect-infer": (
        "POST",
        *_to("v2/models/add_sub/infer", JSON_REQUEST),
        200,
        JSON,
        JSON_ANSWER,
    ),
    "redirect-infer-kserve-header-ignored": (
        "POST",
        *_to(
            "v2/models/add_sub/infer",
            JSON_REQUEST,
            **{"Inference-Header-Content-Length": "7"},
        ),
        200,
        JSON,
        JSON_ANSWER,
    ),
    "redirect-infer-binary": (
        "POST",
        *_to("v2/models/add_sub/versions/1/infer", BINARY_REQUEST, **BINARY),
        200,
        OCTETS,
        BINARY_ANSWER,
    ),
    "redirect-infer-unknown": (
        "POST",
        *_to("v2/models/nope/infer", JSON_REQUEST),
        404,
        TEXT,
        UNKNOWN,
    ),
    "redirect-infer-decoupled": (
        "POST",
        *_to("v2/models/dec/infer", JSON_REQUEST),
        501,
        TEXT,
        DECOUPLED,
    ),
    "redirect-generate": ("POST", *_to("v2/models/add_sub/generate"), 400, TEXT, b""),
    "redirect-model-trace": (
        "POST",
        *_to("v2/models/add_sub/trace/setting"),
        400,
        TEXT,
        b"",
    ),
    "redirect-trace": ("POST", *_to("v2/trace/setting"), 400, TEXT, b""),
    "redirect-logging": ("POST", *_to("v2/logging"), 400, TEXT, b""),
    "redirect-index": (
        "POST",
        *_to("v2/repository/index", b'{"ready":true}'),
        200,
        JSON,
        b'[{"name":"add_sub","version":"1","state":"READY"},'
        b'{"name":"dec","version":"1","state":"READY"}]',
    ),
    "redirect-load-not-explicit": (
        "POST",
        *_to("v2/repository/models/nope/load"),
        503,
        JSON,
        error_json("explicit model load / unload is not allowed if polling is enabled"),
    ),
    "redirect-shm-status": (
        "POST",
        *_to("v2/systemsharedmemory/status"),
        200,
        JSON,
        b"[]",
    ),
    "redirect-shm-region-status": (
        "POST",
        *_to("v2/systemsharedmemory/region/x/status"),
        404,
        JSON,
        error_json("Unable to find system shared memory region: 'x'"),
    ),
    "redirect-shm-register": (
        "POST",
        *_to("v2/systemsharedmemory/region/x/register", b"{}"),
        400,
        JSON,
        error_json("Shared memory register request has no 'key' field"),
    ),
    "redirect-shm-unregister": (
        "POST",
        *_to("v2/systemsharedmemory/region/x/unregister"),
        200,
        JSON,
        b"",
    ),
    "redirect-cuda-shm-status": (
        "POST",
        *_to("v2/cudasharedmemory/status"),
        200,
        JSON,
        b"[]",
    ),
    "redirect-metrics": ("POST", *_to("metrics"), 200, TEXT, b"# HELP ..."),
}


@pytest.fixture(scope="module", params=KINDS)
def endpoint(request: pytest.FixtureRequest, repo: Path) -> Iterator[int]:
    with vertex(
        request.param, repo, ROUTES, "--vertex-ai-default-model=add_sub"
    ) as port:
        yield port


@pytest.mark.parametrize("case", list(CASES))
def test_endpoint(endpoint: int, case: str) -> None:
    method, path, body, headers, status, content_type, answer = CASES[case]
    reply = call(endpoint, method, path, body, headers)
    _check(reply, status, content_type, answer)
    if content_type == OCTETS:  # binary outputs: the KServe framing
        assert reply.header_length == str(len(BINARY_ANSWER_HEADER))


def test_tritonclient_binary_round_trip(endpoint: int) -> None:
    """A body built by tritonclient, its JSON size in the Vertex AI content type;
    the answer framed the KServe way (parse_response_body reads it)."""
    body, size = tritonclient_binary_request()
    reply = call(endpoint, "POST", PREDICT, body, {"Content-Type": MIME + str(size)})
    assert (reply.status, reply.content_type) == (200, OCTETS)
    assert reply.header_length is not None
    check_add_sub_answer(reply.body, int(reply.header_length))


@pytest.mark.parametrize("kind", KINDS)
def test_only_model_is_the_default(kind: str, single_repo: Path) -> None:
    """Without --vertex-ai-default-model the predict route serves the only model;
    an empty redirect header is still a redirect (to "/", which is no route)."""
    with vertex(kind, single_repo, ROUTES) as port:
        _check(call(port, "POST", PREDICT, JSON_REQUEST), 200, JSON, JSON_ANSWER)
        _check(call(port, "POST", *_to("", JSON_REQUEST)), 400, TEXT, b"")


@pytest.mark.parametrize("kind", KINDS)
def test_not_ready_server_and_decoupled_default(kind: str, tmp_path: Path) -> None:
    """A model failed to load: the health route says 400; a decoupled default model
    is refused before the body is read (text/plain, 501)."""
    write_model(tmp_path, "broken", BROKEN, BROKEN_PY)
    write_model(tmp_path, "dec", DEC_CONFIG, REPEAT_MODEL)
    args = ("--vertex-ai-default-model=dec", "--exit-on-error=false")
    with vertex(kind, tmp_path, ROUTES, *args, ready=False) as port:
        _check(call(port, "GET", HEALTH), 400, TEXT, b"")
        _check(call(port, "POST", PREDICT, JSON_REQUEST), 501, TEXT, DECOUPLED)


@pytest.mark.parametrize("kind", KINDS)
def test_repository_control_and_metrics_off(kind: str, repo: Path) -> None:
    """In explicit mode the redirect loads and unloads models (tritonserver 2.51
    lets it); with the metrics endpoint off the metrics redirect still answers the
    model families."""
    args = (
        "--vertex-ai-default-model=add_sub",
        "--model-control-mode=explicit",
        "--load-model=add_sub",
        "--allow-metrics=false",
    )
    with vertex(kind, repo, ROUTES, *args) as port:
        metrics = call(port, "POST", *_to("metrics"))
        _check(metrics, 200, TEXT, b"# HELP nv_inference_request_success ...")
        assert b'nv_inference_count{model="add_sub",version="1"} 0' in metrics.body
        _check(call(port, "POST", *_to("v2/models/dec/ready")), 400, TEXT, b"...")
        _check(
            call(port, "POST", *_to("v2/repository/models/dec/load")), 200, JSON, b""
        )
        _check(call(port, "POST", *_to("v2/models/dec/ready")), 200, TEXT, b"")
        unload = _to("v2/repository/models/dec/unload")
        _check(call(port, "POST", *unload), 200, JSON, b"")
        _check(call(port, "POST", *_to("v2/models/dec/ready")), 400, TEXT, b"...")


@pytest.mark.parametrize("kind", KINDS)
def test_prediction_mode_environment(kind: str, single_repo: Path) -> None:
    """AIP_MODE=PREDICTION turns the endpoint on and HTTP and gRPC off;
    AIP_HTTP_PORT is its port; AIP_STORAGE_URI (a local directory) is the
    repository when no --model-repository is given."""
    command = launch_command(kind)
    port = free_port()
    env = server_env(
        {
            "AIP_MODE": "PREDICTION",
            "AIP_HTTP_PORT": str(port),
            "AIP_STORAGE_URI": str(single_repo),
            **ROUTES,
        }
    )
    process = subprocess.Popen(
        [*command, f"--metrics-port={free_port()}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, timeout=120)
        _check(call(port, "GET", HEALTH), 200, TEXT, b"")
        _check(call(port, "POST", PREDICT, JSON_REQUEST), 200, JSON, JSON_ANSWER)
    finally:
        process.terminate()
        log, _ = process.communicate(timeout=60)
    assert f"Started Vertex AI HTTPService at 0.0.0.0:{port}" in log
    assert "Started HTTPService" not in log
    assert "Started GRPCInferenceService" not in log
