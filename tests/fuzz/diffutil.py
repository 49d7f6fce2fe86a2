"""The differential fuzz suite's shared pieces (diffharness.py runs it,
test_diff_allowlist.py checks them): what an answer is, the request a mismatch is
about (``Sent``), the analyses of a request the allowlist (diff_allowlist.py) asks
for, and what the reference would allocate for a JSON body (examples it would take
gigabytes for are not sent to it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, NamedTuple

from google.protobuf import text_format
from tritonclient.grpc import service_pb2


class Answer(NamedTuple):
    """What a server answered, in the terms the two are compared in."""

    code: str  # HTTP status ("400"), gRPC code name, or "no answer"
    text: str  # the error message / details; for a success, the response


# -- requests -------------------------------------------------------------------------


@dataclass
class Sent:
    """A request as the allowlist's predicates see it."""

    protocol: str  # "http" or "grpc"
    wire: bytes  # the whole HTTP request, or the serialized ModelInferRequest
    # The JSON an HTTP body carries (a binary-extension body: its header).
    json_text: bytes = b""
    grpc: Any = None  # the gRPC request message
    grpc_method: str = "ModelInfer"  # the RPC it was sent to
    # The keys of the system shared memory regions registered on both servers.
    shm_keys: frozenset[str] = frozenset()
    # tritonx's answer to another request of the same kind (a wire as above).
    ask_ours: Callable[[bytes], Answer] | None = None

    @property
    def method(self) -> str:
        return self.wire.split(b" ", 1)[0].decode("latin-1") if self.is_http else ""

    @property
    def path(self) -> bytes:
        return self.wire.split(b" ", 2)[1] if self.is_http else b""

    @property
    def is_http(self) -> bool:
        return self.protocol == "http"

    @property
    def infer(self) -> Any:
        """The ModelInferRequest (None for HTTP and the gRPC control plane)."""
        return self.grpc if self.grpc_method == "ModelInfer" else None


PARSE = "failed to parse the request JSON buffer: "
SURROGATE = PARSE + "The surrogate pair in string is invalid."
TOO_DEEP = PARSE + "the document is nested too deeply."
INVALID_ENCODING = PARSE + "Invalid encoding in string."
# tritonx's JSON nesting limit: kMaxDepth in csrc/http/http_infer_codec.cc (the
# Python engine's json module gives up a little deeper, at its recursion limit).
TRITONX_MAX_DEPTH = 900
INT64_MAX = 2**63 - 1

_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.S)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


def lone_surrogates(json_text: bytes) -> tuple[bool, bool]:
    """(any lone high, any lone low) UTF-16 surrogate ``\\u`` escape in the text:
    a high one not directly followed by a low one, a low one not directly after a
    high one (a reversed pair is both)."""
    high = low = False
    pending = -1  # end of an unpaired high surrogate's escape
    for match in _ESCAPE.finditer(json_text):
        unit = int(match.group(1), 16) if match.group(1) else -1
        if pending >= 0:
            if match.start() == pending and 0xDC00 <= unit <= 0xDFFF:
                pending = -1
                continue
            high, pending = True, -1
        if 0xD800 <= unit <= 0xDBFF:
            pending = match.end()
        elif 0xDC00 <= unit <= 0xDFFF:
            low = True
    return high or pending >= 0, low


