"""The differential fuzz suite's harness (test_differential_fuzz.py and
test_differential_control.py use it): the same requests to tritonx and to Triton
2.51.

Runs only when ``TRITONX_REFERENCE_CMD`` names the real Triton (see
``serverutil.reference_command``); both servers serve the same repository of
Python-backend models (add_sub, identity, fuzz_bytes: the reference has no
onnxruntime). Each example is generated valid and mutated by the strategies the
fuzz suites share (``http_strategies``, ``grpc_strategies``), sent to tritonx and
then to the reference, and the two answers must be equal (what each test
compares: its module's docstring): for HTTP the status and the error message, or
the answer (a JSON header with sorted keys and a digest of any binary tail; a
chunked body decoded); for gRPC the code and details, or the response.

The few deliberate deviations of tritonx are excused by ``ALLOWLIST`` only, each
entry tied to the requests it is about (a predicate over the request and both
answers; some ask tritonx a second, derived request, e.g. the same URL with a '%'
kept, and compare that answer with Triton's). Triton itself crashes on some inputs
(e.g. JSON nested 100,000 deep overflows its stack) and takes seconds and
gigabytes on others (JSON ``data`` for a shape of 2^32 x 2^32 elements, which it
allocates and zeroes first), and its Python stub process can die or miss its health
check under load ("Stub process '...' is not healthy."): such an example is skipped (``hypothesis.reject``;
counted as ``skipped:...`` in the tally) and the reference restarted, never
counted against tritonx; the latter are not even sent to it.

Environment: ``TRITONX_DIFF_EXAMPLES`` (examples per test, default 150),
``TRITONX_FUZZ_SEED`` (unset: derandomized), ``TRITONX_FUZZ_TALLY`` (collect every
mismatch instead of stopping at the first; the test fails at its end),
``TRITONX_DIFF_LOG`` (append each mismatch to this JSON-lines file, to group
them after a long run), ``TRITONX_DIFF_HTTP_ENGINE`` (tritonx's
``--http-engine``, default native), ``TRITONX_DIFF_SERVER_ARGS`` (more tritonx
flags, e.g. ``--backend-config=python,execution-mode=process``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from diff_allowlist import excused
from diffutil import (
    REFERENCE_MAX_ALLOCATION,
    Answer,
    Sent,
    triton_json_allocation,
)
from fuzzutil import (
    ANSWER_S,
    SEED,
    TALLY,
    HttpAnswer,
    error_message,
    exchange,
)
from google.protobuf import text_format
from hypothesis import reject
from serverutil import (
    REFERENCE_STUB_UNHEALTHY,
    RunningServer,
    run_reference,
    run_server,
)
from tritonclient.grpc import service_pb2

MODELS = ("add_sub", "identity", "fuzz_bytes")  # Python backend only
EXAMPLES = int(os.environ.get("TRITONX_DIFF_EXAMPLES", "150"))  # per test
DIFF_LOG = os.environ.get("TRITONX_DIFF_LOG")
HTTP_ENGINE = os.environ.get("TRITONX_DIFF_HTTP_ENGINE", "native")
SERVER_ARGS = shlex.split(os.environ.get("TRITONX_DIFF_SERVER_ARGS", ""))
SERVICE = "/inference.GRPCInferenceService/"

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
    with run_server(fuzz_repo, f"--http-engine={HTTP_ENGINE}", *SERVER_ARGS) as running:
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


def first_answer(port: int, request: bytes) -> HttpAnswer | Answer:
    """The server's successful answer to ``request``, or the comparable form of
    anything else: no answer, or the status and error message."""
    ex = exchange(port, request, expect=1)
    if not ex.answers:
        return Answer("no answer", "timed out" if ex.timed_out else "closed")
    answer = ex.answers[0]
    if answer.status >= 400:
        return Answer(str(answer.status), error_message(answer.body))
    return answer


def http_answer(port: int, request: bytes) -> Answer:
    """The status and error message; for a success, the JSON header (keys sorted)
    and the binary tail."""
    answer = first_answer(port, request)
    if isinstance(answer, Answer):
        return answer
    if answer.headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        return Answer(str(answer.status), sse_events(answer.body))
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


def sse_events(body: bytes) -> str:
    """A generate_stream body as its events' JSON values (keys sorted), as a client
    reads them: numbers by value (the Python engine writes a double's shortest
    form, RapidJSON sometimes one more digit: -564.3611450195312 / ...313), the
    framing exactly (an event that is not one JSON line is shown as sent)."""
    events = []
    for event in body.split(b"\n\n"):
        if not event:
            continue
        try:
            if not event.startswith(b"data: "):
                raise ValueError
            events.append(json.dumps(json.loads(event[6:]), sort_keys=True))
        except ValueError:
            events.append(repr(event))
    return "events " + "; ".join(events)


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
) -> str:
    """Asks tritonx (``ask(False, wire)``) then, unless the allowlist excuses
    tritonx's answer alone, the reference (``ask(True, wire)``); counts the outcome
    (under ``kind``) and fails on a mismatch; returns it ("same", "allowed:<entry>"
    or "mismatch"). An example the reference crashes on, or does not answer in time,
    is skipped and the reference restarted."""
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
        return f"allowed:{deviation.name}"
    if triton_json_allocation(sent.json_text) > REFERENCE_MAX_ALLOCATION:
        skip_example(kind, "reference-allocation", description)
    try:
        theirs = ask(True, wire)
    except OSError:
        theirs = Answer("no answer", "connection refused")
    # An answer equal to tritonx's came from a working reference: no need to wait
    # the grace period for a crash (control-plane runs answer UNAVAILABLE for every
    # request to a model not loaded, 2 s each).
    unavailable = theirs.code in ("no answer", "UNAVAILABLE") and theirs != ours
    if unavailable and reference.died():
        log(f"{kind}:reference-crash", wire, description, ours, None)
        reference.restart()
        skip_example(kind, "reference-crash", description)
    if theirs == Answer("no answer", "timed out") or theirs.code == "DEADLINE_EXCEEDED":
        log(f"{kind}:reference-timeout", wire, description, ours, None)
        reference.restart(kill=True)  # it may be busy for long yet
        skip_example(kind, "reference-timeout", description)
    if ours == theirs:
        TALLY.record(kind, ["same"], None)
        return "same"
    if theirs.code in ("500", "INTERNAL") and REFERENCE_STUB_UNHEALTHY.fullmatch(
        theirs.text
    ):
        # Triton's Python stub process died or missed its health check (seen once,
        # for a program it answers normally, in a loaded CI run): the reference's
        # own failure, not an answer to judge tritonx by.
        log(f"{kind}:reference-stub", wire, description, ours, theirs)
        reference.restart(kill=True)
        skip_example(kind, "reference-stub", description)
    deviation = excused(sent, ours, theirs)
    if deviation is not None:
        TALLY.record(kind, [f"allowed:{deviation.name}"], None)
        return f"allowed:{deviation.name}"
    log(kind, wire, description, ours, theirs)
    TALLY.record(
        kind,
        ["mismatch", "bad-code"],
        f"tritonx answered {tuple(ours)!r}\nTriton answered  {tuple(theirs)!r}\n"
        f"request: {description}",
    )
    return "mismatch"


def compare_http(
    pair: Pair,
    wire: bytes,
    json_text: bytes = b"",
    kind: str = "diff-http",
    normalize: Callable[[bytes, Answer], Answer] | None = None,
    shm_keys: frozenset[str] = frozenset(),
) -> str:
    """``wire``: the whole HTTP request; ``json_text``: the JSON its body carries;
    ``shm_keys``: the keys of the regions registered on both servers."""

    def ask(reference: bool, request: bytes) -> Answer:
        server = pair.reference.server if reference else pair.ours
        answer = http_answer(server.ports["http"], request)
        return answer if normalize is None else normalize(request, answer)

    sent = Sent("http", wire, json_text, shm_keys=shm_keys)
    return compare(pair, kind, sent, ask)


def compare_grpc(pair: Pair, request: Any, kind: str = "diff-grpc") -> str:
    def ask(reference: bool, wire: bytes) -> Answer:
        channel = pair.reference.channel if reference else pair.ours_channel
        return grpc_answer(channel, wire)

    sent = Sent("grpc", request.SerializeToString(), grpc=request)
    return compare(pair, kind, sent, ask, shown=request)


# -- tests ----------------------------------------------------------------------------


def stream_replies(channel: grpc.Channel, wire: bytes) -> list[Any] | Answer:
    """Every ModelStreamInferResponse a stream carried for one request (the client
    closes its side after it), or the call's status."""
    call = channel.stream_stream(SERVICE + "ModelStreamInfer")
    try:
        replies = list(call(iter([wire]), timeout=ANSWER_S))
    except grpc.RpcError as error:
        return Answer(error.code().name, error.details() or "")
    return [service_pb2.ModelStreamInferResponse.FromString(r) for r in replies]


