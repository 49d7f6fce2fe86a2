"""Which error an HTTP infer body with several faults gets: Triton 2.51's order.

Found by sending the same mutated bodies to tritonx and to Triton (a differential
fuzz): Triton refuses bad request parameters before it reads ``inputs``, looks for an
input's data members before its name, reads ``data`` element by element (one past
the shape's count is refused before its type), reads none for a shape of zero elements
(a shape without dims counts as zero there), leaves counting BYTES elements to its
core, whose walk counts a cut string as one, and checks the requested outputs before
the inputs. A raw body (header length 0, or an empty body) is deduced as its core
does. Each body goes to both HTTP engines and, when a reference command is given,
to Triton; the expected answers below are Triton's.
"""

from __future__ import annotations

import http.client
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import ECHO_MODEL

BATCHED = """
name: "batched"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] } ]
"""
PAIR = """
name: "pair"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] },
        { name: "INPUT1", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] } ]
"""
TEXT = """
name: "text"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
"""

RESERVED = (
    "parameter keys starting with 'triton_' are reserved for Triton usage and should "
    "not be specified."
)
NO_SOURCE = (
    "Input must set only one of the following fields: 'data', 'binary_data_size' in "
    "'parameters', 'shared_memory_region' in 'parameters'. But no field is set"
)
UNKNOWN = "[request id: <id_unknown>] "


