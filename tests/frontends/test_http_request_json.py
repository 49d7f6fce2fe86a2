"""Request JSON read as Triton 2.51's RapidJSON reads it, and BYTES outputs written
back as its RapidJSON writes them, by both HTTP engines.

Found by sending the same requests to tritonx's Python HTTP engine and to Triton (a
differential fuzz): the engine parsed with Python's json module, so a 5,000-digit
number came back as "Exceeds the limit (4300 digits) for integer string conversion
... sys.set_int_max_str_digits()", ``1e999999`` was taken as Infinity, a broken body
or binary-extension header was worded "Expecting value: line 1 column 13 (char 12)"
(Triton: "Invalid value. at 12"), a repeated member kept its last value (Triton: its
first), and a BYTES output that is not UTF-8 came back as ``\\udcff`` escapes instead
of its bytes. Also Triton's: an empty body without Inference-Header-Content-Length is
a raw request, and binary outputs of zero bytes alone need no binary framing. Each
request goes to both engines and, when a reference command is given, to Triton; the
expected answers below are Triton's.
"""

from __future__ import annotations

import http.client
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import ECHO_FP32_CONFIG as ECHO
from testmodels import ECHO_MODEL
from tritonclient.utils import InferenceServerException

TEXT = """
name: "text"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_STRING, dims: [ -1 ] } ]
"""

PARSE = "failed to parse the request JSON buffer: "
TOO_BIG = PARSE + "Number too big to be stored in double. at 19"
JSON = {"Content-Type": "application/json"}


def _echo(data: str) -> bytes:
    """An echo request with ``data`` as the JSON text of INPUT0's elements."""
    count = data.count(",") + 1
    return (
        f'{{"inputs":[{{"name":"INPUT0","datatype":"FP32","shape":[{count}],'
        f'"data":[{data}]}}]}}'
    ).encode()


def _parameter(value: str) -> bytes:
    """A request whose one parameter is ``value`` (at offset 19)."""
    return b'{"parameters":{"p":' + value.encode() + b"}}"


