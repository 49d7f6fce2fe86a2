"""Load/unload cycles of an in-process Python model leave no Python thread states
behind. Each instance's worker thread (a C++ thread) keeps a thread state for its
Python calls; once the thread has ended at unload, the state must be deleted, or
every cycle leaks some KiB (seen as steady RSS growth in
``benchmarks/soak.py --workload lifecycle``)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
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


# A model whose instance thread keeps, in a threading.local, an object whose
# destructor calls PyGILState_Ensure (as gevent's allocator does when a hub the
# thread used is freed). The destructor runs when the ended thread's state is cleared.
# add_sub whose execute first keeps the object in a threading.local of the instance
# thread (the model's directory, where the marker goes, is beside its version's).
ENSURING_MODEL = (
    ADD_SUB_PY
    + """
import ctypes
import pathlib
import threading

KEPT = threading.local()
MARKER = pathlib.Path(__file__).resolve().parent.parent / "cleared"


class Ensures:
    def __del__(self):
        state = ctypes.pythonapi.PyGILState_Ensure()
        ctypes.pythonapi.PyGILState_Release(state)
        MARKER.write_text("cleared")


_add_sub = TritonPythonModel.execute


def _execute(self, requests):
    KEPT.value = Ensures()
    return _add_sub(self, requests)


TritonPythonModel.execute = _execute
"""
)

# Run in a process of its own: the failure it guards against stops every thread of
# the process, the test's included.
ENSURING_SCRIPT = """
import pathlib, sys, time
import numpy as np
import tritonx.api as api

repo = pathlib.Path(sys.argv[1])
server = api.Server(
    model_repository=str(repo), model_control_mode=api.ModelControlMode.EXPLICIT
).start()
model = server.load("churn")
a = np.arange(4, dtype=np.float32)
for response in model.infer(inputs={"INPUT0": a, "INPUT1": a}):
    assert np.array_equal(np.from_dlpack(response.outputs["OUTPUT0"]), a + a)
server.unload("churn", wait_until_unloaded=True)
deadline = time.monotonic() + 60
while not (repo / "churn" / "cleared").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
server.stop()
print("cleared" if (repo / "churn" / "cleared").exists() else "not cleared")
"""


def test_ended_thread_state_is_cleared_where_pygilstate_ensure_works(
    tmp_path: Path,
) -> None:
    write_model(tmp_path, "churn", CONFIG, ENSURING_MODEL)
    result = subprocess.run(
        [sys.executable, "-c", ENSURING_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "cleared", result.stdout
