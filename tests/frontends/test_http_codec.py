"""Infer body parsing, tensor JSON codecs and URL routing, on plain bytes."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from tritonx import _native
from tritonx.errors import InternalError, InvalidArgumentError
from tritonx.frontends import codec, http_infer
from tritonx.frontends.http_routes import Route, resolve


def _wire(dtype: str, values: list[object]) -> bytes:
    return np.asarray(values, dtype=codec.NUMPY_DTYPES[dtype]).tobytes()


def _body(doc: dict[str, object], *blobs: bytes) -> tuple[bytes, int]:
    header = json.dumps(doc).encode()
    return header + b"".join(blobs), len(header)


def _json_input(dtype: str, shape: list[int], data: object) -> bytes:
    """One JSON input through the decoder and the core's request builder."""
    doc = {"inputs": [{"name": "IN", "datatype": dtype, "shape": shape, "data": data}]}
    parsed = http_infer.parse_infer(json.dumps(doc).encode(), None, "m")
    request = parsed.core_request(None, None, "m")
    return bytes(request.inputs[0].raw())


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        ("BOOL", [True, False, True, True]),
        ("UINT8", [0, 1, 255, 7]),
        ("UINT16", [0, 1, 65535, 7]),
        ("UINT32", [0, 1, 2**32 - 1, 7]),
        ("UINT64", [0, 1, 2**64 - 1, 7]),
        ("INT8", [-128, 1, 127, 0]),
        ("INT16", [-(2**15), 1, 2**15 - 1, 0]),
        ("INT32", [-(2**31), 1, 2**31 - 1, 0]),
        ("INT64", [-(2**63), 1, 2**63 - 1, 0]),
        ("FP32", [0.5, -1.0, 3.25, 1e30]),
        ("FP64", [0.1, -1.0, 3.25, 1e300]),
    ],
)
def test_json_round_trip_every_fixed_size_type(
    dtype: str, values: list[object]
) -> None:
    nested = [values[:2], values[2:]]
    wire = _json_input(dtype, [2, 2], nested)
    assert wire == _wire(dtype, values)
    assert json.loads(codec.wire_to_json(dtype, [2, 2], wire)) == pytest.approx(values)


def test_bytes_json_round_trip() -> None:
    wire = _json_input("BYTES", [3], ["a", "", "héllo"])
    expected = b"".join(
        struct.pack("<I", len(s)) + s for s in (b"a", b"", "héllo".encode())
    )
    assert wire == expected
    assert json.loads(codec.wire_to_json("BYTES", [3], wire)) == ["a", "", "héllo"]


def test_float_json_matches_triton_rendering() -> None:
    wire = _wire("FP32", [0.1, 2.0, math.nan, math.inf])
    assert codec.wire_to_json("FP32", [4], wire) == (
        b"[0.10000000149011612,2.0,NaN,Infinity]"
    )


@pytest.mark.skipif(
    _native.native_json_data is None, reason="this build has no native JSON writer"
)
def test_number_forms_are_the_native_engines() -> None:
    """Written by RapidJSON's writer, as the native engine and Triton 2.51 write
    them (Python's repr would give 1e-05 and 1e+16)."""
    wire = _wire("FP64", [1e-5, 1e16, -0.0, 1.5e300])
    assert codec.wire_to_json("FP64", [4], wire) == (
        b"[0.00001,10000000000000000.0,-0.0,1.5e300]"
    )


@pytest.mark.parametrize("dtype", ["FP16", "BF16"])
def test_half_types_only_binary(dtype: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"receiving {dtype} data via JSON"):
        _json_input(dtype, [1], [1.0])
    with pytest.raises(InvalidArgumentError, match=f"sending {dtype} data via JSON"):
        codec.wire_to_json(dtype, [1], b"\0\0")


@pytest.mark.parametrize(
    ("dtype", "data", "message"),
    [
        ("FP32", [1, 2, 3], "Shape does not match true shape of 'data' field"),
        ("FP32", [1, 2, 3, 4, 5], "Shape does not match true shape"),
        ("FP32", [1, 2, 3, "x"], "attempt to access JSON non-number as double"),
        ("FP32", [True, False, True, True], "non-number as double"),
        ("INT32", [1, 2, 3, 4.5], "non-signed-integer as signed-integer"),
        ("INT32", [1, 2, 3, 2**64], "non-signed-integer as signed-integer"),
        ("UINT8", [1, 2, 3, -4], "non-unsigned-integer as unsigned-integer"),
        ("BOOL", [1, 0, 1, 0], "non-boolean as boolean"),
        ("BYTES", ["a", "b", "c", 4], "non-string as string"),
        ("FP32", 1, "attempt to access JSON non-array as array"),
    ],
)
def test_json_data_errors(dtype: str, data: object, message: str) -> None:
    # Triton's BYTES reader words its refusal differently.
    prefix = (
        "Unable to parse JSON bytes array"
        if dtype == "BYTES"
        else "Unable to parse 'data'"
    )
    with pytest.raises(InternalError, match=prefix) as info:
        _json_input(dtype, [1, 4], data)
    assert message in str(info.value)