def _binary(header: bytes, length: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body: ``header`` (its first ``length`` bytes the JSON)
    and one FP32 element."""
    size = len(header) if length is None else length
    return header + b"\0\0\x80\x3f", {"Inference-Header-Content-Length": str(size)}


HEADER = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}'

# name -> (model, body, headers, Triton's status, Triton's error or echoed data)
CASES: dict[str, tuple[str, bytes, dict[str, str], int, Any]] = {
    # Numbers past a double: RapidJSON refuses them where Python's json takes them
    # (1e999999 as Infinity) or words its own error (past 4,300 digits).
    "5000-digit integer": ("echo", _parameter("9" * 5000), JSON, 500, TOO_BIG),
    "1e999999": ("echo", _parameter("1e999999"), JSON, 500, TOO_BIG),
    "-1e999999": ("echo", _parameter("-1e999999"), JSON, 500, TOO_BIG),
    "an exponent past 308 even for 0": (
        "echo",
        _parameter("0e400"),
        JSON,
        500,
        TOO_BIG,
    ),
    "309 digits from 2e308": ("echo", _parameter("2" + "0" * 308), JSON, 500, TOO_BIG),
    "309 digits below 2e308: a double": (
        "echo",
        _echo("1" + "0" * 308),
        JSON,
        200,
        [float("inf")],  # as FP32
    ),
    "2e308 is Infinity": ("echo", _echo("2e308"), JSON, 200, [float("inf")]),
    # RapidJSON's NaN and infinities, and what it makes of text after them.
    "Inf, -NaN, NaN.5, -Infe2": (
        "echo",
        _echo("Inf,-NaN,NaN.5,-Infe2"),
        JSON,
        200,
        [float("inf"), float("nan"), 0.5, -0.0],
    ),
    "Infinit": ("echo", _echo("Infinit"), JSON, 500, PARSE + "Invalid value. at 73"),
    # An object's repeated member: the first one counts.
    "repeated data": (
        "echo",
        b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1],'
        b'"data":[1],"data":[2]}]}',
        JSON,
        200,
        [1.0],
    ),
    # A repeated request parameter: Triton reads each name by a lookup, so the
    # first value counts every time (the native engine checked the second).
    "repeated parameter": (
        "echo",
        b'{"parameters":{"priority":1,"priority":"x"},' + _echo("5")[1:],
        JSON,
        200,
        [5.0],
    ),
    # The text ends at a NUL byte; a byte order mark in front is skipped.
    "after a NUL byte": ("echo", _echo("3") + b"\0}", JSON, 200, [3.0]),
    "byte order mark": ("echo", b"\xef\xbb\xbf" + _echo("4"), JSON, 200, [4.0]),
    "byte order mark, then an error": (
        "echo",
        b"\xef\xbb\xbf]",
        JSON,
        500,
        PARSE + "Invalid value. at 3",
    ),
    # Syntax errors, worded as RapidJSON words them, at its offsets.
    "unfinished": ("echo", b'{"inputs":[', JSON, 500, PARSE + "Invalid value. at 11"),
    "missing colon": (
        "echo",
        b'{"inputs" []}',
        JSON,
        500,
        PARSE + "Missing a colon after a name of object member. at 10",
    ),
    "missing comma": (
        "echo",
        b"[1 2]",
        JSON,
        500,
        PARSE + "Missing a comma or ']' after an array element. at 3",
    ),
    "trailing comma": (
        "echo",
        b'{"id":"a",}',
        JSON,
        500,
        PARSE + "Missing a name for object member. at 10",
    ),
    "bad escape": (
        "echo",
        b'{"id":"\\x"}',
        JSON,
        500,
        PARSE + "Invalid escape character in string. at 7",
    ),
    "bad hex escape": (
        "echo",
        b'{"id":"\\u12G4"}',
        JSON,
        500,
        PARSE + "Incorrect hex digit after \\u escape in string. at 7",
    ),
    "control character": (
        "echo",
        b'{"id":"a\x01"}',
        JSON,
        500,
        PARSE + "Invalid escape character in string. at 8",
    ),
    "unterminated string": (
        "echo",
        b'{"id":"abc',
        JSON,
        500,
        PARSE + "Missing a closing quotation mark in string. at 10",
    ),
    "a second value": (
        "echo",
        b"{} {}",
        JSON,
        500,
        PARSE + "The document root must not be followed by other values. at 3",
    ),
    # Without Inference-Header-Content-Length, Triton takes the body's length for
    # the JSON's: an empty body is no JSON but a raw request (of zero bytes).
    "empty body": ("echo", b"", JSON, 200, {"binary_data_size": 0}),
    # A raw request's outputs are binary; one of zero bytes needs no binary framing
    # (no Inference-Header-Content-Length), the answer is JSON.
    "zero-byte binary output": (
        "echo",
        b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[0],"data":[]}],'
        b'"parameters":{"binary_data_output":true}}',
        JSON,
        200,
        {"binary_data_size": 0},
    ),
    "only blanks": ("echo", b" \n", JSON, 500, PARSE + "The document is empty. at 2"),
    "missing fraction": (
        "echo",
        _parameter("1.e5"),
        JSON,
        500,
        PARSE + "Miss fraction part in number. at 21",
    ),
    "missing exponent": (
        "echo",
        _parameter("1e+"),
        JSON,
        500,
        PARSE + "Miss exponent in number. at 22",
    ),
    # The JSON header of a binary-extension body: the same parser, the same words.
    "binary header, unfinished": (
        "echo",
        *_binary(b'{"inputs":[{"name":'),
        500,
        PARSE + "Invalid value. at 19",
    ),
    "binary header, cut by its length": (
        "echo",
        *_binary(HEADER, 27),
        500,
        PARSE + "Missing a comma or '}' after an object member. at 27",
    ),
    "binary header, too big a number": (
        "echo",
        *_binary(_parameter("1" * 400)),
        500,
        TOO_BIG,
    ),
    "binary header": ("echo", *_binary(HEADER), 200, [1.0]),
    # binary_data_output is for the outputs a request does not list: a listed one
    # is JSON unless its own binary_data says otherwise.
    "listed output without binary_data": (
        "echo",
        *_binary(
            HEADER[:-1] + b',"outputs":[{"name":"OUTPUT0","parameters":{}}],'
            b'"parameters":{"binary_data_output":true}}'
        ),
        200,
        [1.0],
    ),
}


def _answer(status: int, body: bytes, binary: bool) -> tuple[int, Any]:
    if binary:
        return status, "binary"
    doc = json.loads(body or b"{}")
    if status != 200:
        return status, doc.get("error", "")
    output = doc["outputs"][0]
    return status, output.get("data", output.get("parameters"))


def observe(server: RunningServer) -> dict[str, tuple[int, str]]:
    """Each case's status and its error or echoed data (as JSON text: NaN == NaN)."""
    answers = {}
    for name, (model, body, headers, _, _) in CASES.items():
        conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
        try:
            conn.request("POST", f"/v2/models/{model}/infer", body, headers)
            response = conn.getresponse()
            binary = response.getheader("Inference-Header-Content-Length") is not None
            status, answer = _answer(response.status, response.read(), binary)
            answers[name] = (status, json.dumps(answer))
        finally:
            conn.close()
    return answers


def expected() -> dict[str, tuple[int, str]]:
    return {name: (case[3], json.dumps(case[4])) for name, case in CASES.items()}


# The request id, echoed: a control character and a letter outside ASCII.
ID = "\x1a\xe9"
# BYTES output elements: not UTF-8, UTF-8, and what the writer escapes.
ELEMENTS = [b"\xff\xfe", "h\xe9llo".encode(), b'q"\\\n\x01\x7f/']
# Triton's JSON for them: the bytes as they are, '"', '\\' and control characters
# escaped (\u00XX in upper-case hex).
ELEMENTS_JSON = b'["\xff\xfe","h\xc3\xa9llo","q\\"\\\\\\n\\u0001\x7f/"]'


def text_response(server: RunningServer, elements: list[bytes]) -> bytes:
    """The whole body answering a ``text`` request (id ``ID``) of ``elements``
    (sent in binary) with OUTPUT0 asked for as JSON."""
    blob = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = json.dumps(
        {
            "id": ID,
            "inputs": [
                {
                    "name": "INPUT0",
                    "datatype": "BYTES",
                    "shape": [len(elements)],
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": False}}],
        }
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        conn.request(
            "POST",
            "/v2/models/text/infer",
            header + blob,
            {"Inference-Header-Content-Length": str(len(header))},
        )
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def client_outputs(server: RunningServer, elements: list[bytes]) -> Any:
    """What tritonclient makes of OUTPUT0 as JSON: the strings, or its error."""
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.ports['http']}")
    try:
        tensor = httpclient.InferInput("INPUT0", [len(elements)], "BYTES")
        tensor.set_data_from_numpy(np.array(elements, dtype=np.object_))
        wanted = httpclient.InferRequestedOutput("OUTPUT0", binary_data=False)
        try:
            result = client.infer("text", [tensor], outputs=[wanted])
        except InferenceServerException as error:
            return str(error).split(" UnicodeError")[0]
        return result.as_numpy("OUTPUT0").tolist()
    finally:
        client.close()


def observe_outputs(server: RunningServer) -> dict[str, Any]:
    return {
        "body": text_response(server, ELEMENTS),
        "client, not UTF-8": client_outputs(server, ELEMENTS[:1]),
        "client, UTF-8": client_outputs(server, ELEMENTS[1:]),
    }


EXPECTED_OUTPUTS = {
    "body": b'{"id":"\\u001A\xc3\xa9","model_name":"text","model_version":"1",'
    b'"outputs":[{"name":"OUTPUT0",'
    b'"datatype":"BYTES","shape":[3],"data":' + ELEMENTS_JSON + b"}]}",
    # tritonclient cannot read it as JSON: it says so (before, the Python engine's
    # \udcXX escapes reached it as strings that were not the model's bytes).
    "client, not UTF-8": "Failed to encode using UTF-8. Please use binary_data=True, "
    "if you want to pass a byte array.",
    "client, UTF-8": ["h\xe9llo", 'q"\\\n\x01\x7f/'],
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("request_json")
    for name, config in (("echo", ECHO), ("text", TEXT)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        (root / name / "1" / "model.py").write_text(ECHO_MODEL)
    return root


@pytest.fixture(scope="module", params=["native", "python"])
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(repo, f"--http-engine={request.param}") as running:
        yield running


@pytest.fixture(scope="module")
def answers(server: RunningServer) -> dict[str, tuple[int, str]]:
    return observe(server)


@pytest.mark.parametrize("case", sorted(CASES))
def test_request_json_read_as_triton_reads_it(
    answers: dict[str, tuple[int, str]], case: str
) -> None:
    assert answers[case] == expected()[case]


def test_bytes_outputs_written_as_triton_writes_them(server: RunningServer) -> None:
    assert observe_outputs(server) == EXPECTED_OUTPUTS


@pytest.mark.skipif(reference_command() is None, reason="no reference Triton")
def test_the_expected_answers_are_tritons(repo: Path) -> None:
    with run_reference([repo]) as reference:
        assert observe(reference) == expected()
        assert observe_outputs(reference) == EXPECTED_OUTPUTS
