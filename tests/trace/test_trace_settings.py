"""The trace settings API over HTTP and gRPC: Triton's validation messages and
order, per-model settings falling back to the global one, clearing with null. The
same script runs against the reference Triton when TRITONX_REFERENCE_CMD is set,
and every answer must match."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient
from serverutil import (
    RunningServer,
    needs_reference,
    run_reference,
    run_server,
)
from traceutil import build_repo
from tritonclient.utils import InferenceServerException

# (method, path, body) over HTTP; ("grpc", model, settings) over gRPC.
SCRIPT: list[tuple[str, str, Any]] = [
    ("GET", "/v2/trace/setting", None),
    ("POST", "/v2/trace/setting", {}),
    ("POST", "/v2/trace/setting", {"trace_rate": "abc"}),
    ("POST", "/v2/trace/setting", {"trace_rate": "99999999999999"}),
    ("POST", "/v2/trace/setting", {"trace_rate": "-1"}),  # wraps, as in Triton
    ("POST", "/v2/trace/setting", {"trace_rate": "3x"}),
    ("POST", "/v2/trace/setting", {"trace_count": "-2"}),
    ("POST", "/v2/trace/setting", {"trace_count": "99999999999"}),
    ("POST", "/v2/trace/setting", {"log_frequency": "x"}),
    ("POST", "/v2/trace/setting", {"trace_level": ["BAD"]}),
    ("POST", "/v2/trace/setting", {"trace_level": ["OFF", "TIMESTAMPS"]}),
    ("POST", "/v2/trace/setting", {"trace_file": "/tmp/elsewhere.json"}),
    ("POST", "/v2/trace/setting", {"trace_file": None, "trace_rate": "abc"}),
    ("POST", "/v2/trace/setting", {"trace_rate": "abc", "trace_level": ["OFF", "X"]}),
    ("POST", "/v2/trace/setting", {"trace_mode": "opentelemetry", "bogus": "1"}),
    ("POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"], "trace_rate": "0"}),
    ("POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"], "trace_count": "0"}),
    ("POST", "/v2/trace/setting", {"trace_level": ["TIMESTAMPS"], "trace_rate": "7"}),
    ("POST", "/v2/models/add_one/trace/setting", {"trace_rate": "3"}),
    ("GET", "/v2/models/add_one/trace/setting", None),
    ("GET", "/v2/models/double/trace/setting", None),
    ("POST", "/v2/trace/setting", {"trace_count": "9", "log_frequency": "4"}),
    ("GET", "/v2/models/add_one/trace/setting", None),
    ("POST", "/v2/models/add_one/trace/setting", {"trace_rate": None}),
    ("POST", "/v2/models/add_one/trace/setting", {"trace_level": ["TENSORS"]}),
    ("POST", "/v2/trace/setting", {"trace_level": ["OFF"]}),
    ("GET", "/v2/models/add_one/trace/setting", None),
    ("POST", "/v2/trace/setting", {"trace_rate": None, "trace_count": None}),
    ("GET", "/v2/trace/setting", None),
    ("GET", "/v2/models/nosuch/trace/setting", None),
    ("POST", "/v2/models/nosuch/trace/setting", {"trace_rate": "3"}),
    ("grpc", "", {}),
    ("grpc", "", {"trace_rate": "abc"}),
    ("grpc", "", {"trace_count": "-2"}),
    ("grpc", "", {"trace_rate": ["1", "2"]}),
    ("grpc", "", {"trace_file": None}),
    ("grpc", "", {"trace_level": ["OFF", "TENSORS"]}),
    ("grpc", "double", {"trace_rate": "5", "trace_level": ["TIMESTAMPS"]}),
    ("grpc", "double", {"trace_rate": None}),
    ("grpc", "double", {"trace_level": None}),
    ("grpc", "nosuch", {}),
    ("GET", "/v2/models/double/trace/setting", None),
]

# Triton answers a value of the wrong JSON type 500 with its JSON library's words;
# tritonx answers 400 with the same words.
TYPE_ERRORS: list[tuple[str, str, Any]] = [
    ("POST", "/v2/trace/setting", {"trace_rate": 5}),
    ("POST", "/v2/trace/setting", {"trace_level": "TIMESTAMPS"}),
    ("POST", "/v2/trace/setting", {"trace_level": [5]}),
]


def http_call(url: str, method: str, path: str, body: Any) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{url}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def grpc_call(client: Any, model: str, settings: dict[str, Any]) -> Any:
    try:
        if settings:
            answer = client.update_trace_settings(model, settings, as_json=True)
        else:
            answer = client.get_trace_settings(model, as_json=True)
    except InferenceServerException as error:
        return (error.status(), error.message())
    return {k: v["value"] for k, v in answer["settings"].items()}


def transcript(server: RunningServer, steps: list[tuple[str, str, Any]]) -> list[Any]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        out = []
        for method, target, body in steps:
            if method == "grpc":
                out.append(grpc_call(client, target, body))
            else:
                out.append(http_call(server.http_url, method, target, body))
        return out
    finally:
        client.close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repo(tmp_path_factory.mktemp("trace") / "repo")


def test_settings_script(repo: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "trace.json")
    with run_server(repo, f"--trace-config=triton,file={out}") as server:
        answers = dict(enumerate(transcript(server, SCRIPT)))
        types = transcript(server, TYPE_ERRORS)
    assert answers[0] == (
        200,
        {
            "trace_level": ["OFF"],
            "trace_rate": "1000",
            "trace_count": "-1",
            "log_frequency": "0",
            "trace_file": out,
            "trace_mode": "triton",
        },
    )
    assert answers[2] == (400, {"error": "Unable to parse 'trace_rate', got: abc"})
    assert answers[4][1]["trace_rate"] == "4294967295"
    assert answers[5][1]["trace_rate"] == "3"
    assert answers[6] == (
        400,
        {"error": "Unable to parse 'trace_count'. Expecting value >= -1, got:-2"},
    )
    assert answers[11] == (
        501,
        {"error": "trace file location can not be updated through network protocol"},
    )
    assert answers[15] == (
        400,
        {
            "error": "Attempting to set invalid trace setting :sample rate must be non-zero"
        },
    )
    # A model's own rate; its other fields follow the global setting as it changes.
    assert answers[19][1]["trace_rate"] == "3"
    assert answers[20][1]["trace_rate"] == "7"
    assert answers[22][1]["trace_count"] == "9"
    assert answers[22][1]["trace_rate"] == "3"
    assert answers[23][1]["trace_rate"] == "7"  # cleared: the global rate again
    assert answers[26][1]["trace_level"] == ["TENSORS"]  # kept its own level
    assert answers[28][1]["trace_rate"] == "1000"  # the command line's value
    assert answers[29] == (400, {"error": "Request for unknown model : nosuch"})
    assert answers[32] == (
        "StatusCode.INVALID_ARGUMENT",
        "Unable to parse 'trace_rate', got: abc",
    )
    assert answers[34] == (
        "StatusCode.INVALID_ARGUMENT",
        "expect only 1 value for 'trace_rate'",
    )
    assert answers[35][0] == "StatusCode.UNIMPLEMENTED"
    assert answers[37]["trace_rate"] == ["5"]
    assert answers[38]["trace_rate"] == ["1000"]
    assert [status for status, _ in types] == [400, 400, 400]


@needs_reference
def test_settings_match_reference(repo: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "trace.json")
    with run_server(repo, f"--trace-config=triton,file={out}") as server:
        ours = transcript(server, SCRIPT + TYPE_ERRORS)
    with run_reference([repo], f"--trace-config=triton,file={out}") as reference:
        theirs = transcript(reference, SCRIPT + TYPE_ERRORS)
    steps = SCRIPT + TYPE_ERRORS
    for step, mine, ref in zip(steps, ours, theirs, strict=True):
        if step in TYPE_ERRORS:  # deliberate: 400, not 500
            assert (mine[0], mine[1]) == (400, ref[1]), step
        else:
            assert mine == ref, step
