"""The differential fuzz suite's own pieces, without a reference: the allowlist
excuses exactly the requests it is about, and its request analyses are right."""

from __future__ import annotations

import json
from typing import Any

import pytest
from diff_allowlist import excused
from diff_allowlist_http import odd_target
from diffutil import (
    INVALID_ENCODING,
    PARSE,
    Answer,
    Sent,
    cut_message,
    json_depth,
    lone_surrogates,
    string_not_utf8,
    triton_json_allocation,
)
from tritonclient.grpc import service_pb2

# -- the allowlist's own checks -------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (rb'"\ud800"', (True, False)),
        (rb'"\udfff"', (False, True)),
        (rb'"\ud83d\ude00"', (False, False)),
        (rb'"\udc00\ud800"', (True, True)),
        (rb'"\ud800\u0041"', (True, False)),
        (rb'"\ud800\ud800\udc00"', (True, False)),
        (rb'"\\ud800"', (False, False)),  # an escaped backslash, then text
        (rb'"\ud800" "\udc00"', (True, True)),
    ],
)
def test_lone_surrogates(text: bytes, expected: tuple[bool, bool]) -> None:
    assert lone_surrogates(text) == expected


def test_triton_json_allocation() -> None:
    def body(shape: str) -> bytes:
        return b'{"inputs":[{"name":"I","shape":' + shape.encode() + b',"data":[1]}]}'

    assert triton_json_allocation(body("[4294967297,1]")) == 8 * 4294967297
    assert triton_json_allocation(body("[9223372036854775808,4]")) == 0  # wraps
    assert triton_json_allocation(body("[-2]")) == 16
    assert triton_json_allocation(body("[2,3]")) == 48
    assert triton_json_allocation(b'{"inputs":[{"shape":[4294967297]}]}') == 0
    assert triton_json_allocation(b"[" * 5000 + b"]" * 5000) == 0


def test_json_depth() -> None:
    assert json_depth(b'{"a":[[1],{"b":"[[[["}]}') == 3
    assert json_depth(b"[" * 1000 + b"]" * 1000) == 1000
    assert json_depth(b'"\\"[["') == 0


def test_string_not_utf8() -> None:
    assert string_not_utf8(b'{"a": "x\xed\xb3\xbfy"}')
    assert string_not_utf8(b'{"\xff": 1}')
    assert not string_not_utf8(b'{"a": "h\xc3\xa9", "b": "\\u00ff"}')
    assert not string_not_utf8(b"[1, \xff]")  # not in a string: a syntax error


def test_cut_message() -> None:
    request = service_pb2.ModelInferRequest(id="a\0b", model_name="m")
    request.inputs.add(name="I\0x", datatype="FP32\0").parameters[
        "p\0q"
    ].string_param = "v\0w"
    request.raw_input_contents.append(b"\0\0")
    assert cut_message(request)
    assert (request.id, request.inputs[0].name, request.inputs[0].datatype) == (
        "a",
        "I",
        "FP32",
    )
    assert dict(request.inputs[0].parameters) == {
        "p": service_pb2.InferParameter(string_param="v")
    }
    assert request.raw_input_contents[0] == b"\0\0"  # bytes are no C strings
    two_keys = service_pb2.ModelInferRequest()
    two_keys.parameters["k\0x"].bool_param = True
    two_keys.parameters["k"].bool_param = False
    assert not cut_message(two_keys)


@pytest.mark.parametrize(
    "target, odd",
    [
        (b"/v2/models/m/ready?a=b&c=%41", False),
        (b"/v2/models/m\x7f/ready", True),
        (b"/a{b}", True),
        (b"//]/4/", True),
        (b"//[/", True),
        (b"//a:b/", True),
        (b"//a@b@c/", True),
        (b"//a%zz/", True),
        (b"//a:1/x", False),
        (b"//a@b/", False),
        (b"//[::1]/", False),
        (b"//a%41?x", False),
        (b"//", False),
        (b"///x", False),
    ],
)
def test_odd_target(target: bytes, odd: bool) -> None:
    """As evhttp reads targets (checked against the native engine)."""
    assert odd_target(target) == odd


