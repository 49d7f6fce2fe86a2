"""Differential fuzzing: the same mutated requests to tritonx and to Triton 2.51.

Runs only when ``TRITONX_REFERENCE_CMD`` names the real Triton (see
``serverutil.reference_command``); both servers serve the same repository of
Python-backend models (add_sub, identity, fuzz_bytes: the reference has no
onnxruntime). Each example is generated valid and mutated by the strategies the
fuzz suites share (``http_strategies``, ``grpc_strategies``), sent to tritonx and
then to the reference, and the two answers must be equal:

* HTTP: the status and the error message (``{"error": ...}``); for a success,
  the response's JSON header and binary tail;
* gRPC ``ModelInfer``: the status code and its details; for OK, the response.

The few deliberate deviations of tritonx are excused by ``ALLOWLIST`` only, each
entry tied to the requests it is about. Triton itself crashes on some inputs
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
from contextlib import ExitStack
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
    InferCase,
    dumps,
    infer_cases,
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

SURROGATE = (
    "failed to parse the request JSON buffer: The surrogate pair in string is invalid."
)
TOO_DEEP = "failed to parse the request JSON buffer: the document is nested too deeply."
# tritonx's JSON nesting limit: kMaxDepth in csrc/http/http_infer_codec.cc (the
# Python engine's json module gives up a little deeper, at its recursion limit).
TRITONX_MAX_DEPTH = 900

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


@dataclass(frozen=True)
class Deviation:
    """A known, deliberate difference, and the test for a request it excuses."""

    name: str
    why: str
    excuses: Callable[[bytes, Answer, Answer | None], bool]
    # Excused from tritonx's answer alone: the reference is not asked (it may
    # crash on such requests, which costs a restart).
    without_reference: bool = False


def _surrogate(json_text: bytes, ours: Answer, theirs: Answer | None) -> bool:
    high, low = lone_surrogates(json_text)
    if ours != Answer("400", SURROGATE) or not (high or low) or theirs is None:
        return False
    # Triton's rapidjson refuses a lone high surrogate (500, with the offset) but
    # takes a lone low one as is, and the request then fails (or not) elsewhere.
    return low or bool(re.fullmatch(re.escape(SURROGATE) + r" at \d+", theirs.text))


def _too_deep(json_text: bytes, ours: Answer, theirs: Answer | None) -> bool:
    return ours == Answer("500", TOO_DEEP) and json_depth(json_text) > TRITONX_MAX_DEPTH


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
]


def excused(
    json_text: bytes, ours: Answer, theirs: Answer | None = None
) -> Deviation | None:
    """The allowlist entry excusing this pair of answers, if any (``theirs`` None:
    only entries that need no reference answer)."""
    for deviation in ALLOWLIST:
        if (theirs is not None or deviation.without_reference) and deviation.excuses(
            json_text, ours, theirs
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
    protocol: str,
    wire: bytes,
    ask: Callable[[bool], Answer],
    *,
    json_text: bytes = b"",
    shown: object = None,
) -> None:
    """Asks tritonx (``ask(False)``) then, unless the allowlist excuses tritonx's
    answer alone, the reference (``ask(True)``); counts the outcome and fails on a
    mismatch. An example the reference crashes on, or does not answer in time, is
    skipped and the reference restarted."""
    description = repr(shown if shown is not None else wire[:1500])
    reference = pair.reference
    if not reference.alive():  # died after its last answer
        reference.restart()
    ours = ask(False)
    if pair.ours.process.poll() is not None:
        TALLY.record(protocol, ["crash"], f"tritonx died on {description}")
    deviation = excused(json_text, ours)
    if deviation is not None:
        TALLY.record(protocol, [f"allowed:{deviation.name}"], None)
        return
    if triton_json_allocation(json_text) > REFERENCE_MAX_ALLOCATION:
        skip_example(protocol, "reference-allocation", description)
    try:
        theirs = ask(True)
    except OSError:
        theirs = Answer("no answer", "connection refused")
    if theirs.code in ("no answer", "UNAVAILABLE") and reference.died():
        log(f"{protocol}:reference-crash", wire, description, ours, None)
        reference.restart()
        skip_example(protocol, "reference-crash", description)
    if theirs == Answer("no answer", "timed out") or theirs.code == "DEADLINE_EXCEEDED":
        log(f"{protocol}:reference-timeout", wire, description, ours, None)
        reference.restart(kill=True)  # it may be busy for long yet
        skip_example(protocol, "reference-timeout", description)
    if ours == theirs:
        TALLY.record(protocol, ["same"], None)
        return
    deviation = excused(json_text, ours, theirs)
    if deviation is not None:
        TALLY.record(protocol, [f"allowed:{deviation.name}"], None)
        return
    log(protocol, wire, description, ours, theirs)
    TALLY.record(
        protocol,
        ["mismatch", "bad-code"],
        f"tritonx answered {tuple(ours)!r}\nTriton answered  {tuple(theirs)!r}\n"
        f"request: {description}",
    )


def compare_http(
    pair: Pair, case: InferCase, body: bytes, headers: dict[str, str]
) -> None:
    wire = request_bytes("POST", case.path, body, headers)
    json_text = dumps(case.doc) if case.doc else body

    def ask(reference: bool) -> Answer:
        server = pair.reference.server if reference else pair.ours
        return http_answer(server.ports["http"], wire)

    compare(pair, "diff-http", wire, ask, json_text=json_text)


def compare_grpc(pair: Pair, request: Any) -> None:
    wire = request.SerializeToString()

    def ask(reference: bool) -> Answer:
        channel = pair.reference.channel if reference else pair.ours_channel
        return grpc_answer(channel, wire)

    compare(pair, "diff-grpc", wire, ask, shown=request)


# -- tests ----------------------------------------------------------------------------


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_http_json_mutations(pair: Pair, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=False, models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_doc(case.doc, data)
    body, headers = case.body_and_headers()
    compare_http(pair, case, body, headers)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_http_binary_mutations(pair: Pair, data: st.DataObject) -> None:
    case = data.draw(infer_cases(binary=True, models=MODELS), label="valid request")
    body, headers = mutate_binary_case(case, data)
    compare_http(pair, case, body, headers)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_grpc_field_mutations(pair: Pair, data: st.DataObject) -> None:
    request = data.draw(infer_requests(models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_request(request, data)
    compare_grpc(pair, request)


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
