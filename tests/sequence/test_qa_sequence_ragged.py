"""The direct sequence batcher and requests of different shapes, after Triton's
L0_sequence_batcher QA (test_ragged_batch, test_ragged_batch_allowed), as a
differential test against Triton 2.51: two sequences ready at once run in one
batch only when their inputs have the same shape, or the input allows ragged
batches; otherwise the second one's slot is a null request (READY false,
correlation id 0) in the first batch and it runs in the next.

The first execution waits on a gate file; both sequences' next requests are
queued (counted as pending) before it opens, so the batches that follow do not
depend on timing. The model answers each request with what every request of
its execution looked like: [READY, CORRID, element count].
"""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import wait_until
from serverutil import RunningServer, differential, run_either
from testmodels import write_model

MODEL = """
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = os.path.dirname(os.path.dirname(__file__))

    def execute(self, requests):
        open(os.path.join(self.dir, "ENTERED"), "a").close()
        while not os.path.exists(os.path.join(self.dir, "RELEASE")):
            time.sleep(0.01)
        seen = []
        for r in requests:
            ready = pb_utils.get_input_tensor_by_name(r, "READY").as_numpy()
            corrid = pb_utils.get_input_tensor_by_name(r, "CORRID").as_numpy()
            data = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            seen.append([int(ready.ravel()[0]), int(corrid.ravel()[0]), data.size])
        text = np.array([[json.dumps(seen).encode()]], dtype=np.object_)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("SEEN", text)])
                for _ in requests]
"""


def config(name: str, ragged: bool) -> str:
    allow = " allow_ragged_batch: true" if ragged else ""
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 2
input [ {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ -1 ]{allow} }} ]
output [ {{ name: "SEEN" data_type: TYPE_STRING dims: [ 1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 600000000
  control_input [
    {{ name: "READY" control [ {{ kind: CONTROL_SEQUENCE_READY
                                 int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "CORRID" control [ {{ kind: CONTROL_SEQUENCE_CORRID
                                  data_type: TYPE_UINT64 }} ] }}
  ]
}}
"""


def send(url: str, model: str, seq: int, size: int, **flags: bool) -> list[Any]:
    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput("INPUT0", [1, size], "INT32")
    tensor.set_data_from_numpy(np.zeros((1, size), dtype=np.int32))
    try:
        result = client.infer(model, [tensor], sequence_id=seq, **flags)
    finally:
        client.close()
    return json.loads(result.as_numpy("SEEN").ravel()[0])


@pytest.mark.parametrize("ragged", [False, True], ids=["equal_shapes", "ragged"])
def test_different_shapes_share_a_direct_batch_only_if_ragged(
    tmp_path: Path, ragged: bool
) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        repo = tmp_path / kind
        write_model(repo, "shapes", config("shapes", ragged), MODEL)
        gate = repo / "shapes"
        with (
            run_either(kind, repo) as server,
            concurrent.futures.ThreadPoolExecutor(3) as pool,
        ):
            url = server.grpc_url

            def queued(
                seq: int, size: int, **flags: bool
            ) -> concurrent.futures.Future[list[Any]]:
                before = pending(server)
                future = pool.submit(send, url, "shapes", seq, size, **flags)
                wait_until(
                    lambda: pending(server) == before + 1,
                    f"a request of sequence {seq} to be queued",
                )
                return future

            try:
                first = pool.submit(send, url, "shapes", 1, 3, sequence_start=True)
                wait_until(lambda: (gate / "ENTERED").exists(), "the first run")
                # Sequence 1 holds slot 0, sequence 2 slot 1; the batch after the
                # gated one finds both ready, with 3 and 5 elements.
                one = queued(1, 3, sequence_end=True)
                two = queued(2, 5, sequence_start=True, sequence_end=True)
                (gate / "RELEASE").touch()
                return {
                    "first": first.result(timeout=120),
                    "one": one.result(timeout=120),
                    "two": two.result(timeout=120),
                }
            finally:
                # Never left shut: the pool waits for its requests on the way out.
                (gate / "RELEASE").touch()

    seen = differential(scenario)
    assert seen["first"] == [[1, 1, 3]]
    if ragged:
        assert seen["one"] == seen["two"] == [[1, 1, 3], [1, 2, 5]]
    else:
        # Sequence 2 waits for the next batch: a null request (READY 0, id 0,
        # shaped like the batch) in its slot, then one in slot 0 for it.
        assert seen["one"] == [[1, 1, 3], [0, 0, 3]]
        assert seen["two"] == [[0, 0, 5], [1, 2, 5]]


def pending(server: RunningServer) -> int:
    return server.pending_requests("shapes")
