"""The two readers of the one infer walk agree (core/infer_json.h).

The Python HTTP engine decodes a body with ``_native.native_parse_infer`` (RapidJSON
read and walked in C++, the GIL released); builds without RapidJSON walk the objects
Python's json module made instead (``_native.decode_infer_json`` over
``PyJsonReader``). Every other test runs the first, so the second is held to it
here: the same fuzzed bodies (valid requests, then mutated) must decode to the same
descriptions and the same first error. The document handed to the second walk is
RapidJSON's, made into Python objects, so that only the walks differ, not the two
parsers' verdicts on odd text.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tritonx import _native

# The fuzz suites' request strategies (that directory is not on sys.path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from http_strategies import (
    InferCase,
    infer_cases,
    mutate_binary_case,
    mutate_doc,
)

pytestmark = pytest.mark.skipif(
    _native.native_parse_infer is None, reason="this build has no native JSON reader"
)


def _plain(decoded: tuple[Any, ...]) -> tuple[Any, ...]:
    """The decode result with buffers as bytes and the error as (type, text)."""
    rid, default_binary, inputs, outputs, binary_outputs, parameters, error = decoded
    inputs = [
        (
            n,
            d,
            s,
            k,
            bytes(data) if k == "bytes" and not isinstance(data, slice) else data,
        )
        for n, d, s, k, data in inputs
    ]
    shown = None if error is None else (type(error).__name__, str(error))
    return rid, default_binary, inputs, outputs, binary_outputs, parameters, shown


def _both(header: bytes, hlen: int | None, body_size: int) -> None:
    native = _native.native_parse_infer(header, hlen, body_size, "m")
    try:
        doc = _native.native_json_loads(header)
    except Exception as exc:  # refused while parsing: no walk on either side
        assert native[6] is not None
        assert (type(native[6]), str(native[6])) == (type(exc), str(exc))
        assert native[:6] == ("", False, [], [], {}, None)
        return
    walked = _native.decode_infer_json(doc, header, hlen, body_size, "m")
    assert _plain(native) == _plain(walked)


def _header(case: InferCase) -> tuple[bytes, int | None, int]:
    body, headers = case.body_and_headers()
    if not case.binary:
        return body, None, len(body)
    try:
        hlen = _native.parse_header_length(
            headers["Inference-Header-Content-Length"], len(body)
        )
    except Exception:
        hlen = len(case.header_as_read())
    return body[:hlen], hlen, len(body)


def fuzz(count: int) -> Any:
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz(600)
@given(case=infer_cases(), data=st.data())
def test_mutated_json_bodies_decode_alike(case: InferCase, data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="mutate"):
        mutate_doc(case.doc, data)
    _both(*_header(case))


@fuzz(300)
@given(case=infer_cases(binary=True), data=st.data())
def test_mutated_binary_headers_decode_alike(
    case: InferCase, data: st.DataObject
) -> None:
    mutate_binary_case(case, data)
    _both(*_header(case))


def test_converted_data_pickles_as_bytes() -> None:
    """JSON data comes back as a read-only buffer (no copy); a helper process
    hands it back as plain bytes."""
    body = b'{"inputs":[{"name":"I","datatype":"INT32","shape":[2],"data":[1,2]}]}'
    data = _native.native_parse_infer(body, None, len(body), "m")[2][0][4]
    view = memoryview(data)
    assert view.readonly and view.tobytes() == b"\x01\0\0\0\x02\0\0\0"
    assert pickle.loads(pickle.dumps(data)) == b"\x01\0\0\0\x02\0\0\0"
