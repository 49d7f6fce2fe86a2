"""Hypothesis strategies for HTTP fuzzing: valid KServe v2 requests and mutations.

A request is generated valid first (for one of the fuzz server's models, JSON or
binary-tensor extension) and then mutated, so most examples get past the first
check and reach deeper code: the JSON reader, the codec, the core's validation.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
from hypothesis import strategies as st

# name -> (max_batch_size, [(input, datatype, dims without batch)])
MODELS: dict[str, tuple[int, list[tuple[str, str, list[int]]]]] = {
    "add_sub": (0, [("INPUT0", "FP32", [4]), ("INPUT1", "FP32", [4])]),
    "simple_onnx": (8, [("INPUT0", "FP32", [4]), ("INPUT1", "FP32", [4])]),
    "identity": (8, [("INPUT0", "FP32", [-1])]),
    "fuzz_bytes": (8, [("INPUT0", "BYTES", [-1])]),
}
OUTPUTS = {"add_sub": 2, "simple_onnx": 2, "identity": 1, "fuzz_bytes": 1}
DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
    "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16",
]  # fmt: skip

INTERESTING_INTS = [
    0, 1, -1, 4, 255, 256, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
    2**64 - 1, 2**64, 2**70, -(2**31), -(2**63), -(2**63) - 1, 10**30,
]  # fmt: skip
INTERESTING_STRINGS = [
    "", "\ud800", "\udfff", "a\ud800b", "\x00", "a\x00b", "\u202e", "\uffff",
    "\U0001f600", "FP32", "BYTES", "INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1",
    "binary_data_size", "shared_memory_region", "priority", "timeout",
    "sequence_id", "binary_data_output", "triton_x", "headers", "1e400", "-1",
]  # fmt: skip
# Raw JSON texts a serializer would never write: spliced in verbatim.
RAW_JSON = {
    "nested-5000": "[" * 5000 + "]" * 5000,
    "nested-100000": "[" * 100_000 + "]" * 100_000,
    "objects-3000": '{"a":' * 3000 + "1" + "}" * 3000,
    "int-5000-digits": "1" * 5000,
    "minus-zero": "-0",
    "1e999999": "1e999999",
    "NaN": "NaN",
    "-Infinity": "-Infinity",
    "lone-high-surrogate": '"\\ud800"',
    "reversed-pair": '"\\udc00\\ud800"',
    "escaped-nul": '"\\u0000"',
    "latin1-byte": '"\xff"',
    # Not UTF-8 once written (dumps keeps lone surrogates as their 3 bytes).
    "invalid-utf8": '"a\udcffb"',
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(INTERESTING_INTS),
    st.integers(),
    st.floats(),
    st.sampled_from(INTERESTING_STRINGS),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


class Raw:
    """A value serialized as the given JSON text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}{'...' if len(self.text) > 40 else ''})"


def dumps(doc: Any) -> bytes:
    """json.dumps that splices ``Raw`` texts in (deep nesting, odd literals)."""
    raws: list[str] = []

    def walk(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    text = json.dumps(walk(doc))
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{i}\x00"), raw)
    return text.encode("utf-8", "surrogatepass")


@dataclass
class InferCase:
    model: str
    version: str = ""
    doc: dict[str, Any] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)  # binary inputs, in order
    binary: bool = False
    header_length: str | None = None  # Inference-Header-Content-Length override

    @property
    def path(self) -> str:
        version = f"/versions/{self.version}" if self.version else ""
        return f"/v2/models/{self.model}{version}/infer"

    def body_and_headers(self) -> tuple[bytes, dict[str, str]]:
        header = dumps(self.doc)
        headers = {"Content-Type": "application/json"}
        if not self.binary:
            return header, headers
        headers["Content-Type"] = "application/octet-stream"
        hlen = str(len(header)) if self.header_length is None else self.header_length
        headers["Inference-Header-Content-Length"] = hlen
        return header + b"".join(self.blobs), headers

    def header_as_read(self) -> bytes:
        """The JSON header as a server reads it from the body: cut where a
        plain decimal Inference-Header-Content-Length shorter than the JSON ends it
        (a cut can leave a lone surrogate or half an escape at the end)."""
        header = dumps(self.doc)
        length = self.header_length
        if length is not None and length.isdecimal() and 0 < int(length) < len(header):
            return header[: int(length)]
        return header


