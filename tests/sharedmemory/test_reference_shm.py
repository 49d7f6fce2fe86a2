"""Differential: the same shared memory and logging calls against tritonx and the
real Triton (TRITONX_REFERENCE_CMD; it runs on this machine, so the regions this
test creates are visible to it), comparing status codes, bodies and messages."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from serverutil import (
    RunningServer,
    needs_reference,
    run_reference,
    run_server,
)
from shmutil import Region, grpc_error, infer_body, raw

pytestmark = needs_reference


def scenario(server: RunningServer, region: Region) -> list[Any]:
    """Every observable result, in order; regions and keys are this run's own."""
    key, _ = region(64, [1, 2, 3, 4])
    out_key, out_handle = region(64)
    seen: list[Any] = []
    sysm = "/v2/systemsharedmemory"

    def http(method: str, path: str, body: Any = None) -> None:
        status, reply = raw(server, method, path, body)
        if isinstance(reply, list):  # keys differ between runs
            reply = [{**row, "key": row["key"] == key} for row in reply]
        if isinstance(reply, dict) and "error" in reply:
            reply = {"error": reply["error"].replace(key, "KEY")}
        seen.append((method, path, status, reply))

    client = grpcclient.InferenceServerClient(server.grpc_url)

    def grpc_call(label: str, call: Any, *args: Any, **kwargs: Any) -> None:
        code, message = grpc_error(call, *args, **kwargs)
        seen.append((label, code, message.replace(key, "KEY")))

    try:
        client.unregister_system_shared_memory()
        http("GET", f"{sysm}/status")
        http("POST", f"{sysm}/region/in/register", {"key": key, "byte_size": 64})
        http("POST", f"{sysm}/region/in/register", {"key": key, "byte_size": 64})
        # Registering past the object's end: test_qa_shared_memory.py, on keys not
        # registered already (for one that is, Triton 2.51 reuses the descriptor it
        # closed after mapping it: 500 "Invalid shared memory region" once, 400
        # "... invalid args" another time, whatever the number now names).
        http(
            "POST",
            f"{sysm}/region/x/register",
            {"key": "/tritonx_missing_key", "byte_size": 8},
        )
        http("POST", f"{sysm}/region/x/register", {"offset": 0})
        http("POST", f"{sysm}/region/x/register", {"key": key})
        http("POST", f"{sysm}/region/x/register", {"key": key, "byte_size": -1})
        http("POST", f"{sysm}/register", {"key": key, "byte_size": 8})
        http("GET", f"{sysm}/region/in/register")
        http("POST", f"{sysm}/status")
        grpc_call("dup", client.register_system_shared_memory, "in", key, 64)
        client.register_system_shared_memory("out", out_key, 64)
        http("GET", f"{sysm}/status")
        http("GET", f"{sysm}/region/in/status")
        http("GET", f"{sysm}/region/nope/status")
        status = client.get_system_shared_memory_status(as_json=True)["regions"]
        seen.append(
            sorted((name, row.get("byte_size")) for name, row in status.items())
        )
        grpc_call("status", client.get_system_shared_memory_status, "nope")
        # A name with a NUL: the status map's key is the name cut there (a C
        # string), the entry's name is whole (found by the differential fuzz).
        nul_key, _ = region(8)
        client.register_system_shared_memory("a\0b", nul_key, 8)
        regions = client.get_system_shared_memory_status().regions
        seen.append(sorted((k, v.name) for k, v in regions.items()))
        client.unregister_system_shared_memory("a\0b")
        good = {"shared_memory_region": "in", "shared_memory_byte_size": 16}
        out = {"shared_memory_region": "out", "shared_memory_byte_size": 64}
        infer = "/v2/models/echo/infer"
        http("POST", infer, infer_body(good, out))
        seen.append(shm.get_contents_as_numpy(out_handle, np.float32, [4]).tolist())
        for body in (
            infer_body({**good, "shared_memory_offset": 64}),
            infer_body({**good, "shared_memory_offset": 60}),
            infer_body({"shared_memory_region": "in"}),
            infer_body({**good, "shared_memory_region": "nope"}),
            infer_body({**good, "shared_memory_byte_size": "16"}),
            infer_body({**good, "shared_memory_offset": -1}),
            infer_body(good, {**out, "shared_memory_byte_size": 8}),
            infer_body(good, {**out, "shared_memory_offset": 56}),
            infer_body(good, {**out, "shared_memory_region": "nope"}),
            infer_body(good, {**out, "binary_data": True}),
            {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [4],
                         "data": [1, 2, 3, 4], "parameters": good}]},
        ):  # fmt: skip
            http("POST", infer, body)
        inp = grpcclient.InferInput("INPUT0", [4], "FP32")
        inp.set_shared_memory("in", 16)
        small = grpcclient.InferRequestedOutput("OUTPUT0")
        small.set_shared_memory("out", 8)
        grpc_call("small", client.infer, "echo", [inp], outputs=[small])
        small.set_shared_memory("nope", 8)
        grpc_call("unknown out", client.infer, "echo", [inp], outputs=[small])
        result = client.infer("echo", [inp])
        seen.append(result.as_numpy("OUTPUT0").tolist())
        inp.set_shared_memory("in", 16, offset=64)
        grpc_call("offset", client.infer, "echo", [inp])
        # CUDA shared memory. Without a GPU, a well-formed register differs on
        # purpose: the reference (a GPU build) answers "invalid args" when it cannot
        # open the handle, tritonx says "GPUs not supported" as a CPU-only Triton
        # does. Malformed bodies are answered alike.
        handle = base64.b64encode(bytes(64)).decode()
        for body in (
            {},
            {"raw_handle": {}},
            {"raw_handle": {"b64": 5}},
            {"raw_handle": {"b64": "!!"}, "device_id": 0, "byte_size": 64},
            {"raw_handle": {"b64": handle}},
            {"raw_handle": {"b64": handle}, "byte_size": 64},
            {"raw_handle": {"b64": handle}, "byte_size": -1, "device_id": 0},
            {"raw_handle": {"b64": "AAAA"}, "byte_size": 64, "device_id": 0},
        ):
            http("POST", "/v2/cudasharedmemory/region/c/register", body)
        http("GET", "/v2/cudasharedmemory/status")
        http("GET", "/v2/cudasharedmemory/region/in/status")
        http("GET", "/v2/cudasharedmemory/region/zz/status")
        http("POST", "/v2/cudasharedmemory/region/zz/unregister")
        grpc_call("cuda", client.get_cuda_shared_memory_status, "zz")
        # Logging.
        http("GET", "/v2/logging")
        for body in (
            {"log_verbose_level": 1},
            {"log_file": "/tmp/x.log"},
            {"log_verbose_level": -1},
            {"log_info": "yes"},
            {"log_format": "xml"},
            {"log_format": 5},
            {"foo": 1, "log_info": None},
            [1],
            {"log_verbose_level": 0},
        ):
            http("POST", "/v2/logging", body)
        http("PUT", "/v2/logging")
        seen.append(client.get_log_settings(as_json=True))
        grpc_call("log fmt", client.update_log_settings, {"log_format": "xml"})
        grpc_call("log file", client.update_log_settings, {"log_file": "/x"})
        # Unregistering.
        http("POST", f"{sysm}/region/nope/unregister")
        http("POST", f"{sysm}/region/in/unregister")
        http("GET", f"{sysm}/status")
        http("POST", f"{sysm}/unregister")
        seen.append(client.get_system_shared_memory_status(as_json=True))
    finally:
        client.unregister_system_shared_memory()
        client.close()
    return seen


def test_same_as_reference(repo: Path, region: Region) -> None:
    with run_reference([repo]) as reference:
        expected = scenario(reference, region)
    with run_server(repo) as server:
        got = scenario(server, region)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == theirs
