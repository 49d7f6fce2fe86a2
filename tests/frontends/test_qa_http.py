"""Behaviours from Triton's QA directory L0_http (http_test.py and the curl checks of
its test.sh) not covered elsewhere, as differential tests: the same bytes go to
tritonx (both HTTP engines) and, when TRITONX_REFERENCE_CMD is given, to Triton 2.51,
and the answers (status, binary header length, content type, body) must be equal.
Content types included: Triton answers what it refuses before its handler sets one
(header lengths out of range, an unknown model, a wrong method on infer, health and
readiness) as text/plain.

Covered elsewhere: the raw-body refusals of a BYTES input of any shape and of a
model with several inputs (test_http_check_order.py), 'data' longer or shorter than
its shape (test_http_server.py, test_http_codec.py), a full queue's 503
(tests/core/test_qa_model_queue.py), duplicate output names
(test_input_names_differential.py), negative JSON dims (test_http_codec.py), the
restricted APIs (test_http_access.py). Some checks of Triton's newer http_test.py
meet bugs 2.51 still has (a crash on a long file name in a load, a crash on a deeply
nested body); those are tested on tritonx alone, with the answer later Tritons give.
"""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import ADD_SUB_PY, ECHO_MODEL, write_model

ADD_SUB_INT32 = """
name: "simple"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]
"""


