"""The gRPC frontend test harness: a subprocess server (frontends/test_grpc_harness.py)
with the C++ GrpcServer, real core models and an in-memory model manager, plus small
helpers for building tritonclient inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tritonx.dtypes import NUMPY_DTYPES

HARNESS = Path(__file__).parent / "frontends" / "test_grpc_harness.py"
ROOT = Path(__file__).resolve().parents[1]

# Every wire datatype: the numeric ones, and BYTES.
DTYPES = [*NUMPY_DTYPES, "BYTES"]


class Harness:
    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        # The harness imports tritonx: the installed package, or the source tree
        # when the developer loop asks for it (as tests/serverutil.py does).
        if os.environ.get("TRITONX_TEST_SOURCE_TREE"):
            env["PYTHONPATH"] = (
                str(ROOT / "python") + os.pathsep + env.get("PYTHONPATH", "")
            )
        self.process = subprocess.Popen(
            [sys.executable, str(HARNESS), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            rest = self.process.stdout.read() if self.process.poll() is not None else ""
            self.close()
            raise RuntimeError(f"harness failed to start: {line}{rest}")
        self.url = f"127.0.0.1:{int(line.split()[1])}"

    def close(self) -> str:
        output = ""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            assert self.process.stdout is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            output = self.process.stdout.read()
        return output


def sample(dtype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "BOOL":
        return (np.arange(count) % 2 == 0).reshape(shape)
    if dtype == "BYTES":
        return np.array(
            [f"s{i}".encode() * (i + 1) for i in range(count)], dtype=np.object_
        ).reshape(shape)
    if dtype == "BF16":
        return np.arange(count, dtype=np.uint16).reshape(shape) + 16256
    np_type = NUMPY_DTYPES[dtype]
    values = np.arange(count) - (count // 2 if dtype.startswith("INT") else 0)
    return values.astype(np_type).reshape(shape)


def make_input(
    name: str, data: np.ndarray, dtype: str | None = None
) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(
        name, list(data.shape), dtype or np_to_triton_dtype(data.dtype)
    )
    if dtype == "BF16":
        # tritonclient wants float32 for BF16; send the raw uint16 bits instead.
        tensor._raw_content = data.astype("<u2").tobytes()
    else:
        tensor.set_data_from_numpy(data)
    return tensor


def fp32_input(values: np.ndarray | None = None) -> grpcclient.InferInput:
    data = (
        values if values is not None else np.arange(4, dtype=np.float32).reshape(1, 4)
    )
    return make_input("INPUT0", data)


def expect_error(code: grpc.StatusCode, fn, *args, **kwargs) -> str:
    with pytest.raises(InferenceServerException) as info:
        fn(*args, **kwargs)
    assert info.value.status() == str(code), info.value
    return info.value.message()
