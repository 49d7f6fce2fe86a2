"""The allowlist's control-plane and shared memory entries, without a reference:
each excuses the requests it is about and no others (test_diff_allowlist.py has
the rest)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from diff_allowlist import excused
from diffutil import Answer, Sent
from google.protobuf import text_format
from tritonclient.grpc import service_pb2

KEY = "/region"
UNALIGNED = (
    "failed to register shared memory region 'r': unable to process address "
    "spaceInvalid argument"
)
ARGS = "failed to register shared memory region 'r': invalid args"
NO_MEMORY = (
    "failed to register shared memory region 'r': unable to process address "
    "spaceCannot allocate memory"
)
NO_CUDA = "failed to register CUDA shared memory region: 'r', GPUs not supported"
UNKNOWN_LOAD = "unrecognized load parameter '{}'."


def _call(method: str, keys: frozenset[str] = frozenset(), **fields: Any) -> Sent:
    request = getattr(service_pb2, f"{method}Request")(**fields)
    wire = request.SerializeToString()
    return Sent("grpc", wire, grpc=request, grpc_method=method, shm_keys=keys)


def _register(
    offset: int = 0, keys: frozenset[str] = frozenset(), byte_size: int = 8
) -> Sent:
    return _call(
        "SystemSharedMemoryRegister", keys, name="r", key=KEY, offset=offset,
        byte_size=byte_size,
    )  # fmt: skip


def _http_register(name: str, offset: object, reuse: bool = True) -> Sent:
    body = json.dumps({"key": KEY, "offset": offset, "byte_size": 8}).encode()
    path = f"/v2/systemsharedmemory/region/{name}/register"
    wire = f"POST {path} HTTP/1.1\r\n\r\n".encode() + body
    return Sent("http", wire, body, shm_keys=frozenset([KEY] if reuse else []))


def _http(path: str) -> Sent:
    return Sent("http", f"POST {path} HTTP/1.1\r\n\r\n".encode())


def _infer() -> Sent:
    return _call("ModelInfer", model_name="m")


def _stream() -> Sent:
    request = service_pb2.ModelInferRequest(model_name="m")
    wire = request.SerializeToString()
    return Sent("grpc", wire, grpc=request, grpc_method="ModelStreamInfer")


def _final(value: str) -> str:
    return (
        'model_name: "m" parameters { key: "triton_final_response" value { '
        f"bool_param: {value} }} }}"
    )


def _bls(number: int, name: str, message: str = "x") -> Answer:
    """A 200 answer of test_differential_bls.py's model reporting one error."""
    code = [number, f"__ErrorCode.{name}", f"<__ErrorCode.{name}: {number}>"]
    report = json.dumps([[{"code": code, "error": message}]])
    return Answer("200", json.dumps({"outputs": [{"data": [report]}]}))


def _load(*keys: str) -> Sent:
    parameters = {k: service_pb2.ModelRepositoryParameter(int64_param=1) for k in keys}
    return _call("RepositoryModelLoad", model_name="m", parameters=parameters)


def _metadata(version: str, *extensions: str) -> Answer:
    response = service_pb2.ServerMetadataResponse(
        name="triton", version=version, extensions=list(extensions)
    )
    return Answer("OK", text_format.MessageToString(response, as_one_line=True))


def _shm_infer(protocol: str, offset: int, size: int, output: bool = False) -> Sent:
    """An infer request with one tensor in region 'in' at ``offset``, ``size``."""
    if protocol == "grpc":
        request = service_pb2.ModelInferRequest(model_name="m")
        tensor = (
            request.outputs.add(name="O") if output else request.inputs.add(name="I")
        )
        tensor.parameters["shared_memory_region"].string_param = "in"
        tensor.parameters["shared_memory_offset"].int64_param = offset
        tensor.parameters["shared_memory_byte_size"].int64_param = size
        return Sent("grpc", request.SerializeToString(), grpc=request)
    params = {"shared_memory_region": "in", "shared_memory_offset": offset,
              "shared_memory_byte_size": size}  # fmt: skip
    tensor_doc = {"name": "O" if output else "I", "parameters": params}
    body = json.dumps({"outputs" if output else "inputs": [tensor_doc]}).encode()
    return Sent("http", b"POST /v2/models/m/infer HTTP/1.1\r\n\r\n" + body, body)


