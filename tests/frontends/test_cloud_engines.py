"""The cloud endpoints' inference routes on both HTTP engines: on the native engine
C++ serves SageMaker's /invocations and Vertex AI's predict route itself
(csrc/http/http_cloud.h) and hands every request it does not take to the Python
frontend; on the Python engine the frontend serves them all. The answers must be
the same, byte for byte, whichever path a request takes (the differential tests
against Triton, test_sagemaker.py and test_vertex_ai.py, run the default, native
engine)."""

from __future__ import annotations

import gzip
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cloudutil import (
    BINARY_HEADER,
    BINARY_REQUEST,
    DEC_CONFIG,
    JSON_REQUEST,
    SAGEMAKER_MIME,
    Reply,
    call,
    sagemaker,
    vertex,
    write_model,
)
from testmodels import ADD_SUB, ADD_SUB_PY, REPEAT_MODEL

VERTEX_MIME = "application/vnd.vertex-ai-triton.binary+json;json-header-size="
PREDICT = "/v1/endpoints/1/deployedModels/2:predict"
ENGINES = ("native", "python")


def requests(path: str, mime: str) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """(path, body, headers) of POSTs that exercise both paths of the native engine."""
    size = str(len(BINARY_HEADER))
    return {
        "json": (path, JSON_REQUEST, {}),
        "json-typed": (path, JSON_REQUEST, {"Content-Type": "application/json"}),
        "json-query": (path + "?x=1", JSON_REQUEST, {}),
        "binary": (path, BINARY_REQUEST, {"Content-Type": mime + size}),
        "binary-whole-body": (
            path,
            JSON_REQUEST,
            {"Content-Type": mime + str(len(JSON_REQUEST))},
        ),
        "binary-zero-is-raw": (path, BINARY_REQUEST, {"Content-Type": mime + "0"}),
        "binary-too-large": (path, BINARY_REQUEST, {"Content-Type": mime + "99999"}),
        "binary-not-digits": (path, BINARY_REQUEST, {"Content-Type": mime + " 12x"}),
        "mime-not-first": (
            path,
            BINARY_REQUEST,
            {"Content-Type": "text/plain; " + mime + size},
        ),
        "empty-body": (path, b"", {}),
        "bad-json": (path, b"{bad", {}),
        "gzip": (path, gzip.compress(JSON_REQUEST), {"Content-Encoding": "gzip"}),
        "accept-gzip": (path, JSON_REQUEST, {"Accept-Encoding": "gzip"}),
        "kserve-path": ("/v2/models/add_sub/infer", JSON_REQUEST, {}),
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cloud_engines")
    write_model(root, "add_sub", ADD_SUB, ADD_SUB_PY)
    write_model(root, "dec", DEC_CONFIG, REPEAT_MODEL)
    return root


def _sagemaker(repo: Path, engine: str, model: str) -> AbstractContextManager[int]:
    env = {"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": model}
    return sagemaker("tritonx", repo, env, f"--http-engine={engine}")


def _vertex(repo: Path, engine: str, model: str) -> AbstractContextManager[int]:
    env = {"AIP_HEALTH_ROUTE": "/health", "AIP_PREDICT_ROUTE": "/v1/endpoints/.*"}
    flags = (f"--vertex-ai-default-model={model}", f"--http-engine={engine}")
    return vertex("tritonx", repo, env, *flags)


# The one difference: the JSON parser's own words (RapidJSON's, as Triton's, on the
# native engine; Python's json on the Python engine).
NATIVE_PARSE_ERROR = (
    b'{"error":"failed to parse the request JSON buffer: Missing a name for object '
    b'member. at 1"}'
)


def same_but_parse_error(seen: dict[str, dict[str, Reply]]) -> None:
    native, python = dict(seen["native"]), dict(seen["python"])
    bad_native, bad_python = native.pop("bad-json"), python.pop("bad-json")
    assert native == python
    assert bad_native.body == NATIVE_PARSE_ERROR
    assert (bad_native.status, bad_native.content_type) == (
        bad_python.status,
        bad_python.content_type,
    )


def answers(port: int, path: str, mime: str, extra: dict[str, str]) -> dict[str, Reply]:
    return {
        name: call(port, "POST", target, body, {**headers, **extra})
        for name, (target, body, headers) in requests(path, mime).items()
    }


@pytest.mark.parametrize("model", ["add_sub", "dec", "nope"])
def test_sagemaker_invocations_same_on_both_engines(repo: Path, model: str) -> None:
    seen = {}
    for engine in ENGINES:
        with _sagemaker(repo, engine, model) as port:
            seen[engine] = answers(port, "/invocations", SAGEMAKER_MIME, {})
    if model == "add_sub":
        same_but_parse_error(seen)
        assert seen["native"]["binary"].content_type.startswith(SAGEMAKER_MIME)
        assert seen["native"]["json"].status == 200
    else:  # refused before the body is read: the same answer from Python
        assert seen["native"] == seen["python"]


@pytest.mark.parametrize("redirect", [False, True])
def test_vertex_predict_same_on_both_engines(repo: Path, redirect: bool) -> None:
    extra = {"X-Vertex-Ai-Triton-Redirect": "v2/models/add_sub/infer"}
    seen = {}
    for engine in ENGINES:
        with _vertex(repo, engine, "add_sub") as port:
            seen[engine] = answers(
                port, PREDICT, VERTEX_MIME, extra if redirect else {}
            )
    if redirect:  # the redirect is always served by the Python frontend
        assert seen["native"] == seen["python"]
    else:
        same_but_parse_error(seen)
    assert seen["native"]["json"].status == 200
    assert seen["native"]["binary"].header_length is not None  # KServe framing
