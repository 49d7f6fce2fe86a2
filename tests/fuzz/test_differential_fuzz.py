"""Differential fuzzing: the same mutated requests to tritonx and to Triton 2.51.

Runs only when ``TRITONX_REFERENCE_CMD`` names the real Triton (see
``serverutil.reference_command``); both servers serve the same repository of
Python-backend models (add_sub, identity, fuzz_bytes: the reference has no
onnxruntime). Each example is generated valid and mutated by the strategies the
fuzz suites share (``http_strategies``, ``grpc_strategies``), sent to tritonx and
then to the reference, and the two answers must be equal:

* HTTP infer (JSON and binary-extension bodies): the status and the error message
  (``{"error": ...}``); for a success, the response's JSON header and binary tail;
* gRPC ``ModelInfer``: the status code and its details; for OK, the response;
* HTTP control plane (health, metadata, config, statistics, repository, trace
  routes with odd methods, names, versions and bodies): as HTTP infer, but a
  successful statistics answer is compared by its status only.

The few deliberate deviations of tritonx are excused by ``ALLOWLIST`` only, each
entry tied to the requests it is about (a predicate over the request and both
answers; some ask tritonx a second, derived request, e.g. the same URL with a '%'
kept, and compare that answer with Triton's). Triton itself crashes on some inputs
(e.g. JSON nested 100,000 deep overflows its stack) and takes seconds and
gigabytes on others (JSON ``data`` for a shape of 2^32 x 2^32 elements, which it
allocates and zeroes first): such an example is skipped (``hypothesis.reject``;
counted as ``skipped:...`` in the tally) and the reference restarted, never
counted against tritonx; the latter are not even sent to it.

Environment: ``TRITONX_DIFF_EXAMPLES`` (examples per test, default 150),
``TRITONX_FUZZ_SEED`` (unset: derandomized), ``TRITONX_FUZZ_TALLY`` (collect every
mismatch instead of stopping at the first; the test fails at its end),
``TRITONX_DIFF_LOG`` (append each mismatch to this JSON-lines file, to group
them after a long run), ``TRITONX_DIFF_HTTP_ENGINE`` (tritonx's
``--http-engine``, default native).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import pytest
from fuzzutil import (
    ANSWER_S,
    SEED,
    TALLY,
    error_message,
    exchange,
    fuzz,
    request_bytes,
)
from google.protobuf import text_format
from grpc_strategies import infer_requests, mutate_request
from http_strategies import (
    control_paths,
    dumps,
    infer_cases,
    json_values,
    mutate_binary_case,
    mutate_doc,
)
from hypothesis import given, reject
from hypothesis import strategies as st
from serverutil import RunningServer, reference_command, run_reference, run_server
from tritonclient.grpc import service_pb2

needs_reference = pytest.mark.skipif(
    reference_command() is None, reason="TRITONX_REFERENCE_CMD is not set"
)

MODELS = ("add_sub", "identity", "fuzz_bytes")  # Python backend only
EXAMPLES = int(os.environ.get("TRITONX_DIFF_EXAMPLES", "150"))  # per test
DIFF_LOG = os.environ.get("TRITONX_DIFF_LOG")
HTTP_ENGINE = os.environ.get("TRITONX_DIFF_HTTP_ENGINE", "native")
SERVICE = "/inference.GRPCInferenceService/"


class Answer(NamedTuple):
    """What a server answered, in the terms the two are compared in."""

    code: str  # HTTP status ("400"), gRPC code name, or "no answer"
    text: str  # the error message / details; for a success, the response


# -- allowlist ------------------------------------------------------------------------


@dataclass
class Sent:
    """A request as the allowlist's predicates see it."""

    protocol: str  # "http" or "grpc"
    wire: bytes  # the whole HTTP request, or the serialized ModelInferRequest
    # The JSON an HTTP body carries (a binary-extension body: its header).
    json_text: bytes = b""
    grpc: Any = None  # the ModelInferRequest
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


@dataclass(frozen=True)
class Deviation:
    """A known, deliberate difference, and the test for a request it excuses."""

    name: str
    why: str
    excuses: Callable[[Sent, Answer, Answer | None], bool]
    # Excused from tritonx's answer alone: the reference is not asked (it may
    # crash or hang on such requests, which costs a restart).
    without_reference: bool = False