def json_depth(json_text: bytes) -> int:
    """The deepest nesting of arrays and objects in the text (strings skipped)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', json_text)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def string_not_utf8(json_text: bytes) -> bool:
    """Whether a JSON string (a member name or value) in the text is not UTF-8."""
    for match in _STRING.finditer(json_text):
        try:
            match.group().decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False


def nul_strings(sent: Sent) -> set[str]:
    """The strings of the request (names, ids, keys, string parameters) with a NUL;
    for HTTP, those of the JSON document (member names and string values) but a
    tensor's ``data`` (Triton keeps BYTES elements whole, by their length)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if "\0" in value:
                found.add(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
                if key != "data" or not isinstance(item, list):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    if sent.is_http:
        with suppress(ValueError, RecursionError):
            walk(json.loads(sent.json_text))
    elif sent.grpc is not None:
        walk(proto_strings(sent.grpc))
    return found


def proto_strings(message: Any) -> list[str]:
    """Every string of a protobuf message (map keys too), nested messages'."""
    out: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif hasattr(value, "ListFields"):
            out.extend(proto_strings(value))

    for _, value in message.ListFields():
        if hasattr(value, "items"):  # a map
            for key, item in value.items():
                add(key)
                add(item)
        elif isinstance(value, (str, bytes)) or hasattr(value, "ListFields"):
            add(value)
        elif hasattr(value, "__len__"):  # a repeated field
            for item in value:
                add(item)
    return out


def _as_shown_in_repr(value: str) -> str:
    """``value`` as a JSON string written as UTF-8, as it shows in the ``repr`` of
    an answer that is not JSON (BYTES data that is not UTF-8)."""
    written = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return repr(written)[2:-1]


def cut_at_nul(text: str, strings: set[str]) -> str:
    """``text`` with each of ``strings`` (raw, a whole JSON string, or one shown in
    a ``repr``) cut at its NUL."""
    for whole in sorted(strings, key=len, reverse=True):
        cut = whole[: whole.index("\0")]
        text = text.replace(whole, cut)
        text = text.replace(json.dumps(whole), json.dumps(cut))
        text = text.replace(_as_shown_in_repr(whole), _as_shown_in_repr(cut))
    return text


def cut_message(message: Any) -> bool:
    """Cuts every string of a protobuf message (map keys, nested messages') at its
    NUL, in place, as Triton's C strings are; False where two map keys would
    become one (a request Triton would see differently)."""
    whole = True
    for field, value in message.ListFields():
        if isinstance(value, str):
            setattr(message, field.name, value.split("\0")[0])
        elif hasattr(value, "items"):  # a map: its keys and messages
            for key in [k for k in value if isinstance(k, str) and "\0" in k]:
                cut = key.split("\0")[0]
                if cut in value or not hasattr(value[key], "ListFields"):
                    whole = False
                    continue
                value[cut].CopyFrom(value[key])
                del value[key]
            for item in value.values():
                if hasattr(item, "ListFields"):
                    whole &= cut_message(item)
        elif hasattr(value, "ListFields"):
            whole &= cut_message(value)
        elif not isinstance(value, bytes) and hasattr(value, "__len__"):
            for item in value:
                if hasattr(item, "ListFields"):
                    whole &= cut_message(item)
    return whole


def cut_response(text: str) -> str:
    """A gRPC OK answer (text format) with every string cut at its NUL."""
    response = service_pb2.ModelInferResponse()
    text_format.Parse(text, response)
    cut_message(response)
    return text_format.MessageToString(response, as_one_line=True)


_SHM_REGISTER = re.compile(rb"/v2/systemsharedmemory/region/([^/?]*)/register")


class ShmRegistration(NamedTuple):
    name: str
    key: str
    offset: int
    byte_size: int | None = None  # None: not an integer (HTTP)


def shm_registration(sent: Sent) -> ShmRegistration | None:
    """The system shared memory registration a request asks for (gRPC, or HTTP
    with a JSON body whose key is a string and offset an integer), else None."""
    if sent.grpc_method == "SystemSharedMemoryRegister" and sent.grpc is not None:
        grpc = sent.grpc
        return ShmRegistration(grpc.name, grpc.key, grpc.offset, grpc.byte_size)
    match = _SHM_REGISTER.fullmatch(sent.path) if sent.is_http else None
    if match is None:
        return None
    try:
        body = json.loads(sent.json_text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    key, offset = body.get("key"), body.get("offset")
    if not isinstance(key, str) or type(offset) is not int:
        return None
    size = body.get("byte_size")
    return ShmRegistration(
        match.group(1).decode("latin-1"),
        key,
        offset,
        size if type(size) is int else None,
    )


class ShmReference(NamedTuple):
    """A tensor's shared memory parameters as a server reads them (uint64)."""

    region: str
    offset: int
    byte_size: int


def shm_references(sent: Sent) -> list[ShmReference]:
    """The inputs' and outputs' well-typed shared memory references of an infer
    request (gRPC int64 values as the uint64 the server takes; absent ones 0)."""
    found = []
    if sent.infer is not None:
        for tensor in [*sent.infer.inputs, *sent.infer.outputs]:
            params = tensor.parameters
            region = params.get("shared_memory_region")
            if (
                region is None
                or region.WhichOneof("parameter_choice") != "string_param"
            ):
                continue
            offset, size = (
                params[key].int64_param % 2**64 if key in params else 0
                for key in ("shared_memory_offset", "shared_memory_byte_size")
            )
            found.append(ShmReference(region.string_param, offset, size))
        return found
    try:
        doc = json.loads(sent.json_text)
    except (ValueError, RecursionError):
        return []
    for member in ("inputs", "outputs"):
        tensors = doc.get(member) if isinstance(doc, dict) else None
        for tensor in tensors if isinstance(tensors, list) else []:
            params = tensor.get("parameters") if isinstance(tensor, dict) else None
            if not isinstance(params, dict):
                continue
            region = params.get("shared_memory_region")
            numbers = [
                params.get(key, 0)
                for key in ("shared_memory_offset", "shared_memory_byte_size")
            ]
            if isinstance(region, str) and all(
                type(n) is int and 0 <= n < 2**64 for n in numbers
            ):
                found.append(ShmReference(region, *numbers))
    return found


class Input(NamedTuple):
    """An input of a request, as far as its name, type and shape are well formed."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    has_data: bool = False  # (HTTP) whether it has a JSON ``data`` member
    data: Any = None


def request_inputs(sent: Sent) -> list[Input]:
    """The request's inputs whose shape is a list of integers (gRPC: all of them;
    HTTP: those of the JSON document, or of a binary-extension header)."""
    if sent.infer is not None:
        return [Input(t.name, t.datatype, tuple(t.shape)) for t in sent.infer.inputs]
    try:
        doc = json.loads(sent.json_text)
    except (ValueError, RecursionError):
        return []
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    found = []
    for item in inputs if isinstance(inputs, list) else []:
        shape = item.get("shape") if isinstance(item, dict) else None
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape
        ):
            continue
        name, datatype = item.get("name"), item.get("datatype")
        found.append(
            Input(
                name if isinstance(name, str) else "",
                datatype if isinstance(datatype, str) else "",
                tuple(shape),
                "data" in item,
                item.get("data"),
            )
        )
    return found


def element_count(shape: tuple[int, ...]) -> int:
    """The product of the dims, exactly (no int64 wrap)."""
    count = 1
    for dim in shape:
        count *= dim
    return count


def json_leaves(value: Any) -> int:
    """How many values a JSON ``data`` holds, its nested arrays flattened."""
    if isinstance(value, list):
        return sum(json_leaves(item) for item in value)
    return 1


REFERENCE_MAX_ALLOCATION = 256 << 20


def triton_json_allocation(json_text: bytes) -> int:
    """The bytes Triton would allocate up front for the JSON ``data`` of the inputs
    in ``json_text``: each shape's element count multiplied as int64 (wrapping, as
    there), 8 bytes an element at most; 0 for text Python's json cannot read."""
    total = 0
    for tensor in request_inputs(Sent("http", b"", json_text)):
        if tensor.has_data and tensor.shape:
            count = element_count(tensor.shape) & (2**64 - 1)
            total += min(count, 2**64 - count) * 8
    return total
