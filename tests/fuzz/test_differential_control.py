"""Differential fuzzing of the control plane: the same calls to tritonx and to
Triton 2.51 (harness and rules: diffharness.py).

* HTTP control plane (health, metadata, config, statistics, repository, trace
  routes with odd methods, names, versions and bodies): the status and the error
  message, or the answer; a successful statistics answer by its status only;
* gRPC control plane (every RPC but inference, with odd names, versions,
  parameters, shared memory regions and trace and log settings): the status code
  and its details; for OK, the response (statistics: the code only);
* HTTP shared memory, logging and trace settings routes: as the HTTP control plane.

Calls that register shared memory start from no registered region, on a real
64-byte region both servers can map; a registration only tritonx can make
(allowlisted) is undone on tritonx at once, so the two servers' regions stay alike.
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from diffharness import (  # noqa: F401 (fixtures)
    EXAMPLES,
    SERVICE,
    Pair,
    _alive_and_live,
    compare,
    compare_http,
    fuzz_models,
    http_answer,
    pair,
    server,
)
from diffutil import Answer, Sent, shm_registration
from fuzzutil import ANSWER_S, fuzz, request_bytes
from google.protobuf import text_format
from grpc_strategies import SHM_BYTES, SHM_KEY, control_call
from http_strategies import (
    control_paths,
    control_payload,
    dumps,
    json_values,
    settings_calls,
)
from hypothesis import given
from hypothesis import strategies as st
from serverutil import needs_reference
from shmutil import fresh_region
from tritonclient.grpc import service_pb2


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
    payload = control_payload(path, body, params)
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
    region = fresh_region(SHM_KEY, SHM_BYTES)
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
