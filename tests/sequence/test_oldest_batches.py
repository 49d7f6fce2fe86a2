"""The sequence batcher's oldest strategy as Triton's oldest batcher forms batches,
compared with Triton 2.51 when TRITONX_REFERENCE_CMD is given: each candidate
slot issues one request at a time (the next only once the one it issued has
completed), the issued requests batch by the dynamic batcher's preferred-size
rule, and a sequence whose END is issued gives its slot up at once, so that the
next sequence waits in that slot for the END to complete. Sequences therefore
pair by slot: with one instance, the 1st runs with the 3rd and the 2nd with the
4th, not the 1st with the 2nd.

Every request says which requests it ran with: the model answers the sum of the
correlation ids of its batch. A step sends a request (or holds or releases the
model's executions through a file) and waits for the state it leads to: the
requests answered so far, the requests waiting (the pending request gauge), and
whether an execution is being held; a queue delay of a minute keeps a batch below
a preferred size waiting, so no step depends on timing."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, run_either
from testmodels import write_model

# BATCH: the sum of the correlation ids of the execution's requests. While
# <markers>/hold exists an execution waits, saying so in <markers>/held.
MODEL = """
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.markers = config["parameters"]["markers"]["string_value"]

    def execute(self, requests):
        hold = os.path.join(self.markers, "hold")
        if os.path.exists(hold):
            open(os.path.join(self.markers, "held"), "w").close()
            while os.path.exists(hold):
                time.sleep(0.01)
        total = sum(int(r.correlation_id()) for r in requests)
        return [
            pb_utils.InferenceResponse([
                pb_utils.Tensor("BATCH", np.full((1, 1), total, np.int64))])
            for _ in requests
        ]
"""


def config(name: str, oldest: str, markers: Path) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
parameters {{ key: "markers" value: {{ string_value: "{markers}" }} }}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "BATCH" data_type: TYPE_INT64 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
sequence_batching {{
  max_sequence_idle_microseconds: 600000000
  oldest {{
    {oldest}
    max_queue_delay_microseconds: 60000000
  }}
}}
"""


START, END, BOTH = (
    {"sequence_start": True},
    {"sequence_end": True},
    {
        "sequence_start": True,
        "sequence_end": True,
    },
)


@dataclass(frozen=True)
class Step:
    """Send request (correlation id, flags) or "hold"/"release" the model, then
    wait until ``answered`` (indexes of the requests sent) and ``waiting``."""

    action: tuple[int, dict[str, bool]] | str
    answered: frozenset[int]
    waiting: int
    held: bool = False


def step(action: Any, answered: set[int], waiting: int, held: bool = False) -> Step:
    return Step(action, frozenset(answered), waiting, held)