def _fp32(name: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": shape, "data": data}


def _text(shape: list[int], data: list[str]) -> dict[str, Any]:
    return {"name": "INPUT0", "datatype": "BYTES", "shape": shape, "data": data}


# name -> (model, body, Triton's status, Triton's error)
CASES: dict[str, tuple[str, dict[str, Any], int, str]] = {
    "reserved parameter before a missing inputs": (
        "pair",
        {"parameters": {"triton_x": 1}},
        400,
        RESERVED,
    ),
    "reserved parameter before an input's data": (
        "pair",
        {"inputs": [_fp32("INPUT0", [4], [1, 2, 3])], "parameters": {"triton_x": 1}},
        400,
        RESERVED,
    ),
    "an input that is a number": ("pair", {"inputs": [1]}, 400, NO_SOURCE),
    "an input that is null": ("pair", {"inputs": [None]}, 400, NO_SOURCE),
    "an input that is a list": ("pair", {"inputs": [[]]}, 400, NO_SOURCE),
    "no dims with batching: data not read": (
        "batched",
        {"inputs": [_fp32("INPUT0", [], [1, 2])]},
        400,
        f"{UNKNOWN}input 'INPUT0' has no shape but model requires batch dimension "
        "for 'batched'",
    ),
    "no dims with batching: data not even typed": (
        "batched",
        {"inputs": [_fp32("INPUT0", [], "x")]},
        400,
        f"{UNKNOWN}input 'INPUT0' has no shape but model requires batch dimension "
        "for 'batched'",
    ),
    "no dims without batching": (
        "pair",
        {"inputs": [_fp32("INPUT0", [], [1, 2, 3, 4]), _fp32("INPUT1", [4], [1] * 4)]},
        400,
        f"{UNKNOWN}unexpected shape for input 'INPUT0' for model 'pair'. Expected [4], "
        "got []. ",
    ),
    "an element past the count before its type": (
        "batched",
        {"inputs": [_fp32("INPUT0", [1, 2], [1, 2, {"a": 1}])]},
        500,
        "Unable to parse 'data': Shape does not match true shape of 'data' field",
    ),
    "a reserved key before its value's type": (
        "pair",
        {"inputs": [], "parameters": {"triton_x": None}},
        400,
        RESERVED,
    ),
    "requested outputs before inputs": (
        "pair",
        {"inputs": [_fp32("INPUT0", [4], [1] * 4)], "outputs": [{"name": "nope"}]},
        400,
        "unexpected inference output 'nope' for model 'pair'",
    ),
    "the least of several unknown outputs": (
        "pair",
        {"inputs": [], "outputs": [{"name": n} for n in ("zz", "OUTPUT0", "INPUT2")]},
        400,
        "unexpected inference output 'INPUT2' for model 'pair'",
    ),
    "an input named twice, before its data": (
        "pair",
        {"inputs": [_fp32("INPUT0", [4], [1] * 4), _fp32("INPUT0", [4], "x")]},
        400,
        f"{UNKNOWN}input 'INPUT0' already exists in request",
    ),
    "data not an array before an unknown type": (
        "batched",
        {"inputs": [{**_fp32("INPUT0", [1, 1], "x"), "datatype": ""}]},
        500,
        "Unable to parse 'data': attempt to access JSON non-array as array",
    ),
    "an unknown type with nothing to read": (
        "batched",
        {"inputs": [{**_fp32("INPUT0", [1, 0], []), "datatype": "FLOAT"}]},
        400,
        f"{UNKNOWN}inference input 'INPUT0' data-type is '<invalid>', but model "
        "'batched' expects 'FP32'",
    ),
    "too few strings": (
        "text",
        {"inputs": [_text([3, 3], ["a", "b"])]},
        400,
        f"{UNKNOWN}expected 9 string elements for inference input 'INPUT0' for model "
        "'text', got 2",
    ),
    "too many strings": (
        "text",
        {"inputs": [_text([1, 2], ["a", "b", "c"])]},
        400,
        f"{UNKNOWN}unexpected number of string elements 3 for inference input "
        "'INPUT0' for model 'text', expecting 2",
    ),
    "zero strings wanted": ("text", {"inputs": [_text([1, 0], ["a"])]}, 200, ""),
}


def _strings(*items: bytes, cut: int = 0) -> bytes:
    """BYTES wire form of ``items``, its last ``cut`` bytes missing."""
    wire = b"".join(struct.pack("<I", len(item)) + item for item in items)
    return wire[: len(wire) - cut]


# Binary-extension BYTES inputs of model "text": name -> (shape, bytes, status, error)
BINARY_CASES: dict[str, tuple[list[int], bytes, int, str]] = {
    "a cut string counts as one": (
        [1, 2],
        _strings(b"abc", cut=1),
        400,
        f"{UNKNOWN}expected 2 string elements for inference input 'INPUT0' for model "
        "'text', got 1",
    ),
    "a cut string when the count is right": (
        [1, 2],
        _strings(b"ab", b"xyz", cut=1),
        400,
        "incomplete string data for inference input 'INPUT0', expecting string of "
        "length 3 but only 2 bytes available",
    ),
    "one string too many, cut": (
        [1, 1],
        _strings(b"a", b"bcd", cut=2),
        400,
        f"{UNKNOWN}unexpected number of string elements 2 for inference input "
        "'INPUT0' for model 'text', expecting 1",
    ),
}


# Raw bodies (the bytes of a model's only input): name -> (model, body, header
# length header or None, status, error)
RAW_CASES: dict[str, tuple[str, bytes, str | None, int, str]] = {
    "raw strings need an input of shape [1]": (
        "text",
        b"abc",
        "0",
        400,
        f"{UNKNOWN}For BYTE datatype raw input 'INPUT0', the model must have input "
        "shape [1]",
    ),
    "raw bytes of a wrong size": (
        "pair",
        b"\0" * 7,
        "0",
        400,
        f"{UNKNOWN}Raw request must only have 1 input (found 1) to be deduced but "
        "got 2 inputs in 'pair' model configuration",
    ),
    "raw bytes, a partial element": (
        "batched",
        b"\0" * 7,
        "0",
        400,
        f"{UNKNOWN}input byte size mismatch for input 'raw_input' for model "
        "'batched'. Expected 4, got 7",
    ),
    "an empty body is a raw one": ("batched", b"", None, 200, ""),
    # Not raw, but read as Triton's JSON reader reads them.
    "a body that starts by closing": (
        "batched",
        b" ]",
        None,
        500,
        "failed to parse the request JSON buffer: Invalid value. at 1",
    ),
    "a byte order mark is skipped": (
        "batched",
        b"\xef\xbb\xbf{}",
        None,
        500,
        "Unable to parse 'inputs': attempt to access non-existing object member "
        "'inputs'",
    ),
}


def _binary_body(shape: list[int], blob: bytes) -> tuple[bytes, dict[str, str]]:
    parameters = {"binary_data_size": len(blob)}
    tensor = {"name": "INPUT0", "datatype": "BYTES", "shape": shape}
    header = json.dumps({"inputs": [{**tensor, "parameters": parameters}]}).encode()
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


def _repo(root: Path) -> Path:
    for name, config in (("batched", BATCHED), ("pair", PAIR), ("text", TEXT)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        (root / name / "1" / "model.py").write_text(ECHO_MODEL)
    return root


def observe(server: RunningServer) -> dict[str, tuple[int, str]]:
    sends = {
        name: (model, json.dumps(body).encode(), {})
        for name, (model, body, _, _) in CASES.items()
    }
    for name, (shape, blob, _, _) in BINARY_CASES.items():
        sends[name] = ("text", *_binary_body(shape, blob))
    for name, (model, body, length, _, _) in RAW_CASES.items():
        header = {} if length is None else {"Inference-Header-Content-Length": length}
        sends[name] = (model, body, header)
    answers = {}
    for name, (model, body, headers) in sends.items():
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
        try:
            conn.request("POST", f"/v2/models/{model}/infer", body, headers)
            response = conn.getresponse()
            data = response.read()
            if response.getheader("Inference-Header-Content-Length") is None:
                error = json.loads(data or b"{}").get("error", "")
            else:
                error = ""  # a binary answer: no error
            answers[name] = (response.status, error)
        finally:
            conn.close()
    return answers


def expected() -> dict[str, tuple[int, str]]:
    answers = {name: (case[2], case[3]) for name, case in CASES.items()}
    answers.update({name: (c[2], c[3]) for name, c in BINARY_CASES.items()})
    answers.update({name: (c[3], c[4]) for name, c in RAW_CASES.items()})
    return answers


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _repo(tmp_path_factory.mktemp("check_order"))


@pytest.fixture(scope="module", params=["native", "python"])
def answers(repo: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    with run_server(repo, f"--http-engine={request.param}") as server:
        yield observe(server)


@pytest.mark.parametrize("case", sorted([*CASES, *BINARY_CASES, *RAW_CASES]))
def test_first_fault_in_tritons_order(answers: dict[str, Any], case: str) -> None:
    assert answers[case] == expected()[case]


@pytest.mark.skipif(reference_command() is None, reason="no reference Triton")
def test_the_expected_answers_are_tritons(repo: Path) -> None:
    with run_reference([repo]) as server:
        triton = observe(server)
    assert triton == expected()