def _input_names(wire: bytes) -> Answer:
    """A stand-in for tritonx: the names of the request's inputs."""
    request = service_pb2.ModelInferRequest.FromString(wire)
    return Answer("INVALID_ARGUMENT", ",".join(repr(t.name) for t in request.inputs))


def _named_alone(wire: bytes) -> Answer:
    """A stand-in for tritonx: the first parameter of the request named invalid."""
    request = service_pb2.ModelInferRequest.FromString(wire)
    return Answer("INVALID_ARGUMENT", BAD_TYPE.format(sorted(request.parameters)[0]))


BAD_PRIORITY = "invalid value for 'priority', expected value >= 0."


def _negative_priority(invalid_keys: list[str]) -> Any:
    """A request with priority -1 and parameters of no type named ``invalid_keys``."""
    request = _request(unset_parameters=invalid_keys)
    request.parameters["priority"].int64_param = -1
    return request


def _priority_first(wire: bytes) -> Answer:
    """A stand-in for tritonx: a negative priority is refused before the other
    parameters (it sorts first among this test's keys)."""
    request = service_pb2.ModelInferRequest.FromString(wire)
    if request.parameters["priority"].int64_param < 0:
        return Answer("INVALID_ARGUMENT", BAD_PRIORITY)
    return _named_alone(wire)


def _http(method: str, path: str, json_text: bytes = b"", replay: Any = None) -> Sent:
    wire = f"{method} {path} HTTP/1.1\r\n\r\n".encode() + json_text
    return Sent("http", wire, json_text, ask_ours=replay)


def _grpc(request: Any, replay: Any = None) -> Sent:
    return Sent("grpc", request.SerializeToString(), grpc=request, ask_ours=replay)


def _request(**fields: Any) -> Any:
    request = service_pb2.ModelInferRequest(model_name="identity")
    for name, shape in fields.pop("inputs", {}).items():
        request.inputs.add(name=name, datatype="FP32", shape=shape)
    for key in fields.pop("unset_parameters", []):
        request.parameters[key].SetInParent()
    for key, value in fields.items():
        setattr(request, key, value)
    return request


NOT_UNSIGNED = "attempt to access JSON non-unsigned-integer as unsigned-integer"
DIM = "9223372036854775808"
DIM_MESSAGE = (
    f"Unable to parse 'shape': dimension {DIM} of input 'INPUT0' is larger than the "
    "maximum of 9223372036854775807"
)
NUL_BODY = b'{"id": "ab\\u0000cd", "parameters": {"k\\u0000x": 1}}'
METADATA = {"name": "triton", "version": "0.1.0", "extensions": ["a", "b"]}
TRITON_METADATA = {
    **METADATA,
    "version": "2.51.0",
    "extensions": ["a", "cuda_shared_memory", "b"],
}
BAD_TYPE = "invalid value type for '{}' parameter, expected int64_param, bool_param, or string_param."
RESERVED = (
    "parameter keys starting with 'triton_' are reserved for Triton usage. Only the "
    "following keys starting with 'triton_' are allowed: "
    "triton_enable_empty_final_response"
)


TOO_BIG_BATCH = (
    "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'm'"
)
SHAPE_NOT_DATA = Answer(
    "500", "Unable to parse 'data': Shape does not match true shape of 'data' field"
)
INT64_MAX = 2**63 - 1
SIZE_MESSAGE = f"{{}} for tensor 'INPUT0' exceeds maximum size of {INT64_MAX}"


def _wrapping(data: list[object], dim: int = 2**32) -> bytes:
    """add_sub's inputs: INPUT0 with data for a shape of ``dim`` x 2^32 elements,
    INPUT1 FP32 [4] with ``data``."""
    return json.dumps(
        {
            "inputs": [
                {"name": "INPUT0", "shape": [dim, 2**32], "data": [1]},
                {"name": "INPUT1", "shape": [4], "datatype": "FP32", "data": data},
            ]
        }
    ).encode()


def _bytes_input(shape: list[int]) -> bytes:
    header = {"name": "INPUT0", "shape": shape, "datatype": "BYTES"}
    return json.dumps({"inputs": [header]}).encode()


