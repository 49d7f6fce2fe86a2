"""HTTP control-plane requests answered as Triton 2.51 answers them: the body of a
model load or unload, versioned trace routes, methods on generate routes.

Found by sending the same control requests to tritonx and to Triton: Triton's
unload reads ``unload_dependents`` from the body but its unload's outcome overwrites
any error there, so an unload with a body that is not JSON, ``"parameters": []`` or
a ``unload_dependents`` that is not a boolean goes on (and outside EXPLICIT mode
gets the mode's 503, not the body's error, which tritonx answered with 500). A load
lists the members of ``parameters`` (``null`` included) before it loads, and
decodes ``file:`` contents as libb64 does, which never fails. A model's trace
settings have no version (such a path is not found); a POST of trace settings looks
the model up, then reads its body, which must be JSON (empty is not); a generate
route answers any method but POST with 405; a readiness check of a version past
int64 is refused as Triton refuses it. Trace settings are read in Triton's order,
the file first, and a verbose log level may be any unsigned 64-bit integer (found by
the differential fuzz's settings routes). Both HTTP engines (the native one hands
these routes to the Python frontend) and, when a reference command is given,
Triton; the expected answers are Triton's.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import ECHO_FP32_CONFIG as ECHO
from testmodels import ECHO_MODEL

POLLING = "explicit model load / unload is not allowed if polling is enabled"
UNLOAD = "/v2/repository/models/echo/unload"
LOAD = "/v2/repository/models/echo/load"
READY = "/v2/models/echo/ready"
TRACE = "/v2/models/echo/trace/setting"
PARSE = "failed to parse the request JSON buffer: "
GLOBAL_TRACE = "/v2/trace/setting"
LOGGING = "/v2/logging"
FILE_FIXED = "trace file location can not be updated through network protocol"


def _params(params: object) -> bytes:
    return json.dumps({"parameters": params}).encode()


# Outside EXPLICIT mode: (method, path, body) -> Triton's (status, error).
NOT_EXPLICIT: list[tuple[str, str, bytes, tuple[int, str]]] = [
    ("POST", UNLOAD, _params([]), (503, POLLING)),
    ("POST", UNLOAD, _params(None), (503, POLLING)),
    ("POST", UNLOAD, _params({"unload_dependents": 1}), (503, POLLING)),
    ("POST", UNLOAD, b"garbage", (503, POLLING)),
    ("POST", UNLOAD, b"{", (503, POLLING)),
    ("POST", UNLOAD, b"", (503, POLLING)),
    ("POST", LOAD, _params([]), (500, "attempt to get members for non-object")),
    ("POST", LOAD, _params(None), (500, "attempt to get members for non-object")),
    ("POST", LOAD, _params("x"), (500, "attempt to get members for non-object")),
    (
        "POST",
        LOAD,
        _params({"config": 1}),
        (500, "attempt to access JSON non-string as string"),
    ),
    (
        "POST",
        LOAD,
        _params({"x": "y"}),
        (500, "unexpected error on creating Triton parameter"),
    ),
    (
        "POST",
        LOAD,
        b"garbage",
        (500, PARSE + "Invalid value. at 0"),
    ),
    (
        "POST",
        LOAD,
        b'{"parameters": {',
        (
            500,
            PARSE + "Missing a name for object member. at 16",
        ),
    ),
    ("POST", LOAD, _params({"file:1/model.py": "abc"}), (503, POLLING)),
    ("POST", LOAD, _params({}), (503, POLLING)),
    ("POST", LOAD, _params({"config": "{"}), (503, POLLING)),
    ("POST", LOAD, b"[]", (503, POLLING)),
    (
        "POST",
        "/v2/repository/index",
        b"garbage",
        (500, PARSE + "Invalid value. at 0"),
    ),
    # A model's trace settings: no version; the model first, then the body.
    ("GET", "/v2/models/echo/versions/1/trace/setting", b"", (404, "Not Found")),
    ("POST", "/v2/models/echo/versions/1/trace/setting", b"{}", (404, "Not Found")),
    ("PUT", "/v2/models/echo/versions/1/trace/setting", b"", (404, "Not Found")),
    ("POST", TRACE, b"", (500, PARSE + "The document is empty. at 0")),
    (
        "POST",
        "/v2/models/nope/trace/setting",
        b"{",
        (400, "Request for unknown model : nope"),
    ),
    ("PUT", TRACE, b"{}", (405, "Method Not Allowed")),
    # Trace settings are read one at a time in Triton's order, the file's mere
    # presence first: a later key's value of the wrong JSON type is not reached.
    ("POST", TRACE, b'{"trace_level": "OFF", "trace_file": ""}', (501, FILE_FIXED)),
    ("POST", GLOBAL_TRACE, b'{"trace_rate": 5, "trace_file": null}', (501, FILE_FIXED)),
    (
        "POST",
        TRACE,
        b'{"trace_rate": 5, "trace_level": ["TIMESTAMPS", "OFF"]}',
        (400, "Expect only one trace level 'OFF' is specified"),
    ),
    # A verbose level is any unsigned 64-bit integer, kept as Triton keeps it (cast
    # to int32); log_format comes after it.
    ("POST", LOGGING, b'{"log_verbose_level": 18446744073709551615}', (200, "")),
    (
        "POST",
        LOGGING,
        b'{"log_format": "x", "log_verbose_level": 4294967296}',
        (503, "invalid argument for --log_format, got: x"),
    ),
    # A version string past int64 is refused, not a version that is not ready.
    (
        "GET",
        "/v2/models/echo/versions/99999999999999999999999/ready",
        b"",
        (
            400,
            "failed to get model version from specified version string "
            "'99999999999999999999999' (details: stol), version should be an "
            "integral value > 0",
        ),
    ),
    ("GET", "/v2/models/nope/versions/2/ready", b"", (400, "Model version not ready")),
    # Generate routes: POST only.
    ("GET", "/v2/models/echo/generate", b"", (405, "Method Not Allowed")),
    (
        "PUT",
        "/v2/models/nope/versions/1/generate_stream",
        b"",
        (405, "Method Not Allowed"),
    ),
]


def _unpadded(text: str) -> str:
    """Base64 without its '=' padding, wrapped in lines (libb64 takes both)."""
    encoded = base64.b64encode(text.encode()).decode().rstrip("=")
    return "\n".join(encoded[i : i + 20] for i in range(0, len(encoded), 20))


# In EXPLICIT mode, in order: (method, path, body) -> Triton's (status, error).
EXPLICIT: list[tuple[str, str, bytes, tuple[int, str]]] = [
    ("GET", READY, b"", (200, "")),
    ("POST", UNLOAD, b"garbage", (200, "")),  # unloaded all the same
    ("GET", READY, b"", (400, "Model version not ready")),
    ("POST", LOAD, _params({}), (200, "")),
    ("GET", READY, b"", (200, "")),
    ("POST", UNLOAD, _params({"unload_dependents": "yes"}), (200, "")),
    ("GET", READY, b"", (400, "Model version not ready")),
    (
        "POST",
        LOAD,
        _params(
            {
                "config": json.dumps(
                    {
                        "backend": "python",
                        "input": [
                            {"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}
                        ],
                        "output": [
                            {"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}
                        ],
                    }
                ),
                "file:1/model.py": _unpadded(ECHO_MODEL),
            }
        ),
        (200, ""),
    ),
    ("GET", READY, b"", (200, "")),
]


def observe(server: RunningServer, sends: list[tuple[str, str, bytes, object]]) -> list:
    answers = []
    for method, path, body, _ in sends:
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
        try:
            conn.request(method, path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            error = json.loads(data).get("error", "") if data else ""
            answers.append((method, path, body, (response.status, error)))
        finally:
            conn.close()
    return answers


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository_bodies")
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "config.pbtxt").write_text(ECHO)
    (root / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    return root


EXPLICIT_ARGS = ("--model-control-mode=explicit", "--load-model=echo")


@pytest.fixture(params=["native", "python"])
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    yield f"--http-engine={request.param}"


def test_outside_explicit_mode(repo: Path, engine: str) -> None:
    with run_server(repo, engine) as server:
        assert observe(server, NOT_EXPLICIT) == NOT_EXPLICIT


def test_in_explicit_mode(repo: Path, engine: str) -> None:
    with run_server(repo, engine, *EXPLICIT_ARGS) as server:
        assert observe(server, EXPLICIT) == EXPLICIT


@pytest.mark.skipif(reference_command() is None, reason="no reference Triton")
def test_the_expected_answers_are_tritons(repo: Path) -> None:
    with run_reference([repo]) as reference:
        assert observe(reference, NOT_EXPLICIT) == NOT_EXPLICIT
    with run_reference([repo], *EXPLICIT_ARGS) as reference:
        assert observe(reference, EXPLICIT) == EXPLICIT
