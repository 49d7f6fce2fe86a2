"""JSON values an HTTP infer request carries that Triton 2.51 refuses or reads in
its own way, against a real server (both HTTP engines): values out of range and
lone surrogates (400 with Triton's words, where Triton answers 500), integer
parameters past int64 (doubles), request parameters that are no object, members
that are JSON null (there, of the wrong type), and nesting too deep to parse. The
hostile-input tests (sizes, heads, memory, liveness) are test_http_hardening.py's;
both use the server of tests/hardeningutil.py.
"""

# The server fixture is imported by name for pytest to find; the tests' same-named
# parameters are that fixture, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import json

import pytest
from hardeningutil import FP32_INPUT, error_text, post, server  # noqa: F401
from serverutil import RunningServer

U64 = 2**64


def _empty_binary(dim: int) -> dict[str, object]:
    return {
        "name": "INPUT0",
        "datatype": "FP32",
        "shape": [dim],
        "parameters": {"binary_data_size": 0},
    }


UNSIGNED = "attempt to access JSON non-unsigned-integer as unsigned-integer"
SURROGATE = (
    "failed to parse the request JSON buffer: The surrogate pair in string is invalid."
)
# What reached the core as a binding error before (HTTP 500 with pybind11 text);
# now 400 with Triton's message for the member (checked against tritonserver
# 2.51, which answers these with status 500). json.dumps writes lone surrogates
# as \\udXXX escapes, as a hostile client would.
BAD_JSON: dict[str, tuple[dict[str, object], str]] = {
    "dim 2^64": (
        {"inputs": [_empty_binary(U64)]},
        f"Unable to parse 'shape': {UNSIGNED}",
    ),
    "dim 2^63": (
        {"inputs": [_empty_binary(2**63)]},
        "Unable to parse 'shape': dimension 9223372036854775808 of input 'INPUT0' "
        "is larger than the maximum of 9223372036854775807",
    ),
    "priority 2^70": (
        {"parameters": {"priority": 2**70}, "inputs": []},
        f"Unable to parse 'priority': {UNSIGNED}",
    ),
    "priority -1": (
        {"parameters": {"priority": -1}, "inputs": []},
        f"Unable to parse 'priority': {UNSIGNED}",
    ),
    "timeout 2^70": (
        {"parameters": {"timeout": 2**70}, "inputs": []},
        f"Unable to parse 'timeout': {UNSIGNED}",
    ),
    "sequence_id 2^65": (
        {"parameters": {"sequence_id": 2**65}, "inputs": []},
        "Unable to parse 'sequence_id': attempt to access JSON non-string as string",
    ),
    "sequence_start 1": (
        {"parameters": {"sequence_start": 1}, "inputs": []},
        "Unable to parse 'sequence_start': attempt to access JSON non-boolean as "
        "boolean",
    ),
    "surrogate id": ({"id": "\ud800", "inputs": [FP32_INPUT]}, SURROGATE),
    "surrogate input name": (
        {"inputs": [{**FP32_INPUT, "name": "\ud800"}]},
        SURROGATE,
    ),
    "surrogate parameter key": (
        {"parameters": {"\udfff": 1}, "inputs": [FP32_INPUT]},
        SURROGATE,
    ),
    "surrogate parameter value": (
        {"parameters": {"k": "\ud800"}, "inputs": [FP32_INPUT]},
        SURROGATE,
    ),
    "surrogate output name": (
        {"inputs": [FP32_INPUT], "outputs": [{"name": "\ud800"}]},
        SURROGATE,
    ),
    "surrogate BYTES element": (
        {
            "inputs": [
                {"name": "S", "datatype": "BYTES", "shape": [1], "data": ["\ud800"]}
            ]
        },
        SURROGATE,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_JSON))
def test_out_of_range_json_values_are_400(server: RunningServer, case: str) -> None:
    doc, message = BAD_JSON[case]
    body = json.dumps(doc).encode()
    assert b"\\ud" in body or "surrogate" not in case
    status, data = post(server, "/v2/models/identity/infer", body)
    assert (status, error_text(data)) == (400, message)


