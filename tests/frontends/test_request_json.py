"""request_json: request bodies read as Triton's RapidJSON reads them, on plain
bytes (the wire tests are in test_http_request_json.py). The expected messages are
Triton 2.51's answers to the same bodies."""

from __future__ import annotations

import json
import math

import pytest

from tritonx.errors import InternalError, InvalidArgumentError
from tritonx.frontends import request_json

PARSE = "failed to parse the request JSON buffer: "


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "The document is empty. at 0"),
        (b" ", "The document is empty. at 1"),
        (b"\x00{}", "The document is empty. at 0"),
        (b"]", "Invalid value. at 0"),
        (b"}", "Invalid value. at 0"),
        (b"\xff", "Invalid value. at 0"),
        (b"[1,\xff]", "Invalid value. at 3"),
        (b"[1,]", "Invalid value. at 3"),
        (b"[[[", "Invalid value. at 3"),
        (b"[-]", "Invalid value. at 2"),
        (b"[+1]", "Invalid value. at 1"),
        (b"[.5]", "Invalid value. at 1"),
        (b"[nan]", "Invalid value. at 2"),
        (b"[True]", "Invalid value. at 1"),
        (b"{\"a\":'b'}", "Invalid value. at 5"),
        (b"[1 2]", "Missing a comma or ']' after an array element. at 3"),
        (b"[0x10]", "Missing a comma or ']' after an array element. at 2"),
        (b"[Inf1]", "Missing a comma or ']' after an array element. at 4"),
        (b'{"a" 1}', "Missing a colon after a name of object member. at 5"),
        (b'{"a"', "Missing a colon after a name of object member. at 4"),
        (b'{"a":1,}', "Missing a name for object member. at 7"),
        (b"{1:2}", "Missing a name for object member. at 1"),
        (b"{", "Missing a name for object member. at 1"),
        (b'{"a":1 "b":2}', "Missing a comma or '}' after an object member. at 7"),
        (b'{"a":"x"\x00}', "Missing a comma or '}' after an object member. at 8"),
        (b"{} x", "The document root must not be followed by other values. at 3"),
        (b'{"a":1}}', "The document root must not be followed by other values. at 7"),
        (b'"\\x"', "Invalid escape character in string. at 1"),
        (b'{"a":"\\', "Invalid escape character in string. at 6"),
        (b'{"a":"\x1f"}', "Invalid escape character in string. at 6"),
        (b'{"a":"a\x00b"}', "Missing a closing quotation mark in string. at 7"),
        (b'"abc', "Missing a closing quotation mark in string. at 4"),
        (b'{"a":"\\u12G4"}', "Incorrect hex digit after \\u escape in string. at 6"),
        (
            b'{"a":"\\ud800\\u00"}',
            "Incorrect hex digit after \\u escape in string. at 6",
        ),
        (b"[1.]", "Miss fraction part in number. at 3"),
        (b"[1e-]", "Miss exponent in number. at 4"),
        (b"[1.5e]", "Miss exponent in number. at 5"),
        (b"[1e309]", "Number too big to be stored in double. at 1"),
        (b"[0.0e400]", "Number too big to be stored in double. at 1"),
        (
            b"[-" + b"2" + b"0" * 308 + b"]",
            "Number too big to be stored in double. at 1",
        ),
        (b"[" + b"9" * 5000 + b"]", "Number too big to be stored in double. at 1"),
        (b"[Infinit]", "Invalid value. at 8"),
        (b"\xef\xbb\xbf]", "Invalid value. at 3"),
        (b"\xef\xbb\xbf\xef\xbb\xbf{}", "Invalid value. at 3"),
        (b" \xef\xbb\xbf{}", "Invalid value. at 1"),
        (b"\xef\xbb\xbf", "The document is empty. at 3"),
    ],
)
def test_syntax_errors_worded_as_triton_words_them(body: bytes, message: str) -> None:
    with pytest.raises(InternalError) as info:
        request_json.loads(body)
    assert str(info.value) == PARSE + message


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"\xff"}',
        b'{"\xc3":1}',
        b'["\xed\xa0\x80"]',
        b'["ok", "\xf4\x90\x80\x80"]',
    ],
)
def test_a_string_not_utf8_is_refused_without_offset(body: bytes) -> None:
    with pytest.raises(InternalError) as info:
        request_json.loads(body)
    assert str(info.value) == PARSE + "Invalid encoding in string."


