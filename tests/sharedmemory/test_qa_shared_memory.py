"""Triton's L0_shared_memory QA (system shared memory only), as differential tests:
each case runs against tritonx and, when TRITONX_REFERENCE_CMD is given, against
Triton 2.51 (it runs on this machine and sees the regions the tests create), and
the answers must be the expected ones on both (status codes and messages word for
word). The model is L0_shared_memory's "simple": INT32 add/sub, [1, 16] tensors of
64 bytes.

Cases of tests/sharedmemory/test_reference_shm.py and test_system_shm.py are not
repeated. Left to tritonx alone (each says why): a region registered at a nonzero
offset (Triton 2.51 adds the offset twice when it reads one and crashes), an offset
that is not page aligned (Triton 2.51 cannot map one; tritonx can). A region
unregistered while in use is answered differently on purpose (the test says how).
Not compared: a second region on a key already registered (Triton 2.51 reuses a
descriptor it closed, and answers whatever that descriptor now is). Not ported:
CUDA shared memory, the client-library leak run, --allow-client-shm's default
(false only after 2.51; tests/sharedmemory/test_logging_and_disallowed.py covers
the flag)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from grpcutil import wait_until
from serverutil import RunningServer, run_either
from shmutil import raw
from testmodels import write_model
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 8
input [
  {{ name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] }},
  {{ name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] }},
  {{ name: "OUTPUT1", data_type: TYPE_INT32, dims: [ 16 ] }}
]
"""

# OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1. The "gated" copy leaves
# "ran" next to itself, then waits until a file "open" appears there.
ADD_SUB = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = args["model_repository"]
        self.gated = args["model_name"] == "gated"

    def execute(self, requests):
        responses = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
            if self.gated:
                open(os.path.join(self.dir, "ran"), "w").close()
                while not os.path.exists(os.path.join(self.dir, "open")):
                    time.sleep(0.01)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]))
        return responses
"""

SIZE = 64  # one [1, 16] INT32 tensor
PAGE = os.sysconf("SC_PAGE_SIZE")
IN0 = np.arange(16, dtype=np.int32)
IN1 = np.ones(16, dtype=np.int32)
SUM = (IN0 + IN1).tolist()
DIFF = (IN0 - IN1).tolist()
SYSM = "/v2/systemsharedmemory"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_shm")
    for name in ("simple", "gated"):
        write_model(root, name, CONFIG.format(name=name), ADD_SUB)
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    with run_either(request.param, repo) as running:
        yield running


class Objects:
    """POSIX shm objects of one test (unique keys), destroyed after it; every
    region the test registered is unregistered first."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.handles: list[Any] = []

    def __call__(self, size: int, data: np.ndarray | None = None, at: int = 0) -> str:
        key = f"/tritonx_qa_{os.getpid()}_{id(self)}_{len(self.handles)}"
        handle = shm.create_shared_memory_region(key[1:], key, size)
        self.handles.append(handle)
        if data is not None:
            shm.set_shared_memory_region(handle, [data], offset=at)
        return key

    def read(self, index: int, at: int = 0) -> list[int]:
        values = shm.get_contents_as_numpy(self.handles[index], np.int32, [16], at)
        return values.tolist()


@pytest.fixture
def objects(server: RunningServer) -> Iterator[Objects]:
    made = Objects(server)
    yield made
    wait_until(
        lambda: raw(server, "POST", f"{SYSM}/unregister")[0] == 200,
        "every region unregistered",
    )
    for handle in made.handles:
        shm.destroy_shared_memory_region(handle)


def _client(server: RunningServer, protocol: str) -> Any:
    if protocol == "http":
        return httpclient.InferenceServerClient(server.http_url)
    return grpcclient.InferenceServerClient(server.grpc_url)