def _tensor(datatype: str, shape: list[int], draw: Any) -> tuple[list[Any], bytes]:
    count = int(np.prod(shape)) if shape else 1
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count))
        wire = b"".join(len(i).to_bytes(4, "little") + i for i in items)
        return [i.decode("latin-1") for i in items], wire
    values = draw(
        st.lists(st.floats(-1e6, 1e6, width=32), min_size=count, max_size=count)
    )
    return values, np.asarray(values, dtype=np.float32).tobytes()


@st.composite
def infer_cases(
    draw: Any, binary: bool | None = None, models: Sequence[str] | None = None
) -> InferCase:
    """A valid infer request for one of ``models`` (default: all of MODELS), with
    JSON data or binary tensors."""
    model = draw(st.sampled_from(sorted(models or MODELS)))
    max_batch, inputs = MODELS[model]
    use_binary = draw(st.booleans()) if binary is None else binary
    case = InferCase(model, binary=use_binary)
    batch = [draw(st.integers(1, 3))] if max_batch else []
    doc_inputs: list[dict[str, Any]] = []
    width = draw(st.integers(0, 5))
    for name, datatype, dims in inputs:
        shape = batch + [width if d < 0 else d for d in dims]
        values, wire = _tensor(datatype, shape, draw)
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if use_binary and draw(st.booleans()):
            item["parameters"] = {"binary_data_size": len(wire)}
            case.blobs.append(wire)
        else:
            item["data"] = values
        doc_inputs.append(item)
    case.doc["inputs"] = doc_inputs
    if draw(st.booleans()):
        case.doc["id"] = draw(st.text(max_size=8))
    if draw(st.booleans()):
        names = [f"OUTPUT{i}" for i in range(OUTPUTS[model])]
        outputs = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        case.doc["outputs"] = [
            {"name": n, "parameters": {"binary_data": draw(st.booleans())}}
            for n in outputs
        ]
    if draw(st.booleans()):
        case.doc["parameters"] = {"binary_data_output": draw(st.booleans())}
    if draw(st.integers(0, 5)) == 0:
        case.version = "1"
    return case


def _slots(value: Any, slots: list[tuple[Any, Any]]) -> None:
    """Every (container, key) under ``value``."""
    if isinstance(value, dict):
        for key in list(value):
            slots.append((value, key))
            _slots(value[key], slots)
    elif isinstance(value, list):
        for i in range(len(value)):
            slots.append((value, i))
            _slots(value[i], slots)


MUTATIONS = ["replace", "delete", "add", "raw", "dims", "datatype", "name"]


def mutate_doc(doc: dict[str, Any], data: st.DataObject) -> str:
    """Applies one structural mutation to ``doc`` in place; returns what it did."""
    slots: list[tuple[Any, Any]] = [(doc, None)]
    _slots(doc, slots)
    container, key = data.draw(st.sampled_from(slots), label="slot")
    if key is None:  # the document itself: add a top-level member
        name = data.draw(
            st.sampled_from(["inputs", "outputs", "parameters", "id", "x"]) | st.text()
        )
        doc[name] = data.draw(json_values, label="value")
        return f"set top-level {name!r}"
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    if kind == "delete":
        del container[key]
    elif kind == "add" and isinstance(container, list):
        container.append(data.draw(json_values))
    elif kind == "add":
        container[data.draw(st.sampled_from(INTERESTING_STRINGS) | st.text())] = (
            data.draw(json_values)
        )
    elif kind == "raw":
        container[key] = Raw(RAW_JSON[data.draw(st.sampled_from(sorted(RAW_JSON)))])
    elif kind == "dims":
        container[key] = data.draw(
            st.lists(st.sampled_from(INTERESTING_INTS) | st.integers(-3, 9), max_size=5)
        )
    elif kind == "datatype":
        container[key] = data.draw(st.sampled_from(DATATYPES) | st.text(max_size=6))
    elif kind == "name":
        container[key] = data.draw(st.sampled_from(INTERESTING_STRINGS))
    else:
        container[key] = data.draw(json_values, label="value")
    return f"{kind} at {key!r}"


