"""--http-restricted-api and --http-header-forward-pattern through the wire.

Expected answers were taken from tritonserver 2.51 started with the same flags:
a restricted route without its header answers 403, ``text/plain``, body
``{"error":"This API is restricted, expecting header '<key>'"}``, before the
method is checked (POST /v2/health/live without the key is 403, with it 405); the
header name matches in any case, the value exactly. Forwarded headers reach the
model under the name as sent; a header wins over a JSON parameter of that name.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonx._native", reason="core not built")
from hardeningutil import PARAMS_CONFIG, PARAMS_PY
from serverutil import RunningServer, run_http_only, run_server

INFER_BODY = json.dumps(
    {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1], "data": [1]}],
        "parameters": {"json-param": "j", "X-Fwd-Both": "from json"},
        "outputs": [{"name": "PARAMS", "parameters": {"binary_data": False}}],
    }
).encode()
ADMIN = {"admin-key": "admin-value"}
INFER = {"Infer-Key": "s=1"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("access")
    (root / "params" / "1").mkdir(parents=True)
    (root / "params" / "config.pbtxt").write_text(PARAMS_CONFIG)
    (root / "params" / "1" / "model.py").write_text(PARAMS_PY)
    return root


@pytest.fixture(scope="module", params=["python", "native"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_http_only(
        repo,
        request.param,
        "--http-restricted-api=model-repository,health,trace:admin-key=admin-value",
        "--http-restricted-api=inference:infer-key=s=1",
        "--http-header-forward-pattern=x-fwd-.*",
    ) as running:
        yield running


def _call(
    server: RunningServer,
    method: str,
    path: str,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=30)
    try:
        conn.putrequest(method, path)
        items = headers.items() if isinstance(headers, dict) else headers or []
        for name, value in items:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        reply = conn.getresponse()
        return reply.status, reply.getheader("Content-Type") or "", reply.read()
    finally:
        conn.close()


def _refused(key: str) -> bytes:
    # Triton's exact bytes (compact JSON).
    message = f"This API is restricted, expecting header '{key}'"
    return json.dumps({"error": message}, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("method", "path", "key"),
    [
        ("GET", "/v2/health/live", "admin-key"),
        ("GET", "/v2/health/ready", "admin-key"),
        ("GET", "/v2/models/params/ready", "admin-key"),
        ("POST", "/v2/repository/index", "admin-key"),
        ("POST", "/v2/repository/models/params/unload", "admin-key"),
        ("POST", "/v2/models/params/infer", "infer-key"),
        ("POST", "/v2/models/params/versions/1/infer", "infer-key"),
        ("POST", "/v2/models/params/generate", "infer-key"),
        # Not served by tritonx, but guarded like Triton's handlers.
        ("GET", "/v2/trace/setting", "admin-key"),
        ("POST", "/v2/health/live", "admin-key"),  # before the method check
    ],
)
def test_restricted_routes_need_their_header(
    server: RunningServer, method: str, path: str, key: str
) -> None:
    status, content_type, body = _call(server, method, path, body=b"{}")
    assert (status, content_type, body) == (403, "text/plain", _refused(key))
    # Another group's key does not open it.
    other = INFER if key == "admin-key" else ADMIN
    assert _call(server, method, path, other, b"{}")[0] == 403


def test_right_header_opens_the_route(server: RunningServer) -> None:
    assert (
        _call(server, "GET", "/v2/health/live", {"ADMIN-KEY": "admin-value"})[0] == 200
    )
    # Triton's answers once past the restriction: the method, then the route.
    assert _call(server, "POST", "/v2/health/live", ADMIN)[0] == 405
    assert _call(server, "GET", "/v2/trace/setting", ADMIN)[0] == 200
    status, _, body = _call(server, "POST", "/v2/repository/index", ADMIN)
    assert status == 200 and json.loads(body)[0]["name"] == "params"
    status, _, body = _call(
        server, "POST", "/v2/models/params/infer", INFER, INFER_BODY
    )
    assert status == 200, body


@pytest.mark.parametrize(
    "headers",
    [
        {"admin-key": "Admin-Value"},  # the value is compared exactly
        {"admin-key": "admin-value "},
        {"admin-key": ""},
    ],
)
def test_wrong_values_are_refused(
    server: RunningServer, headers: dict[str, str], request: pytest.FixtureRequest
) -> None:
    trailing_space = any(v != v.rstrip() for v in headers.values())
    if trailing_space and request.node.callspec.params.get("server") == "native":
        # evhttp drops a value's trailing whitespace, which HTTP says is not part
        # of the value (RFC 9110, 5.5); Triton's libevhtp keeps it.
        assert _call(server, "GET", "/v2/health/live", headers)[0] == 200
        return
    assert _call(server, "GET", "/v2/health/live", headers)[0] == 403


def test_first_of_repeated_headers_counts(server: RunningServer) -> None:
    first_right = [("admin-key", "admin-value"), ("admin-key", "x")]
    first_wrong = [("admin-key", "x"), ("admin-key", "admin-value")]
    assert _call(server, "GET", "/v2/health/live", first_right)[0] == 200
    assert _call(server, "GET", "/v2/health/live", first_wrong)[0] == 403


def test_unrestricted_groups_stay_open(server: RunningServer) -> None:
    for path in ("/v2", "/v2/models/params", "/v2/models/params/config"):
        assert _call(server, "GET", path)[0] == 200, path
    assert _call(server, "GET", "/v2/models/stats")[0] == 200


def _seen_parameters(server: RunningServer, headers: list[tuple[str, str]]) -> object:
    status, _, body = _call(
        server,
        "POST",
        "/v2/models/params/infer",
        [*INFER.items(), *headers],
        INFER_BODY,
    )
    assert status == 200, body
    return json.loads(json.loads(body)["outputs"][0]["data"][0])


def test_matching_headers_reach_the_model(server: RunningServer) -> None:
    seen = _seen_parameters(
        server,
        [
            ("X-Fwd-One", "1"),
            ("x-FWD-two", "two words"),  # the pattern matches in any case
            ("X-Fwd-Both", "from header"),  # a header wins over the JSON one
            ("X-Other", "not forwarded"),
        ],
    )
    assert seen == {
        "json-param": "j",
        "X-Fwd-Both": "from header",
        "X-Fwd-One": "1",
        "x-FWD-two": "two words",
    }


def test_whitespace_around_values_is_not_forwarded(
    server: RunningServer, request: pytest.FixtureRequest
) -> None:
    # HTTP: spaces and tabs around a field value are not part of it (RFC 9110,
    # 5.5). The native engine drops both; httptools (Python engine) keeps trailing
    # ones, as Triton's libevhtp does.
    seen = _seen_parameters(server, [("X-Fwd-Ws", "\t value \t")])
    expected = "value" if request.node.callspec.params["server"] == "native" else None
    assert isinstance(seen, dict)
    if expected is None:
        assert seen["X-Fwd-Ws"].strip() == "value"
    else:
        assert seen["X-Fwd-Ws"] == expected


def test_reserved_names_and_case_sensitive_pattern(repo: Path) -> None:
    # Matching the pattern, but named like a control parameter: Triton's answer.
    with run_server(
        repo,
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--http-header-forward-pattern=(?-i)^(priority|triton_x|X-Case)$",
    ) as other:
        for name in ("priority", "triton_x"):
            status, _, body = _call(
                other, "POST", "/v2/models/params/infer", {name: "5"}, INFER_BODY
            )
            assert status == 400
            assert json.loads(body)["error"] == (
                f"Header '{name}' is reserved for Triton usage and cannot be forwarded."
            )
        # (?-i): the pattern is case-sensitive, so only the exact spelling passes.
        seen = _seen_parameters(other, [("X-Case", "yes"), ("x-case", "no")])
        assert seen == {"json-param": "j", "X-Fwd-Both": "from json", "X-Case": "yes"}