def _echo_config(name: str, datatype: str, dims: str, batch: int) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {batch}
input [ {{ name: "INPUT0" data_type: {datatype} dims: {dims} }} ]
output [ {{ name: "OUTPUT0" data_type: {datatype} dims: {dims} }} ]
"""


ECHOES = {
    # L0_http's onnx_zero_1_float32: one variable dim after the batch one.
    "fp32": ("TYPE_FP32", "[ -1 ]", 8),
    # onnx_zero_1_object_1_element: a BYTES input of shape [1].
    "bytes1": ("TYPE_STRING", "[ 1 ]", 8),
    # onnx_zero_1_float16: two variable dims, so a raw body's shape is unknown.
    "fp16": ("TYPE_FP16", "[ -1, -1 ]", 0),
    "bytes": ("TYPE_STRING", "[ -1, -1 ]", 0),
    "int64": ("TYPE_INT64", "[ -1, -1 ]", 0),
    # Only loaded by the tritonx-only load test (a load that fails).
    "loadme": ("TYPE_FP32", "[ -1 ]", 0),
}

RAW = {"Inference-Header-Content-Length": "0"}
FLOATS8 = np.arange(8, dtype=np.float32).tobytes()
# One chunk, then the last (empty) one, as a caller encoding by hand would send it.
CHUNKED = f"{len(FLOATS8):X}\r\n".encode() + FLOATS8 + b"\r\n0\r\n\r\n"
SIXTEEN = list(range(1, 17))


def _simple(
    parameters: dict[str, Any] | None = None,
    outputs: list[dict[str, Any]] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "inputs": [
            {"name": n, "datatype": "INT32", "shape": [1, 16], "data": SIXTEEN}
            for n in ("INPUT0", "INPUT1")
        ]
    }
    if parameters is not None:
        body["parameters"] = parameters
    if outputs is not None:
        body["outputs"] = outputs
    return json.dumps(body).encode()


def _out(name: str, binary: bool | None = None) -> dict[str, Any]:
    if binary is None:
        return {"name": name}
    return {"name": name, "parameters": {"binary_data": binary}}


def _nested(depth: int, value: Any) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def _json_infer(datatype: str, shape: list[int], data: Any) -> bytes:
    tensor = {"name": "INPUT0", "datatype": datatype, "shape": shape, "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


# name -> (method, path, body, headers). Each answer is compared whole.
CASES: dict[str, tuple[str, str, bytes | None, dict[str, str]]] = {
    # test_raw_binary, test_raw_binary_longer: the body is the only input's bytes.
    "raw body, 8 elements": ("POST", "/v2/models/fp32/infer", FLOATS8, RAW),
    "raw body, 32 elements": (
        "POST",
        "/v2/models/fp32/infer",
        np.arange(32, dtype=np.float32).tobytes(),
        RAW,
    ),
    # test_content_encoding_chunked_manually
    "raw body, chunked by hand": (
        "POST",
        "/v2/models/fp32/infer",
        CHUNKED,
        {**RAW, "Transfer-Encoding": "chunked"},
    ),
    # test_byte: one string, answered with its 4-byte length prefix.
    "raw body, one string": ("POST", "/v2/models/bytes1/infer", b"427", RAW),
    # test_multi_variable_dimensions
    "raw body, two variable dims": (
        "POST",
        "/v2/models/fp16/infer",
        np.ones([2, 2], dtype=np.float16).tobytes(),
        RAW,
    ),
    # test.sh's curl checks of binary_data and binary_data_output.
    "json outputs": ("POST", "/v2/models/simple/infer", _simple(), {}),
    "binary and json outputs asked": (
        "POST",
        "/v2/models/simple/infer",
        _simple(outputs=[_out("OUTPUT0", True), _out("OUTPUT1", False)]),
        {},
    ),
    "binary output asked, the other by default": (
        "POST",
        "/v2/models/simple/infer",
        _simple(outputs=[_out("OUTPUT0", True), _out("OUTPUT1")]),
        {},
    ),
    "binary_data_output for all": (
        "POST",
        "/v2/models/simple/infer",
        _simple(parameters={"binary_data_output": True}),
        {},
    ),
    "binary_data_output, one output json": (
        "POST",
        "/v2/models/simple/infer",
        _simple(
            parameters={"binary_data_output": True},
            outputs=[_out("OUTPUT0", False), _out("OUTPUT1")],
        ),
        {},
    ),
    # test.sh: a client given a URL with a base path reaches no route.
    "a base path before /v2": (
        "POST",
        "/base_path/v2/models/simple/infer",
        _simple(),
        {},
    ),
    # test_buffer_size_overflow's shapes (2.51 reads 'data' against them first).
    "a shape whose element count wraps": (
        "POST",
        "/v2/models/fp32/infer",
        _json_infer("FP32", [2**4, 2**60 + 2], [1.0]),
        {},
    ),
    "a shape whose byte size wraps": (
        "POST",
        "/v2/models/fp32/infer",
        _json_infer("FP32", [2**2, 2**60 + 2], [1.0]),
        {},
    ),
    # A zero dim after dims whose product overflows: no elements, so 'data' is
    # not read and the core words the shape (found by the differential fuzz).
    "a zero dim after an overflow": (
        "POST",
        "/v2/models/fp32/infer",
        _json_infer("FP32", [2, 2**63 - 1, 3, 0], [1.0]),
        {},
    ),
    # test_json_recursion_depth_limit: 2.51 has no nesting limit on 'data'.
    "strings nested 50 deep": (
        "POST",
        "/v2/models/bytes/infer",
        _json_infer("BYTES", [1, 1], _nested(50, "hello")),
        {},
    ),
    "strings nested 120 deep": (
        "POST",
        "/v2/models/bytes/infer",
        _json_infer("BYTES", [1, 1], _nested(120, "hello")),
        {},
    ),
    "integers nested 50 deep": (
        "POST",
        "/v2/models/int64/infer",
        _json_infer("INT64", [1, 1], _nested(50, 123)),
        {},
    ),
    "integers nested 120 deep": (
        "POST",
        "/v2/models/int64/infer",
        _json_infer("INT64", [1, 1], _nested(120, 123)),
        {},
    ),
    # test_repository_index_deeply_nested_json, at a depth 2.51 survives.
    "index with a nested ready": (
        "POST",
        "/v2/repository/index",
        b'{"ready":' + b"[" * 100 + b"true" + b"]" * 100 + b"}",
        {"Content-Type": "application/json"},
    ),
    # test.sh's simple_http_model_control.py: loads with a bad config override (on
    # "loadme", which nothing else asks for), then the model's readiness.
    "load, an override that is not JSON": (
        "POST",
        "/v2/repository/models/loadme/load",
        json.dumps({"parameters": {"config": "{"}}).encode(),
        {},
    ),
    "load, an override with an unknown field": (
        "POST",
        "/v2/repository/models/loadme/load",
        json.dumps({"parameters": {"config": '{"backend":"python","foo":1}'}}).encode(),
        {},
    ),
    "readiness after failed loads": ("GET", "/v2/models/loadme/ready", None, {}),
    "load, an override with a number as a string": (
        "POST",
        "/v2/repository/models/loadme/load",
        json.dumps(
            {"parameters": {"config": '{"backend":"python","max_batch_size":"4"}'}}
        ).encode(),
        {},
    ),
    "config after the load": ("GET", "/v2/models/loadme/config", None, {}),
}

# Refused before Triton's handler sets a content type (so text/plain, libevhtp's
# default): test_inference_header_content_length_out_of_range's header lengths out
# of range, and the infer, health and readiness checks made before the body is read.
EARLY_CASES: dict[str, tuple[str, str, bytes | None, dict[str, str]]] = {
    "header length past INT_MAX": (
        "POST",
        "/v2/models/fp32/infer",
        b'{"inputs":[]}',
        {"Inference-Header-Content-Length": "99999999999"},
    ),
    "negative header length": (
        "POST",
        "/v2/models/fp32/infer",
        b'{"inputs":[]}',
        {"Inference-Header-Content-Length": "-5"},
    ),
    "infer on an unknown model": ("POST", "/v2/models/nope/infer", b"{}", {}),
    "infer on a missing version": (
        "POST",
        "/v2/models/fp32/versions/7/infer",
        b"{}",
        {},
    ),
    "infer with an unknown encoding": (
        "POST",
        "/v2/models/fp32/infer",
        b"{}",
        {"Content-Encoding": "br"},
    ),
    "infer by GET": ("GET", "/v2/models/fp32/infer", None, {}),
    "liveness by POST": ("POST", "/v2/health/live", b"", {}),
    "readiness by POST": ("POST", "/v2/health/ready", b"", {}),
    "model readiness by POST": ("POST", "/v2/models/fp32/ready", b"", {}),
}
CASES.update(EARLY_CASES)


def _send(
    server: RunningServer,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
) -> tuple[int, str | None, str | None, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request(method, path, body, headers)
        reply = conn.getresponse()
        data = reply.read()
        return (
            reply.status,
            reply.getheader("Inference-Header-Content-Length"),
            reply.getheader("Content-Type"),
            data,
        )
    finally:
        conn.close()


def observe(server: RunningServer) -> dict[str, Any]:
    return {name: _send(server, *case) for name, case in CASES.items()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_http")
    for name, (datatype, dims, batch) in ECHOES.items():
        write_model(root, name, _echo_config(name, datatype, dims, batch), ECHO_MODEL)
    write_model(root, "simple", ADD_SUB_INT32, ADD_SUB_PY)
    return root


# Every model but "loadme", which only the load test below asks for.
ARGS = (
    "--model-control-mode=explicit",
    *(f"--load-model={name}" for name in [*ECHOES, "simple"] if name != "loadme"),
)


@pytest.fixture(scope="module", params=["native", "python"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(repo, *ARGS, f"--http-engine={request.param}") as running:
        yield running


@pytest.fixture(scope="module")
def answers(server: RunningServer) -> dict[str, Any]:
    return observe(server)


@pytest.fixture(scope="module")
def reference_answers(repo: Path) -> dict[str, Any]:
    if reference_command() is None:
        pytest.skip("TRITONX_REFERENCE_CMD is not set")
    with run_reference([repo], *ARGS) as reference:
        return observe(reference)


def _header(data: bytes, length: str | None) -> dict[str, Any]:
    return json.loads(data if length is None else data[: int(length)])


def _error(answer: tuple[Any, ...]) -> tuple[int, str]:
    """An answer's status and error message."""
    return answer[0], json.loads(answer[-1])["error"]