def grpc_stream_answer(channel: grpc.Channel, wire: bytes) -> Answer:
    """One request on a ModelStreamInfer stream, put in unary terms where the server
    is consistent: an in-band error whose message is the unary call's details gets
    that call's code (the stream carries none); otherwise the code is "in-band"."""
    replies = stream_replies(channel, wire)
    if isinstance(replies, Answer):
        return replies
    if len(replies) != 1:
        return Answer("stream", f"{len(replies)} responses")
    reply = replies[0]
    if not reply.error_message:
        text = text_format.MessageToString(reply.infer_response, as_one_line=True)
        return Answer("OK", text)
    unary = grpc_answer(channel, wire)
    if unary.code != "OK" and unary.text == reply.error_message:
        return unary
    return Answer("in-band", reply.error_message)


def compare_grpc_stream(
    pair: Pair, request: Any, kind: str = "diff-grpc-stream"
) -> str:
    """``request`` alone on a ModelStreamInfer stream, on each server
    (grpc_stream_answer), compared as ``compare`` does."""

    def ask(reference: bool, wire: bytes) -> Answer:
        channel = pair.reference.channel if reference else pair.ours_channel
        return grpc_stream_answer(channel, wire)

    sent = Sent("grpc", request.SerializeToString(), grpc=request)
    return compare(pair, kind, sent, ask, shown=request)