def _surrogate(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    high, low = lone_surrogates(sent.json_text)
    if ours != Answer("400", SURROGATE) or not (high or low) or theirs is None:
        return False
    # Triton's rapidjson refuses a lone high surrogate (500, with the offset) but
    # takes a lone low one as is, and the request then fails (or not) elsewhere.
    return low or bool(re.fullmatch(re.escape(SURROGATE) + r" at \d+", theirs.text))


def _too_deep(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return ours == Answer("500", TOO_DEEP) and json_depth(sent.json_text) > (
        TRITONX_MAX_DEPTH
    )


# Triton's TritonJson messages for a member of the wrong type that tritonx answers
# with 400 (a client's mistake), keeping Triton's words: exactly these.
_TRITONJSON_400 = re.compile(
    r"Unable to parse '(?:shape|priority|timeout)': attempt to access JSON "
    r"non-unsigned-integer as unsigned-integer"
    r"|Unable to parse 'sequence_id': attempt to access JSON non-string as string"
    r"|Unable to parse 'sequence_(?:start|end)': attempt to access JSON "
    r"non-boolean as boolean"
    r"|Unable to set 'classification': attempt to access JSON "
    r"non-unsigned-integer as unsigned-integer"
)


def _client_error_400(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        theirs is not None
        and (ours.code, theirs.code) == ("400", "500")
        and ours.text == theirs.text
        and _TRITONJSON_400.fullmatch(ours.text) is not None
    )


_DIM_TOO_LARGE = re.compile(
    r"Unable to parse 'shape': dimension (\d+) of input '.*' is larger than the "
    rf"maximum of {INT64_MAX}",
    re.S,
)


def _dim_past_int64(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    match = _DIM_TOO_LARGE.fullmatch(ours.text)
    if ours.code != "400" or match is None or theirs is None:
        return False
    dim = match.group(1).encode()
    literal = re.compile(rb"(?<![\d.eE+-])" + dim + rb"(?![\d.eE])")
    return (
        INT64_MAX < int(dim) < 2**64
        and literal.search(sent.json_text) is not None
        # Triton read the document: an earlier parse error would be a bug.
        and not theirs.text.startswith(PARSE)
    )


def _invalid_utf8(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return ours == Answer("500", INVALID_ENCODING) and string_not_utf8(sent.json_text)


def nul_strings(sent: Sent) -> set[str]:
    """The strings of the request (names, ids, keys, string parameters) with a NUL;
    for HTTP, those of the JSON document (member names and string values)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if "\0" in value:
                found.add(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(key)
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


def cut_at_nul(text: str, strings: set[str]) -> str:
    """``text`` with each of ``strings`` (raw or JSON-escaped) cut at its NUL."""
    for whole in sorted(strings, key=len, reverse=True):
        cut = whole[: whole.index("\0")]
        text = text.replace(whole, cut)
        text = text.replace(json.dumps(whole)[1:-1], json.dumps(cut)[1:-1])
    return text


def _cut_response(text: str) -> str:
    """A gRPC OK answer (text format) with every string cut at its NUL."""
    response = service_pb2.ModelInferResponse()
    text_format.Parse(text, response)

    def cut(message: Any) -> None:
        for field, value in message.ListFields():
            if isinstance(value, str):
                setattr(message, field.name, value.split("\0")[0])
            elif hasattr(value, "items"):  # a map: its messages
                for item in value.values():
                    if hasattr(item, "ListFields"):
                        cut(item)
            elif hasattr(value, "ListFields"):
                cut(value)
            elif not isinstance(value, bytes) and hasattr(value, "__len__"):
                for item in value:
                    if hasattr(item, "ListFields"):
                        cut(item)

    cut(response)
    return text_format.MessageToString(response, as_one_line=True)


_PARAMETER_NOT_FOUND = re.compile(
    r"parameter key '(.*)' was not found in the JSON", re.S
)


def _nul(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    strings = nul_strings(sent)
    if theirs is None or not strings:
        return False
    if theirs.code == ours.code:
        # Names reach Triton's core cut at their NUL (C strings); its messages are
        # C strings too, cut at the first NUL of the whole message.
        cut = cut_at_nul(ours.text, strings)
        if theirs.text in (cut, ours.text.split("\0")[0], cut.split("\0")[0]):
            return True
        if ours.code == "OK" and theirs.text == _cut_response(ours.text):
            return True
    # Triton lists the request parameters' keys, then looks each one up by its C
    # string: a key cut at its NUL is not found.
    found = _PARAMETER_NOT_FOUND.fullmatch(theirs.text)
    if sent.is_http and theirs.code == "500" and found is not None:
        try:
            params = json.loads(sent.json_text).get("parameters")
        except (ValueError, RecursionError, AttributeError):
            return False
        keys = params if isinstance(params, dict) else {}
        return any("\0" in key and key.split("\0")[0] == found.group(1) for key in keys)
    return False


_MODEL_SEGMENT = re.compile(rb"^(/v2/(?:repository/)?models/)([^/?]*)")


def _percent_escape(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """tritonx decodes %XX in a URL's model name (tritonclient quotes names);
    Triton does not: it answers as tritonx does for the name with its '%' kept."""
    match = _MODEL_SEGMENT.match(sent.path)
    if theirs is None or sent.ask_ours is None or match is None:
        return False
    if b"%" not in match.group(2):
        return False
    kept = match.group(2).replace(b"%", b"%25")
    path = match.group(1) + kept + sent.path[match.end() :]
    method, _, rest = sent.wire.partition(b" ")
    replay = method + b" " + path + rest[len(sent.path) :]
    return sent.ask_ours(replay) == theirs


# Methods tritonx's HTTP parsers know; others are refused as a bad request.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
KNOWN_METHODS |= {"PATCH"}


def _unknown_method(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        sent.method not in KNOWN_METHODS
        and ours == Answer("400", "Bad Request")
        and theirs in (Answer("405", "Method Not Allowed"), Answer("404", "Not Found"))
    )


def _head_without_body(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        sent.method == "HEAD"
        and theirs is not None
        and ours.code == theirs.code
        and ours.text == ""
    )


def _server_metadata(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """GET /v2: tritonx's own version; no CUDA shared memory in this build."""
    if sent.method != "GET" or sent.path.split(b"?")[0] != b"/v2" or theirs is None:
        return False
    if (ours.code, theirs.code) != ("200", "200"):
        return False
    mine, triton = json.loads(ours.text), json.loads(theirs.text)
    triton["version"] = mine.get("version")
    extensions = triton.get("extensions", [])
    triton["extensions"] = [e for e in extensions if e != "cuda_shared_memory"]
    return bool(mine == triton)


_INVALID_DIM = re.compile(
    r"(?:\[request id: .*\] )?tensor '(.*)' contains an invalid dimension "
    r"(?:in shape )?\[(-?\d+(?:,-?\d+)*)?\]",
    re.S,
)


def _negative_dims(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    match = _INVALID_DIM.fullmatch(ours.text)
    if sent.grpc is None or ours.code != "INVALID_ARGUMENT" or match is None:
        return False
    dims = [int(d) for d in match.group(2).split(",")] if match.group(2) else []
    return any(
        tensor.name == match.group(1)
        and min(tensor.shape, default=0) < 0
        and list(tensor.shape[len(tensor.shape) - len(dims) :]) == dims
        for tensor in sent.grpc.inputs
    )


_BATCH_TOO_BIG = re.compile(
    r"(?:\[request id: .*\] )?inference request batch-size must be <= \d+ for .*",
    re.S,
)


def _batch_past_int32(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    return (
        sent.grpc is not None
        and ours.code == "INVALID_ARGUMENT"
        and _BATCH_TOO_BIG.fullmatch(ours.text) is not None
        and any(t.shape and t.shape[0] >= 2**31 for t in sent.grpc.inputs)
    )


_PARAMETER_TYPE = re.compile(r"invalid value type for '(.*)' parameter, expected .*\.")


def _parameter_named(sent: Sent, ours: Answer, theirs: Answer | None) -> bool:
    """Of several invalid request parameters, Triton names the first of its
    protobuf map's order; tritonx the first in key order (deterministic)."""
    if sent.grpc is None or theirs is None or sent.ask_ours is None:
        return False
    mine, triton = (
        _PARAMETER_TYPE.fullmatch(ours.text),
        _PARAMETER_TYPE.fullmatch(theirs.text),
    )
    if mine is None or triton is None or ours.code != theirs.code:
        return False
    named, other = mine.group(1), triton.group(1)
    keys = sent.grpc.parameters
    if named == other or named not in keys or other not in keys or named > other:
        return False
    # The key tritonx names is invalid on its own.
    alone = service_pb2.ModelInferRequest()
    alone.CopyFrom(sent.grpc)
    for key in list(alone.parameters):
        if key != named:
            del alone.parameters[key]
    return sent.ask_ours(alone.SerializeToString()) == ours


ALLOWLIST = [
    Deviation(
        "lone-surrogate",
        # tritonx refuses a lone UTF-16 surrogate escape in any JSON string as a
        # client error, 400, without a parser offset; Triton answers 500 with
        # " at <offset>" appended for a lone high surrogate, and accepts a lone
        # low one (its rapidjson writes it out as invalid UTF-8), which then
        # reaches names, ids and data.
        "lone UTF-16 surrogate escape in a JSON string",
        _surrogate,
    ),
    Deviation(
        "too-deep",
        # tritonx refuses JSON nested deeper than TRITONX_MAX_DEPTH (500, "nested
        # too deeply") instead of recursing; Triton parses any depth and crashes
        # (stack overflow) on very deep documents, e.g. 100,000 levels.
        "JSON nested deeper than tritonx's limit",
        _too_deep,
        without_reference=True,
    ),
    Deviation(
        "client-error-400",
        # A JSON member of the wrong type (a shape dim, priority or timeout that is
        # no unsigned integer, ...): Triton's TritonJson message, which Triton
        # answers with 500; tritonx with 400, as a client's mistake (no 5xx for
        # those), keeping Triton's words. Only these messages, with the same text.
        "a JSON member of the wrong type: 400 where Triton answers 500",
        _client_error_400,
    ),
    Deviation(
        "dim-past-int64",
        # A shape dim in [2^63, 2^64): Triton reads it as uint64 and its core as a
        # negative int64 (then fails somewhere, or crashes); tritonx refuses it
        # where it reads the shape, with 400 and a message naming the dim. Only
        # that message, for a dim the JSON has, and not instead of a parse error.
        "a JSON shape dim past int64: refused as it is read",
        _dim_past_int64,
    ),
    Deviation(
        "invalid-utf8",
        # JSON must be UTF-8: tritonx refuses a string that is not (500, "Invalid
        # encoding in string.", as the parse errors); Triton takes its bytes as
        # they are. Being the first error tritonx meets, whatever Triton does with
        # the rest is not comparable.
        "a JSON string that is not UTF-8",
        _invalid_utf8,
        without_reference=True,
    ),
    Deviation(
        "nul-in-string",
        # Triton passes names, ids, parameter keys and string values to its core
        # as C strings, cut at a NUL character (so "INPUT1\u0000x" finds INPUT1, a
        # key "a\u0000b" is then not found), and its error messages are C strings
        # too; tritonx keeps every string whole. Excused when Triton's answer is
        # tritonx's with those strings, or the message, cut at the NUL.
        "a NUL character in a string",
        _nul,
    ),
    Deviation(
        "percent-escape",
        # tritonx decodes %XX in a URL's model name (tritonclient quotes names, so
        # names with such characters work); Triton takes the name as it is.
        # Excused when tritonx, asked for the name with its '%' kept (%25), answers
        # as Triton did.
        "a percent-escape in a URL's model name",
        _percent_escape,
    ),
    Deviation(
        "unknown-method",
        # A method tritonx's HTTP parsers do not know (FOO): 400 Bad Request;
        # Triton: 405 on a route, 404 elsewhere.
        "an unknown HTTP method",
        _unknown_method,
    ),
    Deviation(
        "head-without-body",
        # HTTP forbids a body in an answer to HEAD: tritonx sends none, Triton
        # sends the error body; the statuses must be equal.
        "an answer to HEAD without its body",
        _head_without_body,
    ),
    Deviation(
        "server-metadata",
        # GET /v2: tritonx's own version, and no cuda_shared_memory extension
        # (this build has no CUDA); everything else as Triton's.
        "server metadata: version and CUDA shared memory",
        _server_metadata,
    ),
    Deviation(
        "grpc-negative-dim",
        # gRPC dims are int64: tritonx refuses a negative one, "tensor 'X' contains
        # an invalid dimension [...]"; Triton computes sizes with it (then fails
        # with odd numbers, or not at all). Only that message, for an input of the
        # request with that negative shape.
        "a negative dim in a gRPC shape",
        _negative_dims,
        without_reference=True,
    ),
    Deviation(
        "grpc-batch-past-int32",
        # A batch dim of 2^31 or more: Triton truncates it to 32 bits (4294967297
        # is a batch of 1), and hangs on some; tritonx refuses it as larger than
        # max_batch_size. Not sent to the reference.
        "a gRPC batch dim past 32 bits",
        _batch_past_int32,
        without_reference=True,
    ),
    Deviation(
        "grpc-parameter-named",
        # Several invalid request parameters: Triton names the first in its
        # protobuf map's (hash) order, tritonx the first in key order, every time.
        # Excused when tritonx names an earlier key than Triton, one that is
        # invalid on its own.
        "which of several invalid gRPC request parameters is named",
        _parameter_named,
    ),
]


def excused(sent: Sent, ours: Answer, theirs: Answer | None = None) -> Deviation | None:
    """The allowlist entry excusing this pair of answers, if any (``theirs`` None:
    only entries that need no reference answer)."""
    for deviation in ALLOWLIST:
        if (theirs is not None or deviation.without_reference) and deviation.excuses(
            sent, ours, theirs
        ):
            return deviation
    return None


# -- the two servers ------------------------------------------------------------------


class Reference:
    """Triton 2.51 on the fuzz repository; restarted when it dies."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.restarts = 0
        self._stack = ExitStack()
        self.start()

    def start(self) -> None:
        self._stack = ExitStack()
        self.server = self._stack.enter_context(run_reference([self.repo]))
        self.channel = self._stack.enter_context(grpc_channel(self.server.grpc_url))

    def close(self) -> None:
        self._stack.close()

    def restart(self, kill: bool = False) -> None:
        self.restarts += 1
        if kill:
            self.server.process.kill()
        self.close()
        self.start()

    def alive(self) -> bool:
        return self.server.process.poll() is None

    def died(self, grace: float = 2.0) -> bool:
        """Whether it exited (waits ``grace`` s: a crash while answering shows as a
        dropped connection a moment before the process is gone)."""
        try:
            self.server.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return False
        return True


def grpc_channel(url: str) -> grpc.Channel:
    return grpc.insecure_channel(
        url,
        options=[
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
        ],
    )


@dataclass
class Pair:
    ours: RunningServer
    ours_channel: grpc.Channel
    reference: Reference


@pytest.fixture(scope="module")
def fuzz_models() -> tuple[str, ...]:
    return ("add_sub", "identity")  # + fuzz_bytes; no simple_onnx (ONNX)


@pytest.fixture(scope="module")
def server(fuzz_repo: Path) -> Iterator[RunningServer]:
    print(
        f"differential fuzz: {EXAMPLES} examples per test, seed {SEED or 'derandomized'}"
    )
    with run_server(fuzz_repo, f"--http-engine={HTTP_ENGINE}") as running:
        yield running


@pytest.fixture(scope="module")
def pair(server: RunningServer, fuzz_repo: Path) -> Iterator[Pair]:
    reference = Reference(fuzz_repo)
    try:
        with grpc_channel(server.grpc_url) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            yield Pair(server, channel, reference)
    finally:
        print(
            f"differential fuzz: the reference was restarted {reference.restarts} times"
        )
        reference.close()


@pytest.fixture(autouse=True)
def _alive_and_live(request: pytest.FixtureRequest) -> Iterator[None]:
    """Replaces the fuzz suites' check (no liveness prober here): after a test
    with the servers, tritonx still runs, and in tally mode no mismatch was
    collected."""
    if "pair" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("server")
    TALLY.take_failures()
    yield
    assert server.process.poll() is None, (
        f"tritonx exited with {server.process.returncode}:\n{server.log_text()[-4000:]}"
    )
    failures = TALLY.take_failures()
    assert not failures, f"{len(failures)} mismatches, first ones:\n" + "\n".join(
        failures[:5]
    )


# -- comparing ------------------------------------------------------------------------


def http_answer(port: int, request: bytes) -> Answer:
    """The status and error message; for a success, the JSON header (keys sorted)
    and the binary tail."""
    ex = exchange(port, request, expect=1)
    if not ex.answers:
        return Answer("no answer", "timed out" if ex.timed_out else "closed")
    answer = ex.answers[0]
    if answer.status >= 400:
        return Answer(str(answer.status), error_message(answer.body))
    length = answer.headers.get(b"inference-header-content-length")
    split = int(length) if length and length.isdigit() else len(answer.body)
    try:
        header = json.dumps(json.loads(answer.body[:split]), sort_keys=True)
    except ValueError:
        header = repr(answer.body[:split])
    tail = answer.body[split:]
    if tail:  # binary outputs: their size and a digest of their bytes
        header += (
            f" + {len(tail)} bytes, sha256 {hashlib.sha256(tail).hexdigest()[:16]}"
        )
    return Answer(str(answer.status), header)


def grpc_answer(channel: grpc.Channel, wire: bytes) -> Answer:
    """The code and details; for OK, the whole response as text."""
    call = channel.unary_unary(SERVICE + "ModelInfer")  # bytes in, bytes out
    try:
        reply = call(wire, timeout=ANSWER_S)
    except grpc.RpcError as error:
        return Answer(error.code().name, error.details() or "")
    response = service_pb2.ModelInferResponse.FromString(reply)
    return Answer("OK", text_format.MessageToString(response, as_one_line=True))


# Triton's HTTP frontend allocates (and zeroes) the buffer for an input's JSON
# `data` from its shape before it reads a value: a shape of 2^32 x 2^32 elements
# takes it seconds and gigabytes (or its memory). Requests past this are not sent
# to it.
REFERENCE_MAX_ALLOCATION = 256 << 20


def triton_json_allocation(json_text: bytes) -> int:
    """The bytes Triton would allocate up front for the JSON ``data`` of the inputs
    in ``json_text``: each shape's element count multiplied as int64 (wrapping, as
    there), 8 bytes an element at most; 0 for text Python's json cannot read."""
    try:
        doc = json.loads(json_text)
    except (ValueError, RecursionError):
        return 0
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    total = 0
    for item in inputs if isinstance(inputs, list) else []:
        if not isinstance(item, dict) or "data" not in item:
            continue
        shape = item.get("shape")
        if not isinstance(shape, list) or not shape:
            continue
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            continue
        count = 1
        for dim in shape:
            count = (count * dim) & (2**64 - 1)
        total += min(count, 2**64 - count) * 8
    return total


def log(
    kind: str, wire: bytes, shown: str, ours: Answer, theirs: Answer | None
) -> None:
    if DIFF_LOG is None:
        return
    entry = {
        "kind": kind,
        "ours": ours,
        "theirs": theirs,
        "shown": shown[:2000],
        "wire": base64.b64encode(wire[:200_000]).decode(),
    }
    with open(DIFF_LOG, "a") as out:
        out.write(json.dumps(entry) + "\n")


def skip_example(protocol: str, why: str, description: str) -> None:
    """Rejects an example the reference cannot judge (counted, never a failure)."""
    TALLY.record(protocol, [f"skipped:{why}"], None)
    print(f"differential fuzz: skipped ({why}): {description[:300]}")
    reject()


def compare(
    pair: Pair,
    kind: str,
    sent: Sent,
    ask: Callable[[bool, bytes], Answer],
    *,
    shown: object = None,
) -> None:
    """Asks tritonx (``ask(False, wire)``) then, unless the allowlist excuses
    tritonx's answer alone, the reference (``ask(True, wire)``); counts the outcome
    (under ``kind``) and fails on a mismatch. An example the reference crashes on,
    or does not answer in time, is skipped and the reference restarted."""
    wire = sent.wire
    description = repr(shown if shown is not None else wire[:1500])
    reference = pair.reference
    if not reference.alive():  # died after its last answer
        reference.restart()
    sent.ask_ours = lambda other: ask(False, other)
    ours = ask(False, wire)
    if pair.ours.process.poll() is not None:
        TALLY.record(kind, ["crash"], f"tritonx died on {description}")
    deviation = excused(sent, ours)
    if deviation is not None:
        TALLY.record(kind, [f"allowed:{deviation.name}"], None)
        return
    if triton_json_allocation(sent.json_text) > REFERENCE_MAX_ALLOCATION:
        skip_example(kind, "reference-allocation", description)
    try:
        theirs = ask(True, wire)
    except OSError:
        theirs = Answer("no answer", "connection refused")
    if theirs.code in ("no answer", "UNAVAILABLE") and reference.died():
        log(f"{kind}:reference-crash", wire, description, ours, None)
        reference.restart()
        skip_example(kind, "reference-crash", description)
    if theirs == Answer("no answer", "timed out") or theirs.code == "DEADLINE_EXCEEDED":
        log(f"{kind}:reference-timeout", wire, description, ours, None)
        reference.restart(kill=True)  # it may be busy for long yet
        skip_example(kind, "reference-timeout", description)
    if ours == theirs:
        TALLY.record(kind, ["same"], None)
        return
    deviation = excused(sent, ours, theirs)
    if deviation is not None:
        TALLY.record(kind, [f"allowed:{deviation.name}"], None)
        return
    log(kind, wire, description, ours, theirs)
    TALLY.record(
        kind,
        ["mismatch", "bad-code"],
        f"tritonx answered {tuple(ours)!r}\nTriton answered  {tuple(theirs)!r}\n"
        f"request: {description}",
    )


def compare_http(
    pair: Pair,
    wire: bytes,
    json_text: bytes = b"",
    kind: str = "diff-http",
    normalize: Callable[[bytes, Answer], Answer] | None = None,
) -> None:
    """``wire``: the whole HTTP request; ``json_text``: the JSON its body carries."""

    def ask(reference: bool, request: bytes) -> Answer:
        server = pair.reference.server if reference else pair.ours
        answer = http_answer(server.ports["http"], request)
        return answer if normalize is None else normalize(request, answer)

    compare(pair, kind, Sent("http", wire, json_text), ask)


def compare_grpc(pair: Pair, request: Any) -> None:
    def ask(reference: bool, wire: bytes) -> Answer:
        channel = pair.reference.channel if reference else pair.ours_channel
        return grpc_answer(channel, wire)

    sent = Sent("grpc", request.SerializeToString(), grpc=request)
    compare(pair, "diff-grpc", sent, ask, shown=request)


# -- tests ----------------------------------------------------------------------------


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_http_json_mutations(pair: Pair, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=False, models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_doc(case.doc, data)
    body, headers = case.body_and_headers()
    compare_http(pair, request_bytes("POST", case.path, body, headers), dumps(case.doc))


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_http_binary_mutations(pair: Pair, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=True, models=MODELS), label="valid request")
    body, headers = mutate_binary_case(case, data)
    json_text = dumps(case.doc) if case.doc else body
    compare_http(pair, request_bytes("POST", case.path, body, headers), json_text)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_grpc_field_mutations(pair: Pair, data: st.DataObject) -> None:
    request = data.draw(infer_requests(models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_request(request, data)
    compare_grpc(pair, request)


def _control_answer(request: bytes, answer: Answer) -> Answer:
    """Statistics hold each server's own counts and times: a successful answer to
    a statistics route is compared by its status only."""
    path = request.split(b" ", 2)[1].split(b"?")[0]
    if answer.code.startswith("2") and path.endswith(b"/stats"):
        return Answer(answer.code, "")
    return answer


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(route=control_paths(), body=st.none() | json_values, params=json_values)
def test_http_control_plane(
    pair: Pair, route: tuple[str, str], body: object, params: object
) -> None:
    """Health, metadata, configuration, statistics, repository and trace routes
    with odd methods, names, versions and bodies (neither server is in EXPLICIT
    mode: loads and unloads are refused by both, nothing changes)."""
    method, path = route
    payload = b""
    if body is not None:
        wrapped = (
            {"parameters": params, "ready": body} if path.endswith("load") else body
        )
        payload = dumps(wrapped)
    wire = request_bytes(method, path, payload)
    compare_http(pair, wire, payload, "diff-http-control", _control_answer)


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
            "grpc-batch-past-int32",
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
