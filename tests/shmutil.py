"""Helpers for the shared memory tests (tests/sharedmemory): a repository with an
echo and a held model, POSIX shm regions, raw HTTP and gRPC error capture."""

from __future__ import annotations

import http.client
import json
import os
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from serverutil import RunningServer
from testmodels import ECHO_MODEL, HELD_MODEL
from tritonclient.utils import InferenceServerException

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""


def write_repo(root: Path) -> Path:
    for name, code in (("echo", ECHO_MODEL), ("held", HELD_MODEL)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG.format(name=name))
        (root / name / "1" / "model.py").write_text(code)
    return root


class Region:
    """region(byte_size, values=None) -> (key, handle): a POSIX shm object of this
    test, optionally filled with FP32 values; destroyed after the test unless the
    test does it through ``destroy``."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def __call__(
        self, byte_size: int, values: list[float] | None = None
    ) -> tuple[str, Any]:
        key = f"/tritonx_test_{os.getpid()}_{id(self)}_{len(self.handles)}"
        handle = shm.create_shared_memory_region(key[1:], key, byte_size)
        self.handles.append(handle)
        if values is not None:
            shm.set_shared_memory_region(handle, [np.array(values, dtype=np.float32)])
        return key, handle

    def destroy(self, handle: Any) -> None:
        self.handles.remove(handle)
        shm.destroy_shared_memory_region(handle)


def fresh_region(key: str, size: int) -> shared_memory.SharedMemory:
    """A new POSIX shm object ``key`` ("/name") of ``size`` bytes, replacing one
    that a killed run left behind."""
    name = key.lstrip("/")
    try:
        return shared_memory.SharedMemory(name, create=True, size=size)
    except FileExistsError:
        shared_memory.SharedMemory(name).unlink()
        return shared_memory.SharedMemory(name, create=True, size=size)


def raw(
    server: RunningServer, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["http"], timeout=60)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, path, data)
        reply = conn.getresponse()
        text = reply.read()
        return reply.status, json.loads(text) if text else None
    finally:
        conn.close()


def infer_body(
    in_params: dict[str, Any], out_params: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "FP32",
                "shape": [4],
                "parameters": in_params,
            }
        ]
    }
    if out_params is not None:
        body["outputs"] = [{"name": "OUTPUT0", "parameters": out_params}]
    return body


def grpc_error(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return str(info.value.status()), info.value.message()