def mutate_bytes(blob: bytes, data: st.DataObject) -> bytes:
    """Byte-level damage: flips, inserts, deletions, truncation, or random bytes."""
    op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "random"]))
    if op == "random" or not blob:
        return data.draw(st.binary(max_size=512))
    pos = data.draw(st.integers(0, len(blob) - 1))
    if op == "flip":
        bit = data.draw(st.integers(0, 7))
        return blob[:pos] + bytes([blob[pos] ^ (1 << bit)]) + blob[pos + 1 :]
    if op == "insert":
        return blob[:pos] + data.draw(st.binary(min_size=1, max_size=16)) + blob[pos:]
    if op == "delete":
        end = data.draw(st.integers(pos + 1, min(len(blob), pos + 16)))
        return blob[:pos] + blob[end:]
    return blob[:pos]


def mutate_binary_case(
    case: InferCase, data: st.DataObject
) -> tuple[bytes, dict[str, str]]:
    """Damage to a binary-extension request: its Inference-Header-Content-Length,
    a blob, the ``binary_data_size`` values, the JSON header, or the whole body
    replaced by raw bytes (header length 0). Returns (body, headers) to send."""
    header = dumps(case.doc)
    choice = data.draw(st.integers(0, 4), label="target")
    if choice == 0:  # Inference-Header-Content-Length
        case.header_length = data.draw(
            st.sampled_from(["", "-1", "+0", "0x10", " 12 ", "abc", "1e3", str(2**64)])
            | st.integers(-5, len(header) + 50).map(str)
        )
    elif choice == 1 and case.blobs:  # a blob's size or bytes
        index = data.draw(st.integers(0, len(case.blobs) - 1))
        case.blobs[index] = mutate_bytes(case.blobs[index], data)
    elif choice == 2:  # binary_data_size values
        for item in case.doc["inputs"]:
            if "parameters" in item and data.draw(st.booleans()):
                item["parameters"]["binary_data_size"] = data.draw(
                    st.sampled_from(INTERESTING_INTS) | json_values
                )
    elif choice == 3:  # the JSON header itself
        mutate_doc(case.doc, data)
    else:  # raw binary body (Inference-Header-Content-Length: 0)
        case.doc = {}
        case.header_length = "0"
        case.blobs = [data.draw(st.binary(max_size=64), label="raw body")]
    body, headers = case.body_and_headers()
    if choice == 4:
        body = case.blobs[0]
    return body, headers


def compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


# -- paths and methods ----------------------------------------------------------------

model_names = st.sampled_from(
    [*MODELS, "nope", "", "add_sub%2Fx", "%ff%fe", "%ED%A0%80", "..", "a" * 300]
) | st.text(
    st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=12
)
versions = st.sampled_from(
    ["", "1", "0", "2", "01", "-1", "99999999999999999999999", "abc", "1.0"]
)
ACTIONS = ["", "/ready", "/config", "/stats", "/infer", "/generate", "/trace/setting"]


def control_payload(path: str, body: object, params: object) -> bytes:
    """A control route's body: ``body`` as JSON (a load's wrapped with ``params``
    as its parameters), or none for None."""
    if body is None:
        return b""
    return dumps(
        {"parameters": params, "ready": body} if path.endswith("load") else body
    )


