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
  the same mutations on a ``ModelStreamInfer`` stream (an in-band error is taken
  in unary terms when it is the server's unary answer);
* HTTP ``generate`` / ``generate_stream``: inputs as members of the model's type,
  mutated; a success compared whole (a stream: its events);
* HTTP control plane (health, metadata, config, statistics, repository, trace
  routes with odd methods, names, versions and bodies): as HTTP infer, but a
  successful statistics answer is compared by its status only;
* gRPC control plane (every RPC but inference, with odd names, versions,
  parameters, shared memory regions and trace and log settings): the status code
  and its details; for OK, the response (statistics: the code only);
* HTTP shared memory, logging and trace settings routes: as HTTP infer.

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
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import grpc
import pytest
from diff_allowlist import excused
from diffutil import (
    REFERENCE_MAX_ALLOCATION,
    Answer,
    Sent,
    shm_registration,
    triton_json_allocation,
)
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
from grpc_strategies import (
    SHM_BYTES,
    SHM_KEY,
    control_call,
    infer_requests,
    mutate_request,
)
from http_strategies import (
    control_paths,
    dumps,
    generate_requests,
    infer_cases,
    json_values,
    mutate_binary_case,
    mutate_doc,
    settings_calls,
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
        return "same"
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
def test_grpc_stream_mutations(pair: Pair, data: st.DataObject) -> None:
    """ModelInfer's mutations sent on a ModelStreamInfer stream: each server's
    in-band answer must be its unary answer (code aside), and the two servers'
    must be equal as in test_grpc_field_mutations."""
    request = data.draw(infer_requests(models=MODELS), label="valid request")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        mutate_request(request, data)

    def ask(reference: bool, wire: bytes) -> Answer:
        channel = pair.reference.channel if reference else pair.ours_channel
        return grpc_stream_answer(channel, wire)

    sent = Sent("grpc", request.SerializeToString(), grpc=request)
    compare(pair, "diff-grpc-stream", sent, ask, shown=request)


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


def grpc_stream_answer(channel: grpc.Channel, wire: bytes) -> Answer:
    """One request on a ModelStreamInfer stream, put in unary terms where the server
    is consistent: an in-band error whose message is the unary call's details gets
    that call's code (the stream carries none); otherwise the code is "in-band"."""
    call = channel.stream_stream(SERVICE + "ModelStreamInfer")
    try:
        replies = list(call(iter([wire]), timeout=ANSWER_S))
    except grpc.RpcError as error:
        return Answer(error.code().name, error.details() or "")
    if len(replies) != 1:
        return Answer("stream", f"{len(replies)} responses")
    reply = service_pb2.ModelStreamInferResponse.FromString(replies[0])
    if not reply.error_message:
        text = text_format.MessageToString(reply.infer_response, as_one_line=True)
        return Answer("OK", text)
    unary = grpc_answer(channel, wire)
    if unary.code != "OK" and unary.text == reply.error_message:
        return unary
    return Answer("in-band", reply.error_message)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(request=generate_requests(MODELS))
def test_http_generate(pair: Pair, request: tuple[str, Any]) -> None:
    """The generate extension: inputs as JSON members of the model's type and
    shape, then mutated; a success compared whole (generate_stream: its events)."""
    path, body = request
    payload = dumps(body)
    wire = request_bytes("POST", path, payload, {"Content-Type": "application/json"})
    compare_http(pair, wire, payload, "diff-http-generate")


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


def _control_response(method: str, reply: bytes) -> str:
    """An OK control-plane answer as text; statistics hold each server's own counts
    and times, so only that they were given counts."""
    if method == "ModelStatistics":
        return ""
    response = getattr(service_pb2, f"{method}Response").FromString(reply)
    return text_format.MessageToString(response, as_one_line=True)


@pytest.fixture(scope="module")
def control_region() -> Iterator[None]:
    """A system shared memory region both servers may register, so some
    registrations succeed and later status and unregister calls see them."""
    name = SHM_KEY.lstrip("/")
    try:
        region = shared_memory.SharedMemory(name, create=True, size=SHM_BYTES)
    except FileExistsError:  # left by a run that was killed
        shared_memory.SharedMemory(name).unlink()
        region = shared_memory.SharedMemory(name, create=True, size=SHM_BYTES)
    try:
        yield
    finally:
        region.close()
        region.unlink()


def _unary(channel: grpc.Channel, method: str, request: Any) -> Answer:
    call = channel.unary_unary(SERVICE + method)
    try:
        reply = call(request.SerializeToString(), timeout=ANSWER_S)
    except grpc.RpcError as error:
        return Answer(error.code().name, error.details() or "")
    return Answer("OK", _control_response(method, reply))


# Registrations tritonx makes where Triton 2.51 cannot (diff_allowlist.py): undone
# on tritonx at once, so that the two servers' regions stay the same.
_REGISTERED_ONLY_BY_TRITONX = ("allowed:shm-key-reuse", "allowed:shm-unaligned-offset")
UNREGISTER_ALL = "/v2/systemsharedmemory/unregister"


def _control_step(pair: Pair, method: str, request: Any, keys: dict[str, str]) -> None:
    """Sends one control call to both servers and compares the answers; ``keys``
    (region name -> key, as registered on both) follows the registrations."""
    ours: list[Answer] = []  # tritonx's answers, the request's first

    def ask(reference: bool, wire: bytes) -> Answer:
        channel = pair.reference.channel if reference else pair.ours_channel
        message = getattr(service_pb2, f"{method}Request").FromString(wire)
        answer = _unary(channel, method, message)
        if not reference:
            ours.append(answer)
        return answer

    sent = Sent(
        "grpc",
        request.SerializeToString(),
        grpc=request,
        grpc_method=method,
        shm_keys=frozenset(keys.values()),
    )
    outcome = compare(pair, f"diff-grpc-{method}", sent, ask, shown=(method, request))
    if outcome in _REGISTERED_ONLY_BY_TRITONX:
        undo = service_pb2.SystemSharedMemoryUnregisterRequest(name=request.name)
        undone = _unary(pair.ours_channel, "SystemSharedMemoryUnregister", undo)
        assert undone.code == "OK", undone
    elif outcome != "same" or ours[0].code != "OK":
        return
    elif method == "SystemSharedMemoryRegister":
        keys[request.name] = request.key
    elif method == "SystemSharedMemoryUnregister" and not request.name:
        keys.clear()
    elif method == "SystemSharedMemoryUnregister":
        keys.pop(request.name, None)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_grpc_control_plane(
    pair: Pair, control_region: None, data: st.DataObject
) -> None:
    """Every RPC but inference, 1-3 calls from no system shared memory region:
    health, metadata, configuration, statistics, repository (not in EXPLICIT mode:
    loads and unloads are refused by both), system and CUDA shared memory (one real
    region to register) and trace and log settings (both servers see the same
    changes, in the same order)."""
    unregister_all = service_pb2.SystemSharedMemoryUnregisterRequest()
    for channel in (pair.ours_channel, pair.reference.channel):
        answer = _unary(channel, "SystemSharedMemoryUnregister", unregister_all)
        assert answer.code == "OK", answer
    keys: dict[str, str] = {}
    for _ in range(data.draw(st.integers(1, 3), label="calls")):
        method, request = control_call(data)
        _control_step(pair, method, request, keys)


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(data=st.data())
def test_http_shared_memory_and_settings(
    pair: Pair, control_region: None, data: st.DataObject
) -> None:
    """The HTTP routes of system and CUDA shared memory (one real region to
    register), logging and trace settings: 1-3 calls from no registered region,
    mostly well-formed bodies with odd values."""
    ports = (pair.ours.ports["http"], pair.reference.server.ports["http"])
    for port in ports:
        answer = http_answer(port, request_bytes("POST", UNREGISTER_ALL, b""))
        assert answer.code == "200", answer
    keys: dict[str, str] = {}  # region name (as in the path) -> key, on both
    for _ in range(data.draw(st.integers(1, 3), label="calls")):
        method, path, body = data.draw(settings_calls(SHM_KEY, SHM_BYTES))
        payload = b"" if body is None else dumps(body)
        wire = request_bytes(method, path, payload)
        outcome = compare_http(
            pair, wire, payload, "diff-http-settings",
            shm_keys=frozenset(keys.values()),
        )  # fmt: skip
        registration = shm_registration(Sent("http", wire, payload))
        if outcome in _REGISTERED_ONLY_BY_TRITONX and registration is not None:
            undo = path.replace("/register", "/unregister")
            answer = http_answer(ports[0], request_bytes("POST", undo, b""))
            assert answer.code == "200", answer
        elif outcome != "same" or not path.startswith("/v2/systemsharedmemory"):
            continue
        elif registration is not None:
            keys[registration.name] = registration.key
        elif path == UNREGISTER_ALL:
            keys.clear()
        elif path.endswith("/unregister"):
            keys.pop(path.split("/")[4], None)