def test_ragged_nesting_counts_leaves() -> None:
    assert _json_input("INT32", [4], [[1], [2, 3], 4]) == _wire("INT32", [1, 2, 3, 4])


def test_parse_binary_inputs_are_views_into_the_body() -> None:
    a = np.arange(4, dtype=np.float32).tobytes()
    body, hlen = _body(
        {
            "id": "r1",
            "inputs": [
                {
                    "name": "A",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": 16},
                },
                {"name": "B", "datatype": "INT32", "shape": [2], "data": [7, 8]},
            ],
            "outputs": [
                {"name": "O", "parameters": {"binary_data": True, "classification": 2}}
            ],
            "parameters": {"binary_data_output": False, "custom": "x", "priority": 1},
        },
        a,
    )
    parsed = http_infer.parse_infer(body, hlen, "m")
    assert parsed.id == "r1"
    name, dtype, shape, kind, data = parsed.inputs[0]
    assert (name, dtype, shape, kind) == ("A", "FP32", [1, 4], "bytes")
    assert isinstance(data, memoryview) and data.obj is body and bytes(data) == a
    kind, data = parsed.inputs[1][3:]  # JSON data: converted, a read-only buffer
    assert kind == "bytes" and bytes(data) == _wire("INT32", [7, 8])
    assert parsed.outputs == [("O", None, 2)]
    assert parsed.binary_outputs == {"O": True}
    assert parsed.default_binary is False
    assert parsed.parameters == {"custom": "x", "priority": 1}
    request = parsed.core_request(parsed.parameters, None, "m")
    assert request.id == "r1" and request.priority == 1
    assert request.parameters == {"custom": "x"}
    assert bytes(request.inputs[0].raw()) == a
    assert bytes(request.inputs[1].raw()) == _wire("INT32", [7, 8])
    assert request.requested_outputs == ["O"]


@pytest.mark.parametrize(
    ("doc", "error", "message"),
    [
        ({}, InternalError, "Unable to parse 'inputs': attempt to access non-existing"),
        ({"inputs": {}}, InternalError, "'inputs': attempt to access JSON non-array"),
        ({"id": 5, "inputs": []}, InternalError, "Unable to parse 'id'"),
        (
            {"inputs": [{"name": "A", "datatype": "FP32", "shape": [1]}]},
            InvalidArgumentError,
            "Input must set only one of the following fields: 'data', "
            "'binary_data_size' in 'parameters', 'shared_memory_region' in "
            "'parameters'. But no field is set",
        ),
        (
            {"inputs": [{"name": "A", "shape": [1], "data": [1]}]},
            InternalError,
            "Unable to parse 'datatype': attempt to access non-existing object member",
        ),
        (
            {"inputs": [{"name": "A", "datatype": "FOO", "shape": [1], "data": [1]}]},
            InvalidArgumentError,
            "invalid datatype for input A",
        ),
        (
            {"inputs": [{"name": "A", "datatype": "FP32", "shape": [-1], "data": [1]}]},
            InternalError,
            "Unable to parse 'shape'",
        ),
        (
            {"inputs": [], "parameters": {"x": {"a": 1}}},
            InvalidArgumentError,
            "parameter 'x' has invalid type. It should be either 'int', 'bool', or "
            "'string'.",
        ),
        (
            {"inputs": [], "parameters": {"binary_data_output": 1}},
            InternalError,
            "Unable to parse 'binary_data_output'",
        ),
        (
            {
                "inputs": [],
                "outputs": [{"name": "O", "parameters": {"binary_data": 1}}],
            },
            InternalError,
            "Unable to parse 'binary_data'",
        ),
        (
            {
                "inputs": [],
                "outputs": [{"name": "O", "parameters": {"classification": -2}}],
            },
            InvalidArgumentError,
            "Unable to set 'classification': attempt to access JSON "
            "non-unsigned-integer as unsigned-integer",
        ),
    ],
)
def test_parse_errors(
    doc: dict[str, object], error: type[Exception], message: str
) -> None:
    body = json.dumps(doc).encode()
    with pytest.raises(error) as info:
        http_infer.parse_infer(body, None, "m").core_request(None, None, "m")
    assert message in str(info.value)