@pytest.mark.parametrize(
    "sent, ours, theirs, expected",
    [
        # 400 for Triton's 500: only the TritonJson messages tritonx answers so.
        (
            _http("POST", "/"),
            Answer("400", f"Unable to parse 'priority': {NOT_UNSIGNED}"),
            Answer("500", f"Unable to parse 'priority': {NOT_UNSIGNED}"),
            "client-error-400",
        ),
        (
            _http("POST", "/"),
            Answer("400", f"Unable to parse 'priority': {NOT_UNSIGNED}"),
            Answer("500", f"Unable to parse 'timeout': {NOT_UNSIGNED}"),
            None,
        ),
        (
            _http("POST", "/"),
            Answer(
                "400",
                "Unable to parse 'id': attempt to access JSON non-string as string",
            ),
            Answer(
                "500",
                "Unable to parse 'id': attempt to access JSON non-string as string",
            ),
            None,
        ),
        # A dim past int64: tritonx's message, for a dim of the request.
        (
            _http("POST", "/", b'{"inputs": [{"shape": [' + DIM.encode() + b"]}]}"),
            Answer("400", DIM_MESSAGE),
            Answer(
                "500",
                "Unable to parse 'data': Shape does not match true shape of 'data' field",
            ),
            "dim-past-int64",
        ),
        (
            _http("POST", "/", b'{"inputs": [{"shape": [1' + DIM.encode() + b"]}]}"),
            Answer("400", DIM_MESSAGE),
            Answer("500", "Unable to parse 'data': whatever"),
            None,
        ),
        (
            _http("POST", "/", b'{"inputs": [{"shape": [' + DIM.encode() + b"]}]"),
            Answer("400", DIM_MESSAGE),
            Answer(
                "500", PARSE + "Missing a comma or '}' after an object member. at 40"
            ),
            None,
        ),
        # NUL: names and messages cut at it; a parameter key cut, then not found.
        (
            _http("POST", "/", NUL_BODY),
            Answer("200", '{"id": "ab\\u0000cd", "model_name": "m"}'),
            Answer("200", '{"id": "ab", "model_name": "m"}'),
            "nul-in-string",
        ),
        (
            _http("POST", "/", NUL_BODY),
            Answer("200", '{"id": "ab\\u0000cd", "model_name": "m"}'),
            Answer("500", "parameter key 'k' was not found in the JSON"),
            "nul-in-string",
        ),
        (  # generate: the body's fields are parameters, a NUL key cut too
            _http("POST", "/v2/models/m/generate", b'{"\\u0000": null}'),
            Answer("400", "parameter '\0' has invalid type."),
            Answer("500", "parameter key '' was not found in the JSON"),
            "nul-in-string",
        ),
        (  # generate's own "parameters" object
            _http(
                "POST", "/v2/models/m/generate", b'{"parameters": {"\\u0000": null}}'
            ),
            Answer("400", "Converting keyword: 'parameters': parameter '\0' ..."),
            Answer(
                "500",
                "Converting keyword: 'parameters': parameter key '' was not found in "
                "the JSON",
            ),
            "nul-in-string",
        ),
        (  # not generate: a top-level field is no parameter
            _http("POST", "/v2/models/m/infer", b'{"\\u0000": null}'),
            Answer("400", "parameter '\0' has invalid type."),
            Answer("500", "parameter key '' was not found in the JSON"),
            None,
        ),
        (  # an answer that is no JSON (BYTES data not UTF-8) shows as its repr
            _http("POST", "/", NUL_BODY),
            Answer("200", str(b'{"id":"ab\\u0000cd","model_name":"m","d":["\x93"]}')),
            Answer("200", str(b'{"id":"ab","model_name":"m","d":["\x93"]}')),
            "nul-in-string",
        ),
        (
            _http("POST", "/", NUL_BODY),
            Answer("200", str(b'{"id":"ab\\u0000cd","model_name":"m","d":["\x93"]}')),
            Answer("200", str(b'{"id":"ab\\u0000cd","model_name":"n","d":["\x93"]}')),
            None,
        ),
        (  # an id cut to nothing: Triton's answer has none
            _http("POST", "/", b'{"id": "\\u0000ab"}'),
            Answer("200", '{"id": "\\u0000ab", "model_name": "m"}'),
            Answer("200", '{"model_name": "m"}'),
            "nul-in-string",
        ),
        (  # generate: the id follows the outputs
            _http("POST", "/v2/models/m/generate", b'{"id": "\\u0000"}'),
            Answer("200", '{"OUTPUT0": "", "id": "\\u0000", "model_name": "m"}'),
            Answer("200", '{"OUTPUT0": "", "model_name": "m"}'),
            "nul-in-string",
        ),
        (  # BYTES data keep their NUL
            _http(
                "POST", "/", b'{"id": "\\u0000", "inputs": [{"data": ["a\\u0000"]}]}'
            ),
            Answer("200", '{"id": "\\u0000", "outputs": [{"data": ["a\\u0000"]}]}'),
            Answer("200", '{"outputs": [{"data": ["a\\u0000"]}]}'),
            "nul-in-string",
        ),
        (
            _http("POST", "/", b'{"id": "a\\u0000b"}'),
            Answer("200", '{"id": "a\\u0000b", "model_name": "m"}'),
            Answer("200", '{"model_name": "m"}'),
            None,
        ),
        (
            _http("POST", "/", NUL_BODY),
            Answer("400", "[request id: ab\0cd] unexpected inference input 'X'"),
            Answer("400", "[request id: ab] unexpected inference input 'X'"),
            "nul-in-string",
        ),
        (
            _http("POST", "/", NUL_BODY),
            Answer("400", "[request id: ab\0cd] unexpected inference input 'X'"),
            Answer("400", "[request id: ab] unexpected inference input 'Y'"),
            None,
        ),
        (
            _grpc(_request(inputs={"IN\0x": [1]})),
            Answer(
                "INVALID_ARGUMENT",
                "unable to find data for input tensor 'IN\0x' for model",
            ),
            Answer("INVALID_ARGUMENT", "unable to find data for input tensor 'IN"),
            "nul-in-string",
        ),
        (  # an input "\0" is, cut, a second input "": tritonx asked so answers so
            _grpc(_request(inputs={"\0": [1], "": [1]}), replay=_input_names),
            Answer("INVALID_ARGUMENT", "unable to find data for input tensor '\0'"),
            Answer("INVALID_ARGUMENT", "'',''"),
            "nul-in-string",
        ),
        (
            _grpc(_request(inputs={"\0": [1], "": [1]}), replay=_input_names),
            Answer("INVALID_ARGUMENT", "unable to find data for input tensor '\0'"),
            Answer("INVALID_ARGUMENT", "'\\x00',''"),
            None,
        ),
        (
            _grpc(_request(id="a\0b")),
            Answer("OK", 'model_name: "identity" id: "a\\000b"'),
            Answer("OK", 'model_name: "identity" id: "a"'),
            "nul-in-string",
        ),
        (
            _grpc(_request(id="ab")),
            Answer("OK", 'model_name: "identity" id: "ab"'),
            Answer("OK", 'model_name: "identity" id: "a"'),
            None,
        ),
        # A percent-escape: Triton answers as tritonx does for the name kept.
        (
            _http(
                "GET",
                "/v2/models/add%5Fsub/ready",
                replay=lambda w: Answer("400", w.decode()),
            ),
            Answer("200", ""),
            Answer("400", "GET /v2/models/add%255Fsub/ready HTTP/1.1\r\n\r\n"),
            "percent-escape",
        ),
        (
            _http(
                "GET", "/v2/models/add%5Fsub/ready", replay=lambda w: Answer("404", "")
            ),
            Answer("200", ""),
            Answer("400", "Request for unknown model"),
            None,
        ),
        # A request target with bytes RFC 3986 does not allow (DEL).
        (
            _http("GET", "/v2/models/m\x7f/ready"),
            Answer("400", "Bad Request"),
            Answer("404", "Not Found"),
            "odd-request-target",
        ),
        (
            _http("POST", "/v2/repository/index?a\x7f"),
            Answer("400", "Bad Request"),
            Answer("200", "[]"),
            "odd-request-target",
        ),
        (
            _http("GET", "/v2/models/m/ready"),
            Answer("400", "Bad Request"),
            Answer("404", "Not Found"),
            None,
        ),
        # Methods: unknown ones, and HEAD without a body.
        (
            _http("FOO", "/v2"),
            Answer("400", "Bad Request"),
            Answer("405", "Method Not Allowed"),
            "unknown-method",
        ),
        (
            _http("PATCH", "/v2"),
            Answer("400", "Bad Request"),
            Answer("405", "Method Not Allowed"),
            None,
        ),
        (
            _http("HEAD", "/x"),
            Answer("404", ""),
            Answer("404", "Not Found"),
            "head-without-body",
        ),
        (_http("HEAD", "/x"), Answer("405", ""), Answer("404", "Not Found"), None),
        # Server metadata: the version and CUDA shared memory only.
        (
            _http("GET", "/v2"),
            Answer("200", json.dumps(METADATA)),
            Answer("200", json.dumps(TRITON_METADATA)),
            "server-metadata",
        ),
        (
            _http("GET", "/v2"),
            Answer("200", json.dumps(METADATA)),
            Answer("200", json.dumps({**TRITON_METADATA, "name": "x"})),
            None,
        ),
        # gRPC dims: negative, and a batch past 32 bits (no reference needed).
        (
            _grpc(_request(inputs={"INPUT0": [-1, 1]})),
            Answer(
                "INVALID_ARGUMENT",
                "tensor 'INPUT0' contains an invalid dimension [-1,1]",
            ),
            None,
            "grpc-negative-dim",
        ),
        (
            _grpc(_request(inputs={"INPUT0": [1, 1]})),
            Answer(
                "INVALID_ARGUMENT",
                "tensor 'INPUT0' contains an invalid dimension [-1,1]",
            ),
            None,
            None,
        ),
        (
            _grpc(_request(inputs={"INPUT0": [2**32 + 1, 1]})),
            Answer(
                "INVALID_ARGUMENT",
                "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'identity'",
            ),
            None,
            "batch-past-int32",
        ),
        (
            _grpc(_request(inputs={"INPUT0": [9, 1]})),
            Answer(
                "INVALID_ARGUMENT",
                "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'identity'",
            ),
            None,
            None,
        ),
        (
            _http("POST", "/", b'{"inputs": [{"name": "I", "shape": [2147483648]}]}'),
            Answer("400", TOO_BIG_BATCH),
            None,
            "batch-past-int32",
        ),
        (
            _http("POST", "/", b'{"inputs": [{"name": "I", "shape": [9, 1]}]}'),
            Answer("400", TOO_BIG_BATCH),
            None,
            None,
        ),
        # A shape whose element count wraps to 0: tritonx refuses its data.
        (
            _http("POST", "/", _wrapping([1, 2, 3, 4])),
            SHAPE_NOT_DATA,
            Answer("500", "Unable to parse 'data': attempt to access JSON non-number"),
            "count-wraps-to-zero",
        ),
        (
            _http("POST", "/", _wrapping([1, 2, 3])),  # INPUT1's data is short
            SHAPE_NOT_DATA,
            Answer("500", "Unable to parse 'data': attempt to access JSON non-number"),
            None,
        ),
        (
            _http("POST", "/", _wrapping([1, 2, 3, 4], 2**32 + 1)),  # wraps, not to 0
            SHAPE_NOT_DATA,
            Answer("500", "Unable to parse 'data': attempt to access JSON non-number"),
            None,
        ),
        (
            _http("POST", "/", _wrapping([1, 2, 3, 4])),
            SHAPE_NOT_DATA,
            Answer("500", PARSE + "Invalid value. at 3"),
            None,
        ),
        # A size past int64: tritonx's message, for a tensor of the request.
        (
            _grpc(_request(inputs={"INPUT0": [7, INT64_MAX]})),
            Answer("INVALID_ARGUMENT", SIZE_MESSAGE.format("byte size")),
            None,
            "size-past-int64",
        ),
        (
            _grpc(_request(inputs={"INPUT0": [7, 2**60]})),  # 2^65 bytes, fewer items
            Answer("INVALID_ARGUMENT", SIZE_MESSAGE.format("byte size")),
            None,
            "size-past-int64",
        ),
        (
            _grpc(_request(inputs={"INPUT0": [1, 2**60]})),  # 2^62 bytes
            Answer("INVALID_ARGUMENT", SIZE_MESSAGE.format("byte size")),
            None,
            None,
        ),
        (
            _http("POST", "/", _bytes_input([7, INT64_MAX])),
            Answer("400", SIZE_MESSAGE.format("element count")),
            None,
            "size-past-int64",
        ),
        (
            _http("POST", "/", _bytes_input([7, 2**60])),  # BYTES: the count only
            Answer("400", SIZE_MESSAGE.format("element count")),
            None,
            None,
        ),
        # Several invalid parameters: tritonx names the first key, invalid alone.
        (
            _grpc(
                _request(unset_parameters=["a", "b"]),
                replay=lambda w: Answer("INVALID_ARGUMENT", BAD_TYPE.format("a")),
            ),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("a")),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("b")),
            "grpc-parameter-named",
        ),
        (
            _grpc(
                _request(unset_parameters=["a", "b"]),
                replay=lambda w: Answer("INVALID_ARGUMENT", BAD_TYPE.format("b")),
            ),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("b")),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("a")),
            None,
        ),
        # A reserved 'triton_' key among them: Triton's refusal names no key.
        (
            _grpc(
                _request(unset_parameters=["a", "triton_x"]),
                replay=lambda w: Answer("INVALID_ARGUMENT", BAD_TYPE.format("a")),
            ),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("a")),
            Answer("INVALID_ARGUMENT", RESERVED),
            "grpc-parameter-named",
        ),
        (
            _grpc(
                _request(unset_parameters=["triton_x", "z"]),
                replay=lambda w: Answer("INVALID_ARGUMENT", BAD_TYPE.format("z")),
            ),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("z")),
            Answer("INVALID_ARGUMENT", RESERVED),
            None,  # tritonx named a later key
        ),
        # On a stream, Triton's stream and unary answers named different keys.
        (
            _grpc(_request(unset_parameters=["a", "b"]), replay=_named_alone),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("a")),
            Answer("in-band", BAD_TYPE.format("a")),
            "grpc-parameter-named",
        ),
        # A negative priority and another invalid key (found by the differential
        # fuzz): Triton's stream named the priority, its unary call the other key.
        (
            _grpc(_negative_priority(["z"]), replay=_priority_first),
            Answer("INVALID_ARGUMENT", BAD_PRIORITY),
            Answer("in-band", BAD_PRIORITY),
            "grpc-parameter-named",
        ),
        (  # the negative priority alone: no excuse for the codes
            _grpc(_negative_priority([]), replay=_priority_first),
            Answer("INVALID_ARGUMENT", BAD_PRIORITY),
            Answer("in-band", BAD_PRIORITY),
            None,
        ),
        (  # only one key invalid: no excuse for the codes
            _grpc(_request(unset_parameters=["a"]), replay=_named_alone),
            Answer("INVALID_ARGUMENT", BAD_TYPE.format("a")),
            Answer("in-band", BAD_TYPE.format("a")),
            None,
        ),
        # Invalid UTF-8 in a string (no reference needed).
        (
            _http("POST", "/", b'{"id": "a\xed\xb3\xbfb"}'),
            Answer("500", INVALID_ENCODING),
            None,
            "invalid-utf8",
        ),
        (
            _http("POST", "/", b'{"id": "ab"}'),
            Answer("500", INVALID_ENCODING),
            None,
            None,
        ),
    ],
)
def test_the_allowlist_excuses_only_its_requests(
    sent: Sent, ours: Answer, theirs: Answer | None, expected: str | None
) -> None:
    deviation = excused(sent, ours, theirs)
    assert (deviation.name if deviation else None) == expected


def test_a_sequence_control_is_never_asked_alone() -> None:
    """A request of a sequence with an invalid parameter: asked with only its valid
    sequence_id, tritonx would run it into the sequence on its own (found by the
    differential fuzz: the sequence's total then differed at its end)."""
    asked: list[Any] = []

    def replay(wire: bytes) -> Answer:
        request = service_pb2.ModelInferRequest.FromString(wire)
        asked.append(sorted(request.parameters))
        return _priority_first(wire)

    request = _negative_priority([])
    request.parameters["sequence_id"].int64_param = 7
    deviation = excused(
        _grpc(request, replay=replay),
        Answer("INVALID_ARGUMENT", BAD_PRIORITY),
        Answer("in-band", BAD_PRIORITY),
    )
    assert deviation is None  # no other invalid key
    assert asked == [["priority"]]  # the refused key alone, not the sequence_id
