"""Differential fuzzing of inference through system shared memory: the same
requests, inputs read from and outputs written to registered regions, to tritonx
and to Triton 2.51 (the harness, its environment variables and the comparison
rules are in diffharness.py; the requests: shm_strategies.py).

An answer is compared as the inference fuzz compares it, plus the bytes each
server left in its own regions (reset before the request): what was written,
where, and nothing else.
"""

# The harness's fixtures are imported by name for pytest to find; the tests' same-named
# parameters are those fixtures, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import shared_memory

import grpc
import pytest
from diffharness import (  # noqa: F401 (fixtures)
    EXAMPLES,
    Pair,
    _alive_and_live,
    compare,
    fuzz_models,
    grpc_answer,
    http_answer,
    pair,
    server,
)
from diffutil import Answer, Sent
from fuzzutil import fuzz
from hypothesis import given
from serverutil import needs_reference
from shm_strategies import (
    IN_BYTES,
    IN_CONTENT,
    OUT_BYTES,
    ShmRequest,
    mutated_requests,
)
from shmutil import fresh_region
from tritonclient.grpc import service_pb2

# Each server's own objects, registered under the same names: an output may be
# written to ``in`` too.
KEYS = {
    False: {"in": "/tritonx_diff_shm_in_x", "out": "/tritonx_diff_shm_out_x"},
    True: {"in": "/tritonx_diff_shm_in_r", "out": "/tritonx_diff_shm_out_r"},
}
SIZES = {"in": IN_BYTES, "out": OUT_BYTES}
CONTENT = {"in": IN_CONTENT.ljust(IN_BYTES, b"\0"), "out": bytes(OUT_BYTES)}


def _register(channel: grpc.Channel, name: str, key: str, size: int) -> None:
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/SystemSharedMemoryRegister"
    )
    request = service_pb2.SystemSharedMemoryRegisterRequest(
        name=name, key=key, byte_size=size
    )
    call(request.SerializeToString(), timeout=10)


Objects = dict[str, shared_memory.SharedMemory]  # region name -> its object


@dataclass
class Regions:
    """Each server's objects (reference or not), and the reference's restart count
    when they were registered on it (a restarted reference has none)."""

    objects: dict[bool, Objects]
    registered_at_restart: int = 0


def _register_all(channel: grpc.Channel, keys: dict[str, str]) -> None:
    for name, key in keys.items():
        _register(channel, name, key, SIZES[name])


@pytest.fixture(scope="module")
def regions(pair: Pair) -> Iterator[Regions]:
    """``in`` and ``out`` of each server (reference or not), registered on it."""
    made = {
        reference: {name: fresh_region(key, SIZES[name]) for name, key in keys.items()}
        for reference, keys in KEYS.items()
    }
    try:
        _register_all(pair.ours_channel, KEYS[False])
        _register_all(pair.reference.channel, KEYS[True])
        yield Regions(made, pair.reference.restarts)
    finally:
        for objects in made.values():
            for region in objects.values():
                region.close()
                region.unlink()


def _reset(objects: Objects) -> None:
    for name, region in objects.items():
        region.buf[: SIZES[name]] = CONTENT[name]


def _written(objects: Objects) -> str:
    """What a request left in the regions ("" for nothing, so that the allowlist
    sees an error's message alone): ``out``'s bytes, and ``in``'s if changed."""
    out = bytes(objects["out"].buf[:OUT_BYTES]).rstrip(b"\0").hex()
    source = bytes(objects["in"].buf[:IN_BYTES])
    changed = "" if source == CONTENT["in"] else f", in: {source.hex()}"
    return f" | out: {out}{changed}" if out or changed else ""


def _asker(
    pair: Pair, regions: Regions, protocol: str
) -> Callable[[bool, bytes], Answer]:
    def ask(reference: bool, wire: bytes) -> Answer:
        if reference and pair.reference.restarts != regions.registered_at_restart:
            _register_all(pair.reference.channel, KEYS[True])  # a new reference
            regions.registered_at_restart = pair.reference.restarts
        _reset(regions.objects[reference])
        if protocol == "http":
            server = pair.reference.server if reference else pair.ours
            answer = http_answer(server.ports["http"], wire)
        else:
            channel = pair.reference.channel if reference else pair.ours_channel
            answer = grpc_answer(channel, wire)
        return Answer(answer.code, answer.text + _written(regions.objects[reference]))

    return ask


@needs_reference
@fuzz(1.0, EXAMPLES)
@given(request=mutated_requests())
def test_shared_memory_inference(
    pair: Pair, regions: Regions, request: ShmRequest
) -> None:
    wire, payload = request.http_wire()
    ask = _asker(pair, regions, "http")
    compare(pair, "diff-shm-http", Sent("http", wire, payload), ask, shown=request)
    message = request.grpc_request()
    sent = Sent("grpc", message.SerializeToString(), grpc=message)
    ask = _asker(pair, regions, "grpc")
    compare(pair, "diff-shm-grpc", sent, ask, shown=request)