def test_expected_answers(answers: dict[str, Any]) -> None:
    """What L0_http expects, on tritonx alone."""
    for name in ("raw body, 8 elements", "raw body, chunked by hand"):
        status, length, content_type, data = answers[name]
        assert (status, content_type) == (200, "application/octet-stream"), name
        assert data[int(length) :] == FLOATS8, name
        assert _header(data, length)["outputs"][0]["shape"] == [1, 8], name
    status, length, _, data = answers["raw body, 32 elements"]
    assert status == 200
    assert data[int(length) :] == np.arange(32, dtype=np.float32).tobytes()
    status, length, _, data = answers["raw body, one string"]
    assert (status, data[int(length) :]) == (200, b"\x03\x00\x00\x00" + b"427")
    status, _, _, data = answers["raw body, two variable dims"]
    assert (status, json.loads(data)) == (
        400,
        {
            "error": "[request id: <id_unknown>] The shape of the raw input 'INPUT0' "
            "can not be deduced because there are more than one variable-sized "
            "dimension"
        },
    )
    sums = [2 * i for i in SIXTEEN]
    # Which outputs come as JSON data (the rest are binary).
    as_json = {
        "json outputs": {"OUTPUT0": sums, "OUTPUT1": [0] * 16},
        "binary and json outputs asked": {"OUTPUT1": [0] * 16},
        "binary output asked, the other by default": {"OUTPUT1": [0] * 16},
        "binary_data_output for all": {},
        # binary_data_output is for the outputs not listed: listed ones are JSON
        # unless they ask otherwise.
        "binary_data_output, one output json": {"OUTPUT0": sums, "OUTPUT1": [0] * 16},
    }
    for name, expected in as_json.items():
        status, length, _, data = answers[name]
        outputs = _header(data, length)["outputs"]
        seen = {o["name"]: o["data"] for o in outputs if "data" in o}
        assert (status, seen) == (200, expected), name
        assert len(outputs) == 2, name
    assert _error(answers["a base path before /v2"]) == (404, "Not Found")
    mismatch = "Unable to parse 'data': Shape does not match true shape of 'data' field"
    for name in ("a shape whose element count wraps", "a shape whose byte size wraps"):
        assert _error(answers[name]) == (500, mismatch), name
    status, message = _error(answers["a zero dim after an overflow"])
    assert status == 400
    assert message.startswith(
        "[request id: <id_unknown>] unexpected shape for input 'INPUT0' for model "
        "'fp32'. Expected [-1,-1], got [2,9223372036854775807,3,0]. "
    )
    for name, value in (("strings", "hello"), ("integers", 123)):
        for depth in (50, 120):
            status, _, _, data = answers[f"{name} nested {depth} deep"]
            assert (status, json.loads(data)["outputs"][0]["data"]) == (200, [value])
    assert _error(answers["index with a nested ready"]) == (
        500,
        "attempt to access JSON non-boolean as boolean",
    )
    failed = "failed to load 'loadme', failed to poll from model repository"
    for name in (
        "load, an override that is not JSON",
        "load, an override with an unknown field",
    ):
        assert _error(answers[name]) == (500, failed), name
    assert _error(answers["readiness after failed loads"]) == (
        400,
        "Model version not ready",
    )
    assert answers["load, an override with a number as a string"][0] == 200
    status, _, _, data = answers["config after the load"]
    assert (status, json.loads(data)["max_batch_size"]) == (200, 4)
    for name, value in (
        ("header length past INT_MAX", "99999999999"),
        ("negative header length", "-5"),
    ):
        message = f"inference header size should be in range (0, 13), got: {value}"
        assert _error(answers[name]) == (400, message), name
    for name, status in (
        ("infer on an unknown model", 404),
        ("infer on a missing version", 404),
        ("infer with an unknown encoding", 501),
        ("infer by GET", 405),
        ("liveness by POST", 405),
        ("readiness by POST", 405),
        ("model readiness by POST", 405),
    ):
        assert answers[name][0] == status, name
    for name in EARLY_CASES:
        assert answers[name][2] == "text/plain", name


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_answer_as_triton(
    answers: dict[str, Any], reference_answers: dict[str, Any], case: str
) -> None:
    assert answers[case] == reference_answers[case]