@st.composite
def control_paths(draw: Any) -> tuple[str, str]:
    """(method, path) over the control-plane routes, with odd names and versions."""
    model = draw(model_names)
    quoted = quote(model.encode("utf-8", "surrogatepass"), safe="%")
    version = draw(versions)
    vpart = f"/versions/{version}" if version else ""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        path = draw(
            st.sampled_from(
                ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/stats"]
            )
        )
    elif choice == 1:
        path = f"/v2/models/{quoted}{vpart}{draw(st.sampled_from(ACTIONS))}"
    elif choice == 2:
        path = "/v2/repository/index"
    elif choice == 3:
        path = f"/v2/repository/models/{quoted}/{draw(st.sampled_from(['load', 'unload']))}"
    else:
        path = "/" + draw(
            st.text(st.characters(codec="ascii", min_codepoint=33), max_size=30)
        )
    if draw(st.integers(0, 4)) == 0:
        path += "?" + draw(
            st.text(st.characters(codec="ascii", min_codepoint=33), max_size=10)
        )
    method = draw(
        st.sampled_from(
            ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "FOO"]
        )
    )
    return method, path


# -- shared memory, logging and trace settings routes ---------------------------------

SHM_ROUTES = ("systemsharedmemory", "cudasharedmemory")
region_names = st.sampled_from(["r", "s", "a" * 200]) | st.text(
    st.characters(codec="ascii", min_codepoint=48, max_codepoint=122), max_size=6
)
LOG_SETTINGS = {
    "log_info": st.booleans(),
    "log_warning": st.booleans(),
    "log_error": st.booleans(),
    # A verbose level makes both servers log every call: 0, 1, or what wraps to
    # them (int32, negative as 0).
    "log_verbose_level": st.sampled_from(
        [0, 1, -1, 2**31, 2**32, 2**32 + 1, 2**64 - 1, 2**64, "1", 1.5]
    ),
    "log_format": st.sampled_from(["default", "ISO8601", "iso8601", "", 1]),
    "log_file": st.sampled_from(["", "x.log"]),  # refused by both
}
TRACE_SETTINGS = {
    "trace_level": st.lists(st.sampled_from(["OFF", "TIMESTAMPS", "TENSORS", "x"]))
    | st.sampled_from(["OFF", None, 1]),
    "trace_rate": st.sampled_from(["1", "0", "-1", "x", "4294967296", 5, None]),
    "trace_count": st.sampled_from(["1", "0", "-1", "-2", "x", 5, None]),
    "log_frequency": st.sampled_from(["0", "1", "x", None]),
    "trace_mode": st.sampled_from(["triton", "opentelemetry", "x"]),
    "trace_file": st.sampled_from(["", "x.json", None]),
}


def _settings(draw: Any, table: dict[str, Any]) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(table)), max_size=3, unique=True))
    doc = {key: draw(table[key]) for key in keys}
    if draw(st.integers(0, 5)) == 0:
        doc[draw(st.text(max_size=5))] = draw(json_values)
    return doc