SCENARIOS: dict[str, tuple[str, list[Step], list[int]]] = {
    # One-step sequences. 100 issues from slot 0 and gives it up; 101 takes slot
    # 0 and waits for 100 to complete; 102 issues from slot 1 and runs with 100;
    # 103 takes slot 1 (given up by 102, which still runs) and runs with 101 once
    # 100 and 102 are done.
    "sequences_pair_by_slot": (
        "max_candidate_sequences: 8 preferred_batch_size: [ 2 ]",
        [
            step((100, BOTH), set(), 1),
            step((101, BOTH), set(), 2),
            step("hold", set(), 2),
            step((102, BOTH), set(), 1, held=True),
            step((103, BOTH), set(), 2, held=True),
            step("release", {0, 1, 2, 3}, 0),
        ],
        [202, 204, 202, 204],
    ),
    # Sequences keep their slots between steps: their STARTs and then their ENDs
    # wait for a batch of the preferred 4 and leave together.
    "steps_batch_by_the_preferred_size": (
        "max_candidate_sequences: 8 preferred_batch_size: [ 4 ]",
        [
            step((100, START), set(), 1),
            step((101, START), set(), 2),
            step((102, START), set(), 3),
            step((103, START), {0, 1, 2, 3}, 0),
            step((100, END), {0, 1, 2, 3}, 1),
            step((101, END), {0, 1, 2, 3}, 2),
            step((102, END), {0, 1, 2, 3}, 3),
            step((103, END), set(range(8)), 0),
        ],
        [406] * 8,
    ),
    # More sequences than candidate slots (L0_dyna_sequence_batcher's backlog):
    # 102 waits in the backlog until 100's END is issued and gives slot 0 up,
    # then waits in that slot for the END to complete, and runs with 103, which
    # takes slot 1 once 101's END gave it up. 102's END gives slot 0 up again:
    # 104 takes it and waits there for that END, which so runs with 105 (slot
    # 1), not with 104; 106 waits in slot 0 behind 104 the same way. 106 and 107
    # are left open: a request issued alone waits for a partner.
    "a_backlogged_sequence_takes_the_first_slot_given_up": (
        "max_candidate_sequences: 2 preferred_batch_size: [ 2 ]",
        [
            step((100, START), set(), 1),
            step((101, START), {0, 1}, 0),
            step((102, START), {0, 1}, 1),
            step((100, END), {0, 1}, 2),
            step((101, END), {0, 1, 3, 4}, 1),
            step((103, BOTH), set(range(6)), 0),
            step((102, END), set(range(6)), 1),
            step((104, BOTH), set(range(6)), 2),
            step((105, BOTH), set(range(7)) | {8}, 1),
            step((106, START), set(range(7)) | {8}, 2),
            step((107, START), set(range(9)) | {10}, 1),
            step((107, {}), set(range(12)), 0),
        ],
        [201, 201, 205, 201, 201, 205, 207, 211, 207, 213, 211, 213],
    ),
}


def send(url: str, model: str, sequence_id: int, flags: dict[str, bool]) -> Any:
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    tensor = httpclient.InferInput("INPUT0", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 1), np.float32))
    try:
        result = client.infer(model, [tensor], sequence_id=sequence_id, **flags)
        return int(result.as_numpy("BATCH").ravel()[0])
    finally:
        client.close()


def play(server: RunningServer, name: str, markers: Path) -> list[Any]:
    _, steps, _ = SCENARIOS[name]
    futures: list[concurrent.futures.Future[Any]] = []
    with concurrent.futures.ThreadPoolExecutor(len(steps)) as pool:
        for current in steps:
            if current.action == "hold":
                (markers / "hold").touch()
            elif current.action == "release":
                (markers / "held").unlink()
                (markers / "hold").unlink()
            elif not isinstance(current.action, str):
                sequence_id, flags = current.action
                futures.append(
                    pool.submit(send, server.http_url, name, sequence_id, flags)
                )

            seen: list[Step] = []

            def reached(now: Step = current, seen: list[Step] = seen) -> bool:
                done = {i for i, f in enumerate(futures) if f.done()}
                seen[:] = [
                    step(
                        now.action,
                        done,
                        server.pending_requests(name),
                        (markers / "held").exists(),
                    )
                ]
                return seen[0] == now

            try:
                wait_until(reached, f"{name}: {current}", timeout=30)
            except AssertionError as failure:
                raise AssertionError(f"{failure}; last seen {seen}") from None
        return [f.result(timeout=90) for f in futures]


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Path]]:
    kind = request.param
    root = tmp_path_factory.mktemp(f"oldest_{kind}")
    markers = root / "markers"
    markers.mkdir()
    for name, (oldest, _, _) in SCENARIOS.items():
        write_model(root / "repo", name, config(name, oldest, markers), MODEL)
    with run_either(kind, root / "repo") as server:
        yield server, markers


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_oldest_batches_form_as_in_triton(
    served: tuple[RunningServer, Path], name: str
) -> None:
    server, markers = served
    assert play(server, name, markers) == SCENARIOS[name][2]