def _attempt(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The call's result ("ok" for None), or its error's (status, message)."""
    try:
        result = call(*args, **kwargs)
    except InferenceServerException as error:
        return (error.status(), error.message())
    return "ok" if result is None else result


def _unregister_all(server: RunningServer, client: Any) -> None:
    """Unregisters every region. Triton 2.51 lets go of a finished request's
    regions a moment after its response (seen in CI under load: "Failed to
    unregister the following system shared memory regions" right after an infer
    had been answered), so the reference gets until the regions are free;
    tritonx gets one try."""

    def unregistered() -> bool:
        try:
            client.unregister_system_shared_memory()
        except InferenceServerException as error:
            if server.reference and "Failed to unregister" in str(error.message()):
                return False
            raise
        return True

    if server.reference:
        wait_until(unregistered, "the reference let go of its regions")
    else:
        assert unregistered()


def _status_names(server: RunningServer) -> list[str]:
    status, regions = raw(server, "GET", f"{SYSM}/status")
    assert status == 200
    return sorted(region["name"] for region in regions)


def _four_regions(server: RunningServer, objects: Objects, at: int = 0) -> None:
    """L0_shared_memory's input0_data, input1_data (filled), output0_data and
    output1_data: 64 bytes each, registered at ``at`` in objects of at + 64."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for name, data in (
        ("input0_data", IN0),
        ("input1_data", IN1),
        ("output0_data", None),
        ("output1_data", None),
    ):
        key = objects(at + SIZE, data, at)
        client.register_system_shared_memory(name, key, SIZE, offset=at)
    client.close()


def _tensors(module: Any) -> tuple[list[Any], list[Any]]:
    """Both inputs and both outputs of "simple" in the four regions."""
    inputs = [module.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in range(2)]
    outputs = [module.InferRequestedOutput(f"OUTPUT{i}") for i in range(2)]
    for i in range(2):
        inputs[i].set_shared_memory(f"input{i}_data", SIZE)
        outputs[i].set_shared_memory(f"output{i}_data", SIZE)
    return inputs, outputs


def _infer_body(out1: dict[str, Any], in1: dict[str, Any] | None = None) -> Any:
    """A JSON infer request through the four regions, OUTPUT1's (or INPUT1's)
    parameters replaced."""
    region = {"shared_memory_region": "input1_data", "shared_memory_byte_size": SIZE}
    return {
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16],
             "parameters": {"shared_memory_region": "input0_data",
                            "shared_memory_byte_size": SIZE}},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16],
             "parameters": in1 if in1 is not None else region},
        ],
        "outputs": [
            {"name": "OUTPUT0",
             "parameters": {"shared_memory_region": "output0_data",
                            "shared_memory_byte_size": SIZE}},
            {"name": "OUTPUT1", "parameters": out1},
        ],
    }  # fmt: skip


OUT1 = {"shared_memory_region": "output1_data", "shared_memory_byte_size": SIZE}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_region_bookkeeping(
    server: RunningServer, objects: Objects, protocol: str
) -> None:
    """test_valid_create_set_register, test_unregister_before/after_register,
    test_reregister_after_register, test_unregister/register_after_inference and
    test_unregisterall: what the status lists after each step."""
    client = _client(server, protocol)
    seen: list[Any] = []
    key = objects(8, np.array([1, 2], dtype=np.float32))
    seen.append(_attempt(client.unregister_system_shared_memory, "dummy_data"))
    seen.append(_status_names(server))
    client.register_system_shared_memory("dummy_data", key, 8)
    seen.append(_attempt(client.register_system_shared_memory, "dummy_data", key, 8))
    seen.append(_status_names(server))
    client.unregister_system_shared_memory("dummy_data")
    seen.append(_status_names(server))
    _four_regions(server, objects)
    inputs, outputs = _tensors(httpclient if protocol == "http" else grpcclient)
    client.infer("simple", inputs, outputs=outputs)
    seen.append((objects.read(3), objects.read(4)))
    seen.append(_attempt(client.unregister_system_shared_memory, "output0_data"))
    seen.append(_status_names(server))
    client.register_system_shared_memory("input2_data", objects(SIZE), SIZE)
    seen.append(_status_names(server))
    _unregister_all(server, client)
    seen.append(_status_names(server))
    client.close()
    duplicate = "shared memory region 'dummy_data' already in manager"
    four = ["input0_data", "input1_data", "output0_data", "output1_data"]
    assert seen == [
        "ok",
        [],
        (
            "400" if protocol == "http" else "StatusCode.ALREADY_EXISTS",
            duplicate,
        ),
        ["dummy_data"],
        [],
        (SUM, DIFF),
        "ok",
        [n for n in four if n != "output0_data"],
        ["input0_data", "input1_data", "input2_data", "output1_data"],
        [],
    ]