OUT_OF_RANGE = "Invalid offset + byte size for shared memory region: '{}'"
OK = Answer("OK", "")
INVALID = "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "sent, ours, theirs, expected",
    [
        # Server metadata: the version and CUDA shared memory only.
        (
            _call("ServerMetadata"),
            _metadata("0.1.0", "a", "b"),
            _metadata("2.51.0", "a", "cuda_shared_memory", "b"),
            "server-metadata",
        ),
        (
            _call("ServerMetadata"),
            _metadata("0.1.0", "a"),
            _metadata("2.51.0", "a", "b"),
            None,
        ),
        # CUDA shared memory in a build without CUDA.
        (
            _call("CudaSharedMemoryRegister", name="r"),
            Answer(INVALID, NO_CUDA),
            Answer(INVALID, "failed to register shared memory region: invalid args"),
            "no-cuda-build",
        ),
        (
            _call("CudaSharedMemoryRegister", name="other"),
            Answer(INVALID, NO_CUDA),
            Answer(INVALID, "failed to register shared memory region: invalid args"),
            None,
        ),
        (
            _call("CudaSharedMemoryRegister", name="r"),
            Answer(INVALID, NO_CUDA),
            OK,
            None,
        ),
        # A second region on a registered key.
        (
            _register(keys=frozenset([KEY])),
            OK,
            Answer("INTERNAL", f"Invalid shared memory region: '{KEY}'"),
            "shm-key-reuse",
        ),
        (
            _register(),
            OK,
            Answer("INTERNAL", f"Invalid shared memory region: '{KEY}'"),
            None,
        ),
        # ... past the object's end: Triton's fstat of the closed descriptor fails
        # before its range check (found by the differential fuzz, over HTTP).
        (
            _register(keys=frozenset([KEY]), offset=1),
            Answer(INVALID, ARGS),
            Answer("INTERNAL", f"Invalid shared memory region: '{KEY}'"),
            "shm-key-reuse",
        ),
        (
            _http_register("r", 1),
            Answer("400", ARGS),
            Answer("500", f"Invalid shared memory region: '{KEY}'"),
            "shm-key-reuse",
        ),
        (
            _http_register("r", 1, reuse=False),
            Answer("400", ARGS),
            Answer("500", f"Invalid shared memory region: '{KEY}'"),
            None,
        ),
        (
            _register(keys=frozenset([KEY]), offset=1),
            Answer(INVALID, ARGS),
            Answer(INVALID, UNALIGNED),
            None,
        ),
        # An offset that is not page aligned.
        (_register(offset=1), OK, Answer(INVALID, UNALIGNED), "shm-unaligned-offset"),
        (_register(offset=4096), OK, Answer(INVALID, UNALIGNED), None),
        (
            _register(offset=1),
            OK,
            Answer(
                INVALID, "failed to register shared memory region 'r': invalid args"
            ),
            None,
        ),
        # A range whose end wraps past 2^64: Triton maps it and its mmap fails.
        (
            _register(offset=2**63, byte_size=2**63),
            Answer(INVALID, ARGS),
            Answer(INVALID, NO_MEMORY),
            "shm-register-range-wraps",
        ),
        (
            _register(offset=2**64 - 1, byte_size=2),
            Answer(INVALID, ARGS),
            Answer(INVALID, UNALIGNED),
            "shm-register-range-wraps",
        ),
        (
            _register(offset=2**63, byte_size=2**63 - 1),  # no wrap
            Answer(INVALID, ARGS),
            Answer(INVALID, NO_MEMORY),
            None,
        ),
        (
            _register(offset=2**63, byte_size=2**63),
            Answer(INVALID, ARGS),
            Answer("INTERNAL", NO_MEMORY),
            None,
        ),
        (
            _http_register("r", 2**64 - 8, reuse=False),
            Answer("400", ARGS),
            Answer("400", NO_MEMORY),
            "shm-register-range-wraps",
        ),
        # The same over HTTP (the region's name from the path, the rest from the body).
        (
            _http_register("r", 0),
            Answer("200", ""),
            Answer("500", "x"),
            "shm-key-reuse",
        ),
        (_http_register("r", "0"), Answer("200", ""), Answer("500", "x"), None),
        (
            _http_register("r", 8),
            Answer("200", ""),
            Answer("400", UNALIGNED),
            "shm-key-reuse",  # the key is registered: the first entry to excuse it
        ),
        (
            _http_register("r", 8, reuse=False),
            Answer("200", ""),
            Answer("400", UNALIGNED),
            "shm-unaligned-offset",
        ),
        (
            _http_register("r", 4096, reuse=False),
            Answer("200", ""),
            Answer("400", UNALIGNED),
            None,
        ),
        # A trace setting of the wrong JSON type: 400 for Triton's 500, same words.
        (
            _http("/v2/models/m/trace/setting"),
            Answer("400", "attempt to access JSON non-array as array"),
            Answer("500", "attempt to access JSON non-array as array"),
            "client-error-400",
        ),
        (
            _http("/v2/logging"),
            Answer("400", "attempt to access JSON non-array as array"),
            Answer("500", "attempt to access JSON non-array as array"),
            None,
        ),
        # A shared memory range whose end wraps: tritonx's refusal, for its region.
        (
            _shm_infer("grpc", 16, -1),
            Answer(INVALID, OUT_OF_RANGE.format("in")),
            None,
            "shm-range-wraps",
        ),
        (
            _shm_infer("http", 16, 2**64 - 1, output=True),
            Answer("400", OUT_OF_RANGE.format("in")),
            None,
            "shm-range-wraps",
        ),
        (
            _shm_infer("grpc", 16, 200),  # past the region, not past 2^64
            Answer(INVALID, OUT_OF_RANGE.format("in")),
            None,
            None,
        ),
        (
            _shm_infer("grpc", 16, -1),  # another region's refusal
            Answer(INVALID, OUT_OF_RANGE.format("out")),
            None,
            None,
        ),
        (
            _shm_infer("http", 16, 2**64 - 1),  # another error
            Answer("400", "Invalid offset for shared memory region: 'in'"),
            None,
            None,
        ),
        # Several invalid load parameters: tritonx names the first in key order.
        (
            _load("a", "b"),
            Answer(INVALID, UNKNOWN_LOAD.format("a")),
            Answer(INVALID, UNKNOWN_LOAD.format("b")),
            "load-parameter-named",
        ),
        (
            _load("a", "b"),
            Answer(INVALID, UNKNOWN_LOAD.format("b")),
            Answer(INVALID, UNKNOWN_LOAD.format("a")),
            None,
        ),
        (
            _load("a"),
            Answer(INVALID, UNKNOWN_LOAD.format("a")),
            Answer(INVALID, UNKNOWN_LOAD.format("c")),
            None,
        ),
        # Triton's message is a C string: a key with a NUL ends it there.
        (
            _load("a", "b\0c"),
            Answer(INVALID, UNKNOWN_LOAD.format("a")),
            Answer(INVALID, "unrecognized load parameter 'b"),
            "load-parameter-named",
        ),
        (
            _load("c", "b\0c"),
            Answer(INVALID, UNKNOWN_LOAD.format("c")),
            Answer(INVALID, "unrecognized load parameter 'b"),
            None,  # tritonx named a later key
        ),
        # A model's error answering generate: tritonx's status is its code's.
        (
            _http("/v2/models/m/generate"),
            Answer("500", "boom"),
            Answer("400", "boom"),
            "generate-model-error-status",
        ),
        (
            _http("/v2/models/m/generate_stream"),
            Answer("503", 'data: {"error":"x"}\n\n'),
            Answer("400", 'data: {"error":"x"}\n\n'),
            "generate-model-error-status",
        ),
        (_http("/v2/models/m/generate"), Answer("500", "a"), Answer("400", "b"), None),
        (_http("/v2/models/m/generate"), Answer("400", "a"), Answer("500", "a"), None),
        (_http("/v2/models/m/infer"), Answer("500", "a"), Answer("400", "a"), None),
        # A default-policy response sent before FINAL, on a stream: the flag only.
        (
            _stream(),
            Answer("OK", _final("true")),
            Answer("OK", _final("false")),
            "stream-default-policy-final",
        ),
        (
            _stream(),
            Answer("OK", _final("true") + "x"),
            Answer("OK", _final("false")),
            None,
        ),
        (
            _stream(),
            Answer("OK", _final("true") + "\n" + _final("true")),
            Answer("OK", _final("false") + "\n" + _final("true")),
            None,
        ),
        # ... as the last step of a decoupled ensemble: Triton's ensemble then
        # sends its empty final response.
        (
            _stream(),
            Answer("OK", "a\n" + _final("true").replace('"m"', '"e"') + "x"),
            Answer(
                "OK",
                "a\n"
                + _final("false").replace('"m"', '"e"')
                + "x\n"
                + _final("true").replace('"m"', '"e"'),
            ),
            "stream-default-policy-final",
        ),
        (
            _stream(),
            Answer("OK", _final("true")),
            Answer(
                "OK",
                _final("false") + "\n" + _final("true").replace('"m"', '"m" outputs'),
            ),
            None,
        ),
        (
            _stream(),
            Answer("OK", "a\n" + _final("true")),
            Answer("OK", "b\n" + _final("false") + "\n" + _final("true")),
            None,
        ),
        (
            _stream(),
            Answer("OK", _final("true")),
            Answer("OK", _final("false") + "\n" + _final("false")),
            None,
        ),
        (
            _stream(),
            Answer("OK", "a\n" + _final("true")),
            Answer("OK", "a\n" + _final("false")),
            "stream-default-policy-final",
        ),
        (
            _stream(),
            Answer("OK", _final("true")),
            Answer(
                "OK",
                _final("false") + "\n" + _final("true").replace('"m"', '"m" id: "r"'),
            ),
            "stream-default-policy-final",
        ),
        (_infer(), Answer("OK", _final("true")), Answer("OK", _final("false")), None),
        # An error sent before FINAL: Triton's empty unary answer.
        (_infer(), Answer("UNAVAILABLE", "x"), Answer("OK", ""), "error-before-final"),
        (_infer(), Answer("UNAVAILABLE", "x"), Answer("OK", 'model_name: "m"'), None),
        (_stream(), Answer("UNAVAILABLE", "x"), Answer("OK", ""), None),
        # A BLS call's error: its code (here CANCELLED) is INTERNAL in Triton 2.51.
        (
            _http("/v2/models/b/infer"),
            _bls(7, "CANCELLED"),
            _bls(1, "INTERNAL"),
            "bls-error-code",
        ),
        (
            _http("/v2/models/b/infer"),
            _bls(7, "CANCELLED", "y"),
            _bls(1, "INTERNAL"),
            None,
        ),
        (_http("/v2/models/b/infer"), _bls(1, "INTERNAL"), _bls(7, "CANCELLED"), None),
    ],
)
def test_the_control_plane_entries_excuse_only_their_requests(
    sent: Sent, ours: Answer, theirs: Answer | None, expected: str | None
) -> None:
    deviation = excused(sent, ours, theirs)
    assert (deviation.name if deviation else None) == expected


def test_a_registration_is_never_asked_again() -> None:
    """The NUL entry asks tritonx a request with its strings cut at their NUL; for
    a registration that would register a second region on tritonx alone (found by
    the differential fuzz: a later registration of "" was refused as a duplicate)."""
    asked: list[bytes] = []
    sent = _call("SystemSharedMemoryRegister", name="\0", key=KEY, offset=1)
    sent.ask_ours = lambda wire: asked.append(wire) or Answer("OK", "")
    excused(sent, Answer("OK", ""), Answer("INVALID_ARGUMENT", UNALIGNED))
    assert asked == []
