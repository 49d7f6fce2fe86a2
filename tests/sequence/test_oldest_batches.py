"""The sequence batcher's oldest strategy forms batches by the dynamic batcher's
preferred-size rule (PreferredCut, shared with the dynamic batcher; Triton documents
the oldest strategy as a dynamic batcher over the candidate sequences): a batch
that reaches any preferred size leaves at once, one below every preferred size
waits for the queue delay.

Each request is a whole sequence of one step (START and END), sent once the ones
before it reached the state the rule gives (answered, or waiting: the pending
request gauge); a queue delay of a minute keeps a batch below a preferred size
waiting, so no step depends on timing.

Not compared with Triton 2.51, which batches these differently in a way not yet
understood: with one instance and 8 candidate sequences it puts the 1st and 3rd
(and the 2nd and 4th) sequences together. Preferred sizes [2, 4]: the first two
wait, the 3rd sends itself with the 1st (2 rows), the 2nd and 4th run alone after
the delay ([2, 1, 2, 1]); preferred [4]: all four wait, then run as two batches of
2 after the delay. tritonx gives [2, 2, 2, 2] and [4, 4, 4, 4] (the dynamic
batcher's answers for the same arrivals)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, run_server
from testmodels import write_model

# ROWS: how many requests the execution that ran this one held.
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        rows = len(requests)
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor("ROWS", np.full((1, 1), rows, np.int32))])
            for _ in requests
        ]
"""


def config(name: str, preferred: str) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "ROWS" data_type: TYPE_INT32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 600000000
  oldest {{
    max_candidate_sequences: 8
    {preferred}
    max_queue_delay_microseconds: 60000000
  }}
}}
"""


# A step: (requests answered once it is in (by index), requests then waiting).
Step = tuple[set[int], int]

SCENARIOS: dict[str, tuple[str, list[Step], list[int]]] = {
    # 1 waits; 1 + 1 = 2 is a preferred size (not the largest): both leave at once
    "smaller_preferred_leaves": (
        "preferred_batch_size: [ 2, 4 ]",
        [(set(), 1), ({0, 1}, 0), ({0, 1}, 1), ({0, 1, 2, 3}, 0)],
        [2, 2, 2, 2],
    ),
    # 3 is no preferred size and below the largest: it waits; the 4th fills 4
    "waits_for_a_preferred_size": (
        "preferred_batch_size: [ 4 ]",
        [(set(), 1), (set(), 2), (set(), 3), ({0, 1, 2, 3}, 0)],
        [4, 4, 4, 4],
    ),
}


def send(url: str, model: str, sequence_id: int) -> Any:
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    tensor = httpclient.InferInput("INPUT0", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 1), np.float32))
    try:
        result = client.infer(
            model,
            [tensor],
            sequence_id=sequence_id,
            sequence_start=True,
            sequence_end=True,
        )
        return int(result.as_numpy("ROWS").ravel()[0])
    finally:
        client.close()


def play(server: RunningServer, name: str) -> list[Any]:
    _, steps, _ = SCENARIOS[name]
    futures: list[concurrent.futures.Future[Any]] = []
    with concurrent.futures.ThreadPoolExecutor(len(steps)) as pool:
        for index, (answered, queued) in enumerate(steps):
            futures.append(pool.submit(send, server.http_url, name, 100 + index))

            def reached(answered: set[int] = answered, queued: int = queued) -> bool:
                done = {i for i, f in enumerate(futures) if f.done()}
                return done == answered and server.pending_requests(name) == queued

            wait_until(
                reached,
                f"{name}: {sorted(answered)} answered, {queued} waiting",
                timeout=30,
            )
        return [f.result(timeout=90) for f in futures]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_oldest") / "repo"
    for name, (preferred, _, _) in SCENARIOS.items():
        write_model(root, name, config(name, preferred), MODEL)
    return root


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[RunningServer]:
    with run_server(repo) as running:
        yield running


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_oldest_batches_follow_the_dynamic_batcher(
    server: RunningServer, name: str
) -> None:
    assert play(server, name) == SCENARIOS[name][2]