# (size, offset) registered in a 64-byte object: past its end by a byte, from the
# second byte, a byte at its end, nothing past its end (test_register_out_of_bound).
OUT_OF_BOUNDS = [(SIZE + 1, 0), (SIZE, 1), (1, SIZE), (0, SIZE + 1)]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(("size", "offset"), OUT_OF_BOUNDS)
def test_register_out_of_bounds(
    server: RunningServer, objects: Objects, protocol: str, size: int, offset: int
) -> None:
    client = _client(server, protocol)
    seen = _attempt(
        client.register_system_shared_memory, "r", objects(SIZE), size, offset=offset
    )
    client.close()
    assert seen == (
        "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT",
        "failed to register shared memory region 'r': invalid args",
    )
    assert _status_names(server) == []


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("offset", [0, SIZE])
def test_register_empty_region(
    server: RunningServer, objects: Objects, protocol: str, offset: int
) -> None:
    """A zero byte_size is refused: Triton 2.51 cannot map an empty range."""
    client = _client(server, protocol)
    seen = _attempt(
        client.register_system_shared_memory, "r", objects(SIZE), 0, offset=offset
    )
    client.close()
    assert seen == (
        "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT",
        "failed to register shared memory region 'r': unable to process address "
        "spaceInvalid argument",
    )


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize(
    "key",
    [
        "/",
        "///",
        "triton_python_backend_shm_region__my_test_shm_key",
        "/triton_python_backend_shm_region__my_test_shm_key",
    ],
)
def test_register_keys_that_name_no_object(
    server: RunningServer, protocol: str, key: str
) -> None:
    """test_register_invalid_shm_key and test_register_reserved_names (newer
    Triton refuses these keys by their form): Triton 2.51 tries to open them."""
    client = _client(server, protocol)
    seen = _attempt(client.register_system_shared_memory, "r", key, 10000)
    client.close()
    assert seen == (
        "500" if protocol == "http" else "StatusCode.INTERNAL",
        f"Unable to open shared memory region: '{key}'",
    )


