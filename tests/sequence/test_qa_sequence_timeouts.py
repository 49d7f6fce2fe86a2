"""The sequence batcher's refusals after Triton's L0_sequence_batcher QA
(test_batch_size, test_request_timeout, test_send_request_after_timeout), as
differential tests against Triton 2.51: a request of more than one row is
refused; a request's `timeout` expires a sequence only while it waits in the
backlog (every request of it is refused and its id forgotten), never one that
holds a slot.

Triton's QA times this against a model that sleeps 5 s. Here the one slot is
held by a sequence whose first execution waits on a gate file, each sequence's
requests go in order on a gRPC stream of their own, and the test waits on
observable state (the model's "entered" file, the pending-request metric, the
answers) instead of the clock.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpcutil import wait_until
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import write_model
from tritonclient.utils import InferenceServerException

from .conftest import write_sequence_model
from .seqstream import SequenceStream, settled_request_counts

# OUTPUT0 = INPUT0; the first execution writes ENTERED and waits for RELEASE.
GATED_MODEL = """
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.dir = os.path.dirname(os.path.dirname(__file__))

    def execute(self, requests):
        open(os.path.join(self.dir, "ENTERED"), "a").close()
        while not os.path.exists(os.path.join(self.dir, "RELEASE")):
            time.sleep(0.01)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(
                "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""

GATED_CONFIG = """
name: "gated"
backend: "python"
max_batch_size: 1
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
sequence_batching { max_sequence_idle_microseconds: 600000000 }
"""

EXPIRED = "timeout of the corresponding sequence has been expired"
NO_START = (
    "inference request for sequence {id} to model 'gated' must specify the START "
    "flag on the first request of the sequence"
)
BATCH_OF_TWO = (
    "inference request to model 'seq_plain' must specify batch-size 1 due to "
    "requirements of sequence batcher"
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seq_timeouts")
    write_sequence_model(root, "seq_plain", state=False)
    return root


@pytest.fixture(scope="module")
def servers(repo: Path) -> Iterator[dict[str, RunningServer]]:
    """tritonx, and the reference Triton when one is given, on the same models."""
    with ExitStack() as stack:
        running = {"tritonx": stack.enter_context(run_server(repo))}
        if reference_command() is not None:
            running["reference"] = stack.enter_context(run_reference([repo]))
        yield running


def compare(
    servers: dict[str, RunningServer], observe: Any, *args: Any
) -> dict[str, Any]:
    """tritonx's observations, checked equal to the reference's when it runs."""
    seen = {kind: observe(server, *args) for kind, server in servers.items()}
    if "reference" in seen:
        assert seen["tritonx"] == seen["reference"]
    return seen["tritonx"]


def _batch_of_two(server: RunningServer, seq: int) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    seen: dict[str, Any] = {}
    try:
        for rows, flags in ((2, {"sequence_start": True}), (1, {})):
            data = np.arange(rows, dtype=np.int32).reshape(rows, 1)
            tensor = grpcclient.InferInput("INPUT", [rows, 1], "INT32")
            tensor.set_data_from_numpy(data)
            try:
                client.infer("seq_plain", [tensor], sequence_id=seq, **flags)
                seen[f"rows={rows}"] = "answered"
            except InferenceServerException as error:
                seen[f"rows={rows}"] = (error.status(), error.message())
    finally:
        client.close()
    return seen


def test_batch_of_two_rows_is_refused(servers: dict[str, RunningServer]) -> None:
    seen = compare(servers, _batch_of_two, 31)
    assert seen["rows=2"] == ("StatusCode.INVALID_ARGUMENT", BATCH_OF_TWO)
    # Refused before the sequence started: its next request is unknown.
    assert seen["rows=1"][1] == (
        "inference request for sequence 31 to model 'seq_plain' must specify the "
        "START flag on the first request of the sequence"
    )


def _failures(server: RunningServer) -> list[str]:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sorted(
        re.findall(r'^nv_inference_request_failure\{model="gated".*$', text, re.M)
    )


def test_backlogged_sequence_expires_and_slot_holder_does_not(
    tmp_path: Path,
) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        repo = tmp_path / kind
        write_model(repo, "gated", GATED_CONFIG, GATED_MODEL)
        gate = repo / "gated"
        with ExitStack() as stack:
            if kind == "reference":
                server = stack.enter_context(run_reference([repo]))
            else:
                server = stack.enter_context(run_server(repo))
            holder, waiter = (
                SequenceStream(
                    server, "gated", seq, input_name="INPUT0", outputs=("OUTPUT0",)
                )
                for seq in (1, 2)
            )
            stack.callback(holder.close)
            stack.callback(waiter.close)
            # Never left shut (runs first): closing a stream waits for its answers.
            stack.callback((gate / "RELEASE").touch)
            # Sequence 1 takes the only slot; its first execution waits on the gate.
            holder.send(1, timeout_us=100_000, sequence_start=True)
            wait_until(lambda: (gate / "ENTERED").exists(), "the first execution")
            holder.send(2, timeout_us=100_000)
            wait_until(
                lambda: server.pending_requests("gated") == 1,
                "sequence 1's second request to be queued in its slot",
            )
            # Sequence 2 waits in the backlog: its requests expire there, the
            # later one (no timeout of its own) with the first.
            waiter.send(10, timeout_us=300_000, sequence_start=True)
            waiter.send(11)
            seen: dict[str, Any] = {"expired": [waiter.answer(), waiter.answer()]}
            # Its id is forgotten: a later request of it is an unknown sequence.
            waiter.send(12, sequence_end=True)
            seen["after"] = waiter.answer()
            # Sequence 1's requests, older than their 100 ms, still run: a
            # sequence holding a slot does not expire.
            (gate / "RELEASE").touch()
            holder.send(3, timeout_us=100_000, sequence_end=True)
            seen["holder"] = [holder.answer() for _ in range(3)]
            seen["stats"] = settled_request_counts(server, "gated", success=3)
            seen["failures"] = _failures(server)
            return seen

    seen = {"tritonx": scenario("tritonx")}
    if reference_command() is not None:
        seen["reference"] = scenario("reference")
        assert seen["tritonx"] == seen["reference"]
    mine = seen["tritonx"]
    assert mine["expired"] == [EXPIRED, EXPIRED]
    assert mine["after"] == NO_START.format(id=2)
    assert mine["holder"] == [[[1]], [[2]], [[3]]]