# -- tritonx alone ---------------------------------------------------------------------


def _live(server: RunningServer) -> int:
    return _send(server, "GET", "/v2/health/live", None, {})[0]


def test_load_with_a_file_name_past_name_max(server: RunningServer) -> None:
    """test_load_oversized_file_parameter: a file name longer than NAME_MAX fails the
    load (the answer of Tritons since 2.52) and the server stays up. Triton 2.51
    dies on it (an uncaught filesystem_error), so this is not compared."""
    body = {"parameters": {"file:" + "A" * 256: "YQ==", "config": "{}"}}
    status, _, _, data = _send(
        server,
        "POST",
        "/v2/repository/models/loadme/load",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    assert (status, json.loads(data)) == (
        500,
        {"error": "failed to load 'loadme', failed to poll from model repository"},
    )
    assert _live(server) == 200


def test_deeply_nested_index_request(server: RunningServer) -> None:
    """test_repository_index_deeply_nested_json: 250000 nested arrays (a body under
    the input size limit) are refused and the server stays up. Triton 2.51 overflows
    its stack parsing them (so this is not compared); later Tritons answer 400."""
    depth = 250000
    body = b'{"ready":' + b"[" * depth + b"true" + b"]" * depth + b"}"
    status, _, _, data = _send(
        server,
        "POST",
        "/v2/repository/index",
        body,
        {"Content-Type": "application/json"},
    )
    assert status in (400, 500)
    assert "nested too deeply" in json.loads(data)["error"]
    assert _live(server) == 200


def test_corrupt_gzip_body_is_refused(server: RunningServer) -> None:
    """A gzip body that does not inflate is refused. Triton 2.51's inflate loop
    only stops on Z_STREAM_ERROR, so a Z_DATA_ERROR leaves an empty body that it
    serves as an empty raw input (a 200): plainly a bug, not compared."""
    good = gzip.compress(json.dumps({"inputs": []}).encode())
    status, _, _, data = _send(
        server,
        "POST",
        "/v2/models/fp32/infer",
        b"not gzip" + good,
        {"Content-Encoding": "gzip"},
    )
    assert status == 400
    assert json.loads(data)["error"].startswith("failed to decompress the request")