@pytest.mark.parametrize(
    ("out1", "in1", "message"),
    [
        ({**OUT1, "shared_memory_offset": 2**64 - 32}, None,
         "Invalid offset for shared memory region: 'output1_data'"),
        ({**OUT1, "shared_memory_offset": 1}, None,
         "Invalid offset + byte size for shared memory region: 'output1_data'"),
        ({**OUT1, "shared_memory_offset": 32, "shared_memory_byte_size": 2**64 - 32},
         None, "Invalid offset + byte size for shared memory region: 'output1_data'"),
        ({**OUT1, "shared_memory_byte_size": 2**64 - 32}, None,
         "Invalid offset + byte size for shared memory region: 'output1_data'"),
        (OUT1, {"shared_memory_region": "input1_data", "shared_memory_byte_size": SIZE,
                "shared_memory_offset": 2**64 - 32},
         "Invalid offset for shared memory region: 'input1_data'"),
        (OUT1, {"shared_memory_region": "input1_data",
                "shared_memory_byte_size": 2**63},
         "Invalid offset + byte size for shared memory region: 'input1_data'"),
    ],
    ids=["out-offset-2^64-32", "out-offset-1", "out-overflow", "out-size-2^64-32",
         "in-offset-2^64-32", "in-size-2^63"],
)  # fmt: skip
def test_infer_range_errors_over_http(
    server: RunningServer,
    objects: Objects,
    out1: dict[str, Any],
    in1: dict[str, Any] | None,
    message: str,
) -> None:
    """test_infer_offset_out_of_bound, test_infer_byte_size_out_of_bound and
    test_infer_integer_overflow: offsets and sizes near 2^64 in JSON (gRPC's
    client refuses them itself) do not wrap past the checks."""
    _four_regions(server, objects)
    assert raw(server, "POST", "/v2/models/simple/infer", _infer_body(out1, in1)) == (
        400,
        {"error": message},
    )
    assert objects.read(3) == [0] * 16  # nothing was written


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_input_region_larger_than_the_input(
    server: RunningServer, objects: Objects, protocol: str
) -> None:
    """test_too_big_shm: a 128-byte range for a 64-byte input."""
    _four_regions(server, objects)
    client = _client(server, protocol)
    client.register_system_shared_memory("input2_data", objects(128), 128)
    module = httpclient if protocol == "http" else grpcclient
    inputs, outputs = _tensors(module)
    inputs[1].set_shared_memory("input2_data", 128)
    seen = _attempt(client.infer, "simple", inputs, outputs=outputs)
    client.close()
    assert seen == (
        "400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT",
        "[request id: <id_unknown>] input byte size mismatch for input 'INPUT1' for "
        "model 'simple'. Expected 64, got 128",
    )


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_mixed_raw_and_shared_memory(
    server: RunningServer, objects: Objects, protocol: str
) -> None:
    """test_mixed_raw_shm: INPUT1 sent as data, OUTPUT1 answered as data, the rest
    through regions."""
    _four_regions(server, objects)
    module = httpclient if protocol == "http" else grpcclient
    client = _client(server, protocol)
    inputs, outputs = _tensors(module)
    inputs[1].set_data_from_numpy(np.full((1, 16), 5, dtype=np.int32))
    outputs[1] = module.InferRequestedOutput("OUTPUT1")
    result = client.infer("simple", inputs, outputs=outputs)
    client.close()
    assert objects.read(2) == (IN0 + 5).tolist()
    assert result.as_numpy("OUTPUT1").tolist() == [(IN0 - 5).tolist()]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unregister_while_in_use(
    server: RunningServer, repo: Path, objects: Objects, protocol: str
) -> None:
    """TestSharedMemoryUnregister: regions unregistered (by name, then all) while a
    request holds them. A deliberate difference (docs/architecture.md, shared
    memory): Triton 2.51 refuses ("currently in use") until the request lets go,
    which it may do only after the client has its answer; tritonx unregisters at
    once and keeps the mapping until the request ends, so a client never sees that
    refusal right after its answer. Both complete the request, outputs written."""
    _four_regions(server, objects)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    gate = repo / "gated"
    answers: queue.Queue[Any] = queue.Queue()
    http = httpclient.InferenceServerClient(server.http_url)
    if protocol == "http":  # a plain JSON request on a thread of its own
        body = _infer_body(OUT1)
        threading.Thread(
            target=lambda: answers.put(
                raw(server, "POST", "/v2/models/gated/infer", body)
            )
        ).start()
    else:
        inputs, outputs = _tensors(grpcclient)
        client.async_infer(
            "gated",
            inputs,
            outputs=outputs,
            callback=lambda result, error: answers.put(error or result),
        )
    seen: list[Any] = []
    try:
        wait_until((gate / "ran").exists, "the gated model to execute")
        seen.append(_attempt(http.unregister_system_shared_memory, "input0_data"))
        seen.append(_attempt(client.unregister_system_shared_memory, "output1_data"))
        seen.append(raw(server, "POST", f"{SYSM}/unregister"))
        seen.append(_status_names(server))
    finally:
        (gate / "open").touch()
        result = answers.get(timeout=60)
        (gate / "open").unlink()
        (gate / "ran").unlink()
    ok = result[0] == 200 if protocol == "http" else not isinstance(result, Exception)
    assert ok, result
    assert (objects.read(2), objects.read(3)) == (SUM, DIFF)
    # Triton 2.51's request lets go of its regions around its answer: then they
    # unregister.
    wait_until(
        lambda: raw(server, "POST", f"{SYSM}/unregister")[0] == 200,
        "the regions to be released",
    )
    seen.append(_status_names(server))
    http.close()
    client.close()
    if not server.reference:
        assert seen == ["ok", "ok", (200, None), [], []]
        return
    in_use = "Cannot unregister shared memory region '{}', it is currently in use."
    assert seen == [
        ("500", in_use.format("input0_data")),
        ("StatusCode.INTERNAL", in_use.format("output1_data")),
        (
            500,
            {
                "error": "Failed to unregister the following system shared memory "
                "regions: input0_data ,input1_data ,output0_data ,output1_data ,"
            },
        ),
        ["input0_data", "input1_data", "output0_data", "output1_data"],
        [],
    ]