def test_large_integers_reach_the_model_as_doubles(server: RunningServer) -> None:
    """Triton keeps integer parameters beyond int64 as doubles; a surrogate pair
    (valid UTF-16) is one character, not an error."""
    doc = {
        "id": "\U0001f600",  # json.dumps writes it as a \\ud83d\\ude00 pair
        "parameters": {"big": 2**70, "neg": -(2**63) - 1, "u": U64 - 1},
        "inputs": [FP32_INPUT],
        "outputs": [{"name": "PARAMS", "parameters": {"binary_data": False}}],
    }
    status, data = post(server, "/v2/models/params/infer", json.dumps(doc).encode())
    assert status == 200, data
    doc = json.loads(data)
    assert doc["id"] == "\U0001f600"
    seen = json.loads(doc["outputs"][0]["data"][0])
    assert seen == {
        "big": float(2**70),
        "neg": float(-(2**63) - 1),
        "u": float(U64 - 1),
    }
    assert all(isinstance(v, float) for v in seen.values())


@pytest.mark.parametrize("parameters", ["x", 5, [1], None, True])
def test_request_parameters_that_are_no_object(
    server: RunningServer, parameters: object
) -> None:
    """Triton 2.51's status and words (checked against tritonserver 2.51)."""
    body = json.dumps({"parameters": parameters, "inputs": [FP32_INPUT]}).encode()
    status, data = post(server, "/v2/models/identity/infer", body)
    assert (status, error_text(data)) == (
        500,
        "failed to get request params.: attempt to get members for non-object",
    )


NOT_STRING = "attempt to access JSON non-string as string"
NOT_ARRAY = "attempt to access JSON non-array as array"
# A member that is there but null is a value of the wrong type (checked against
# tritonserver 2.51, 500 for each); null `parameters` of an input or output count
# as absent there and here.
NULL_MEMBERS: dict[str, tuple[dict[str, object], str]] = {
    "id": ({"id": None, "inputs": [FP32_INPUT]}, f"Unable to parse 'id': {NOT_STRING}"),
    "inputs": ({"inputs": None}, f"Unable to parse 'inputs': {NOT_ARRAY}"),
    "outputs": (
        {"inputs": [FP32_INPUT], "outputs": None},
        f"Unable to parse 'outputs': {NOT_ARRAY}",
    ),
    "input name": (
        {"inputs": [{**FP32_INPUT, "name": None}]},
        f"Unable to parse 'name': {NOT_STRING}",
    ),
    "datatype": (
        {"inputs": [{**FP32_INPUT, "datatype": None}]},
        f"Unable to parse 'datatype': {NOT_STRING}",
    ),
    "shape": (
        {"inputs": [{**FP32_INPUT, "shape": None}]},
        f"Unable to parse 'shape': {NOT_ARRAY}",
    ),
    "output name": (
        {"inputs": [FP32_INPUT], "outputs": [{"name": None}]},
        f"Unable to parse 'name': {NOT_STRING}",
    ),
    "binary_data_output": (
        {"inputs": [FP32_INPUT], "parameters": {"binary_data_output": None}},
        "Unable to parse 'binary_data_output': attempt to access JSON non-boolean as "
        "boolean",
    ),
}


@pytest.mark.parametrize("case", sorted(NULL_MEMBERS))
def test_null_members_are_values_of_the_wrong_type(
    server: RunningServer, case: str
) -> None:
    doc, message = NULL_MEMBERS[case]
    status, data = post(server, "/v2/models/identity/infer", json.dumps(doc).encode())
    assert (status, error_text(data)) == (500, message)


def test_null_parameters_of_inputs_and_outputs_are_absent(
    server: RunningServer,
) -> None:
    doc = {
        "inputs": [{**FP32_INPUT, "parameters": None}],
        "outputs": [{"name": "OUTPUT0", "parameters": None}],
    }
    status, data = post(server, "/v2/models/identity/infer", json.dumps(doc).encode())
    assert status == 200, data


@pytest.mark.parametrize("path", ["/v2/repository/index", "/v2/models/identity/infer"])
def test_deep_nesting_is_a_parseerror_text(server: RunningServer, path: str) -> None:
    status, data = post(server, path, b"[" * 100_000 + b"]" * 100_000)
    assert status == 500  # Triton's status for JSON it cannot parse
    assert error_text(data).startswith("failed to parse the request JSON buffer")