@st.composite
def settings_calls(draw: Any, shm_key: str, shm_bytes: int) -> tuple[str, str, Any]:
    """(method, path, JSON body or None) for a shared memory, logging or trace
    settings route: mostly well-formed bodies with odd values, now and then any
    JSON. ``shm_key``: a real region of ``shm_bytes`` bytes, so some
    registrations succeed."""
    kind = draw(st.sampled_from(["shm", "shm", "shm", "logging", "trace"]))
    body: Any = None
    if kind == "logging":
        path = "/v2/logging"
        if draw(st.booleans()):
            body = _settings(draw, LOG_SETTINGS)
    elif kind == "trace":
        model = draw(st.sampled_from(["", "/models/identity", "/models/nope"]))
        path = f"/v2{model}/trace/setting"
        if draw(st.booleans()):
            body = _settings(draw, TRACE_SETTINGS)
    else:
        route = draw(st.sampled_from(SHM_ROUTES))
        action = draw(st.sampled_from(["status", "register", "unregister"]))
        region = draw(st.none() | region_names)
        path = f"/v2/{route}" + (f"/region/{region}" if region is not None else "")
        path += f"/{action}"
        if action == "register" and route == "systemsharedmemory":
            body = {
                "key": draw(st.sampled_from([shm_key, shm_key, "/nope", ""])),
                "offset": draw(st.sampled_from([0, 0, 1, 4096, -1, shm_bytes])),
                "byte_size": draw(st.sampled_from([1, shm_bytes, shm_bytes + 1, 0])),
            }
        elif action == "register":
            body = {
                "raw_handle": {"b64": draw(st.sampled_from(["", "AAAA", "!"]))},
                "device_id": draw(st.sampled_from([0, 1, -1])),
                "byte_size": draw(st.sampled_from([1, 0])),
            }
        if body is not None and draw(st.integers(0, 4)) == 0:
            field_name = draw(st.sampled_from(sorted(body)))
            body[field_name] = draw(json_values)
            if draw(st.booleans()):
                del body[field_name]
    if body is None and draw(st.integers(0, 4)) == 0:
        body = draw(json_values)
    method = "GET" if body is None and kind != "shm" else "POST"
    if kind == "shm" and action == "status":
        method = draw(st.sampled_from(["GET", "GET", "POST"]))
    if kind != "shm" and body is None and draw(st.integers(0, 3)) == 0:
        method = "POST"
    return method, path, body


# -- the generate extension -------------------------------------------------------------

GENERATE_PARAMETERS = st.dictionaries(
    st.sampled_from(["max_tokens", "temperature", "stream", "x", ""])
    | st.text(max_size=4),
    scalars,
    max_size=3,
)


def _generate_value(draw: Any, datatype: str, width: int) -> Any:
    """A value generate maps onto an input: a scalar or a list of them."""
    if datatype == "BYTES":
        items = draw(st.lists(st.text(max_size=5), min_size=width, max_size=width))
    else:
        items = draw(
            st.lists(
                st.integers(-9, 9) | st.floats(-1e3, 1e3),
                min_size=width,
                max_size=width,
            )
        )
    return items[0] if width == 1 and draw(st.booleans()) else items


@st.composite
def generate_requests(draw: Any, models: Sequence[str]) -> tuple[str, Any]:
    """(path, JSON body) for ``generate`` or ``generate_stream`` on one of
    ``models``: each input a value or list of the model's type and shape, now and
    then ``parameters`` and other members, then up to two mutations (a member
    dropped, retyped, or added)."""
    model = draw(st.sampled_from(sorted(models)))
    _, inputs = MODELS[model]
    route = draw(st.sampled_from(["generate", "generate", "generate_stream"]))
    version = draw(st.sampled_from(["", "", "/versions/1", "/versions/2"]))
    doc: dict[str, Any] = {}
    width = draw(st.integers(1, 5))
    for name, datatype, dims in inputs:
        doc[name] = _generate_value(draw, datatype, 4 if dims == [4] else width)
    if draw(st.booleans()):
        doc["parameters"] = draw(GENERATE_PARAMETERS)
    if draw(st.integers(0, 3)) == 0:
        doc[draw(st.sampled_from(["id", "stream", "text_input", "OUTPUT0"]))] = draw(
            scalars
        )
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["drop", "retype", "add"]))
        keys = sorted(doc)
        if action == "add" or not keys:
            doc[
                draw(
                    st.sampled_from(["INPUT1", "INPUT2", "input0"])
                    | st.text(max_size=5)
                )
            ] = draw(json_values)
        elif action == "drop":
            del doc[draw(st.sampled_from(keys))]
        else:
            doc[draw(st.sampled_from(keys))] = draw(json_values)
    body: Any = doc if draw(st.integers(0, 15)) else draw(json_values)
    return f"/v2/models/{model}{version}/{route}", body