def test_an_earlier_inputs_error_wins() -> None:
    # The builder's error for input A comes before the decoder's for input B, as in
    # the native engine, where decoding and building interleave.
    doc = {
        "inputs": [
            {"name": "A", "datatype": "FOO", "shape": [1], "data": [1]},
            {"name": "B", "datatype": "FP32", "shape": [1]},
        ]
    }
    parsed = http_infer.parse_infer(json.dumps(doc).encode(), None, "m")
    assert parsed.error is not None
    with pytest.raises(InvalidArgumentError, match="invalid datatype for input A"):
        parsed.core_request(None, None, "m")


def _build(body: bytes, hlen: int | None) -> object:
    return http_infer.parse_infer(body, hlen, "m").core_request(None, None, "m")


def test_parse_invalid_json() -> None:
    with pytest.raises(InternalError, match="failed to parse the request JSON buffer"):
        _build(b'{"inputs": [', None)


def test_binary_size_errors() -> None:
    doc = {
        "inputs": [
            {
                "name": "A",
                "datatype": "FP32",
                "shape": [4],
                "parameters": {"binary_data_size": 16},
            }
        ]
    }
    body, hlen = _body(doc, b"\0" * 8)
    with pytest.raises(InvalidArgumentError) as info:
        _build(body, hlen)
    assert str(info.value) == (
        "unexpected size for input 'A', expecting 8 additional bytes for model 'm'"
    )
    body, hlen = _body(doc, b"\0" * 20)
    with pytest.raises(InvalidArgumentError, match="unexpected additional input data"):
        _build(body, hlen)


def test_header_length_checks() -> None:
    assert http_infer.header_length(None, 10) is None
    assert http_infer.header_length(b"4", 10) == 4
    assert http_infer.header_length(b"abc", 10) == 0  # atoi, like Triton
    with pytest.raises(InvalidArgumentError) as info:
        http_infer.header_length(b"11", 10)
    assert (
        str(info.value) == "inference header size should be in range (0, 10), got: 11"
    )


class _Out:
    def __init__(self, name: str, datatype: str, shape: list[int], raw: bytes) -> None:
        self.name, self.datatype, self.shape, self._raw = name, datatype, shape, raw

    def raw(self) -> memoryview:
        return memoryview(self._raw)


def test_encode_response_json_and_binary() -> None:
    a = _wire("FP32", [1, 2])
    b = _wire("INT64", [3])
    header, blobs = http_infer.encode_response(
        "m",
        "1",
        "",
        {"p": 1},
        [_Out("A", "FP32", [2], a), _Out("B", "INT64", [1], b)],
        {"B": True},
        False,
    )
    doc = json.loads(header)
    assert "id" not in doc
    assert doc == {
        "model_name": "m",
        "model_version": "1",
        "parameters": {"p": 1},
        "outputs": [
            {"name": "A", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]},
            {
                "name": "B",
                "datatype": "INT64",
                "shape": [1],
                "parameters": {"binary_data_size": 8},
            },
        ],
    }
    assert [bytes(x) for x in blobs] == [b]
    header, _ = http_infer.encode_response("m", "1", "x", {}, [], {}, True)
    assert header.startswith(b'{"id":"x","model_name":"m","model_version":"1"')


@pytest.mark.parametrize(
    ("url", "route"),
    [
        (b"/v2", Route("server_metadata")),
        (b"/v2/health/live", Route("live")),
        (b"/v2/health/ready?x=1", Route("ready")),
        (b"/v2/models/stats", Route("all_stats")),
        (b"/v2/models/m", Route("model_metadata", "m")),
        (b"/v2/models/m/versions/3", Route("model_metadata", "m", "3")),
        (b"/v2/models/m/versions/3/infer", Route("infer", "m", "3")),
        (b"/v2/models/a%20b/ready", Route("model_ready", "a b")),
        (b"/v2/models/m/config", Route("model_config", "m")),
        (b"/v2/models/m/versions/2/stats", Route("model_stats", "m", "2")),
        (b"/v2/repository/index", Route("repo_index")),
        (b"/v2/repository/models/m/load", Route("repo_load", "m")),
        (b"/v2/repository/r/models/m/unload", Route("repo_unload", "m", "", "r")),
        (b"/v2/models/m/versions/x", Route("not_found")),
        (b"/v2/models/m/", Route("not_found")),
        (b"/v3", Route("not_found")),
        # Served as 404 by the frontend, but resolved so that restrictions apply.
        (b"/v2/models/m/generate", Route("generate", "m")),
        (b"/v2/models/m/trace/setting", Route("trace", "m")),
        (b"/v2/trace/setting", Route("trace")),
        (b"/v2/logging", Route("logging")),
        (
            b"/v2/systemsharedmemory/region/r/status",
            Route("shared_memory", memory="system", region="r", action="status"),
        ),
        (
            b"/v2/cudasharedmemory/unregister",
            Route("shared_memory", memory="cuda", action="unregister"),
        ),
    ],
)
def test_routes(url: bytes, route: Route) -> None:
    assert resolve(url) == route
