"""Load/unload cycles of an in-process Python model leave no Python thread states
behind. Each instance's worker thread (a C++ thread) keeps a thread state for its
Python calls; once the thread has ended at unload, the state must be deleted, or
every cycle leaks some KiB (seen as steady RSS growth in
``benchmarks/soak.py --workload lifecycle``)."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cloudutil import write_model
from testmodels import ADD_SUB, ADD_SUB_PY

import tritonx.api as api

# add_sub with two instances, so every cycle starts and ends two worker threads.
CONFIG = ADD_SUB.replace('"add_sub"', '"churn"') + (
    "instance_group [ { count: 2, kind: KIND_CPU } ]\n"
)
CYCLES = 12


def thread_state_count() -> int:
    """The thread states of this interpreter, through CPython's own C API."""
    capi = ctypes.pythonapi
    capi.PyInterpreterState_Get.restype = ctypes.c_void_p
    capi.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
    capi.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
    capi.PyThreadState_Next.restype = ctypes.c_void_p
    capi.PyThreadState_Next.argtypes = [ctypes.c_void_p]
    count = 0
    state = capi.PyInterpreterState_ThreadHead(capi.PyInterpreterState_Get())
    while state:
        count += 1
        state = capi.PyThreadState_Next(state)
    return count


@pytest.fixture
def server(tmp_path: Path) -> Iterator[api.Server]:
    write_model(tmp_path, "churn", CONFIG, ADD_SUB_PY)
    server = api.Server(
        model_repository=str(tmp_path),
        model_control_mode=api.ModelControlMode.EXPLICIT,
    ).start()
    yield server
    server.stop()


def _cycle(server: api.Server) -> None:
    model = server.load("churn")
    a = np.arange(4, dtype=np.float32)
    requests = [model.infer(inputs={"INPUT0": a, "INPUT1": a}) for _ in range(4)]
    for responses in requests:
        for response in responses:
            assert np.array_equal(np.from_dlpack(response.outputs["OUTPUT0"]), a + a)
    server.unload("churn", wait_until_unloaded=True)


def test_unload_deletes_the_instances_thread_states(server: api.Server) -> None:
    for _ in range(2):  # long-lived threads (loader pool, loop) get their states
        _cycle(server)
    before = thread_state_count()
    for _ in range(CYCLES):
        _cycle(server)
    # Two instance threads per cycle: without the clean-up this grows by 2 * CYCLES.
    # The states are deleted by short-lived threads of their own, soon after.
    deadline = time.monotonic() + 60
    while thread_state_count() - before > 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    after = thread_state_count()
    assert after - before <= 2, (before, after)