@pytest.mark.parametrize(
    "body", [b'{"a":"\\ud800", ]', b'{"\\ud800":1', b'["\\ud800\\u0041", ]']
)
def test_a_lone_high_surrogate_before_another_error(body: bytes) -> None:
    # The native engine's answer: the surrogate, as a client error, without offset.
    with pytest.raises(InvalidArgumentError) as info:
        request_json.loads(body)
    assert str(info.value) == PARSE + "The surrogate pair in string is invalid."


def test_a_lone_high_surrogate_in_a_valid_document() -> None:
    # Refused while parsing, for every route (repository, trace, ... bodies too).
    for body in (b'{"a": ["x\\ud800"]}', b'{"\\udc00\\ud800": 1}'):
        with pytest.raises(InvalidArgumentError) as info:
            request_json.loads(body)
        assert str(info.value) == PARSE + "The surrogate pair in string is invalid."


def test_a_lone_low_surrogate_is_refused_too() -> None:
    # Triton takes it as is (invalid UTF-8 then reaches names, ids and data); both
    # tritonx engines refuse it as a client error (a deliberate difference).
    with pytest.raises(InvalidArgumentError) as info:
        request_json.loads(b'["\\udc00", "\\ud83d\\ude00"]')
    assert str(info.value) == PARSE + "The surrogate pair in string is invalid."


def _same(a: object, b: object) -> bool:
    return json.dumps(a) == json.dumps(b)  # NaN equals NaN


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (
            b"[Inf, -Inf, Infinity, -Infinity, NaN, -NaN]",
            [math.inf, -math.inf] * 2 + [math.nan] * 2,
        ),
        (b"[NaN.5, -NaN.5, Infe2, -Infe2, NaInf]", [0.5, -0.5, 0.0, -0.0, math.inf]),
        (b"[2e308, 1.7976931348623159e308]", [math.inf, math.inf]),
        (b"[-0, -0.0, 1e-400]", [0, -0.0, 0.0]),
        # Integers past 64 bits are doubles, as RapidJSON (and Triton) keeps them.
        (b"[18446744073709551616, -9223372036854775809]", [2.0**64, -(2.0**63)]),
        (b'{"a":1,"a":2,"b":{"c":3,"c":4}}', {"a": 1, "b": {"c": 3}}),
        (b"\xef\xbb\xbf{}", {}),
        (b"\xbb\xbf[1]", [1]),
        (b"[1]\x00garbage", [1]),
        (
            b'\t\n\r {"a": ["x\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"]} ',
            {"a": ['x"\\/\b\f\n\r\té\U0001f600']},
        ),
    ],
)
def test_values_read_as_triton_reads_them(body: bytes, value: object) -> None:
    assert _same(request_json.loads(body), value)


@pytest.mark.parametrize(
    "doc",
    [
        {
            "id": "x",
            "inputs": [{"name": "I", "shape": [2, 3], "data": [1.5, -2, 3e10]}],
        },
        {"a": [[], {}, [None, True, False]], "b": "h\xe9llo \u2603", "c": -0.125},
        [1e300, 12345678901234567890, 0.1, -7],
    ],
)
def test_both_ways_read_alike(doc: object) -> None:
    text = json.dumps(doc, ensure_ascii=False).encode()
    assert _same(request_json.loads(text), json.loads(text))


def test_long_integers_are_doubles() -> None:
    # RapidJSON's normal precision (Triton's flags) may differ from Python's correctly
    # rounded value in the last place.
    body = b'{"a": [' + b"7" * 250 + b", 1" + b"0" * 308 + b', 1.5e-300, "e123"]}'
    a, b, c, d = request_json.loads(body)["a"]
    assert a == pytest.approx(float("7" * 250), rel=1e-15)
    assert b == pytest.approx(1e308, rel=1e-15)
    assert c == pytest.approx(1.5e-300, rel=1e-15) and d == "e123"


def test_nesting_past_the_native_bound() -> None:
    ok = b"[" * 900 + b"]" * 900  # kMaxDepth in csrc/http/http_infer_codec.cc
    assert request_json.loads(ok) is not None
    deep = b"[" * 5000 + b"]" * 5000
    with pytest.raises(InternalError) as info:
        request_json.loads(deep)
    assert str(info.value) == PARSE + "the document is nested too deeply."
    # An error before the bound comes first.
    with pytest.raises(InternalError) as info:
        request_json.loads(b"[[}" + b"[" * 5000)
    assert str(info.value) == PARSE + "Invalid value. at 2"