# --- tritonx alone ----------------------------------------------------------------
# Triton 2.51 reads a region registered at offset N from N + N: an infer through
# one reads (or writes) past its mapping and the server crashes (fixed in later
# releases, whose QA adds test_large_shm_register_offset). It cannot map a range
# that does not start on a page either (mmap's rule); tritonx maps from the page
# below and takes such offsets (docs/architecture.md, shared memory).


@pytest.fixture
def tritonx(server: RunningServer) -> RunningServer:
    if server.reference:
        pytest.skip("Triton 2.51 crashes on a region registered at an offset")
    return server


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("at", [PAGE * 1023, 16], ids=["page-1023", "unaligned-16"])
def test_regions_registered_at_an_offset(
    tritonx: RunningServer, objects: Objects, protocol: str, at: int
) -> None:
    """test_large_shm_register_offset: regions 64 bytes from the last page of a
    1024-page object (and from an unaligned offset) are read and written there."""
    _four_regions(tritonx, objects, at)
    module = httpclient if protocol == "http" else grpcclient
    client = _client(tritonx, protocol)
    inputs, outputs = _tensors(module)
    client.infer("simple", inputs, outputs=outputs)
    status = client.get_system_shared_memory_status("output1_data")
    client.close()
    assert (objects.read(2, at), objects.read(3, at)) == (SUM, DIFF)
    if protocol == "http":
        registered = (status[0]["offset"], status[0]["byte_size"])
    else:
        row = status.regions["output1_data"]
        registered = (row.offset, row.byte_size)
    assert registered == (at, SIZE)


@pytest.mark.parametrize(
    ("out1", "message"),
    [
        ({**OUT1, "shared_memory_offset": SIZE},
         "Invalid offset for shared memory region: 'output1_data'"),
        ({**OUT1, "shared_memory_offset": 2**64 - 32},
         "Invalid offset for shared memory region: 'output1_data'"),
        ({**OUT1, "shared_memory_offset": 1},
         "Invalid offset + byte size for shared memory region: 'output1_data'"),
    ],
)  # fmt: skip
def test_ranges_of_a_region_registered_at_an_offset(
    tritonx: RunningServer, objects: Objects, out1: dict[str, Any], message: str
) -> None:
    """test_infer_offset_out_of_bound and test_infer_byte_size_out_of_bound as
    written (regions registered a page into their objects): a tensor's offset
    counts from the region's start, so 64 is past a 64-byte region."""
    _four_regions(tritonx, objects, PAGE)
    body = _infer_body(out1)
    assert raw(tritonx, "POST", "/v2/models/simple/infer", body) == (
        400,
        {"error": message},
    )
