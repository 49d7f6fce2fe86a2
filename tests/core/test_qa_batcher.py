"""The dynamic batcher's choice of batches, after Triton's L0_batcher QA, as a
differential test against Triton 2.51 (when TRITONX_REFERENCE_CMD is set).

Triton's QA times requests against a model that sleeps. Here the batches are
fixed by the order of arrival only: each request is sent once the one before it
has reached the state the batcher rules give (waiting in the queue, or answered),
and a queue delay of a minute means a batch below a preferred size never leaves
on its own. Each answer says how many rows and requests the execution that ran
it held, which must be the same on both servers:
- a request alone that fills a preferred size, exceeds the largest one, or (with
  no delay) fits none, runs at once;
- a request that would take the pending batch past the largest preferred size
  sends that batch and waits for the next;
- a request of another shape (variable dims, no ragged batching) sends the
  pending batch;
- requests asking for different outputs batch together.

Left out: the delay-driven cases (the batch leaves when the delay lapses), the
multi-instance preserve_ordering run and the TRITONSERVER_DELAY_SCHEDULER ones,
which need timing."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, reference_command, run_reference, run_server
from testmodels import write_model
from tritonclient.utils import InferenceServerException

# OUTPUT0 = INPUT0; ROWS and REQUESTS: the size of this execution, per row.
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                  for r in requests]
        rows = sum(a.shape[0] for a in arrays)
        responses = []
        for a in arrays:
            n = a.shape[0]
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", a),
                pb_utils.Tensor("ROWS", np.full((n, 1), rows, np.int32)),
                pb_utils.Tensor("REQUESTS", np.full((n, 1), len(arrays), np.int32)),
            ]))
        return responses
"""

BATCHING = {
    # preferred sizes; a batch below them waits (a minute)
    "preferred": "preferred_batch_size: [ 4, 6 ] max_queue_delay_microseconds: 60000000",
    # preferred sizes, no delay: whatever is pending runs
    "no_delay": "preferred_batch_size: [ 4, 6 ]",
    # no preferred size: a batch waits until it holds max_batch_size rows
    "max_only": "max_queue_delay_microseconds: 60000000",
}


def config(name: str, batching: str) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [
  {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "ROWS" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "REQUESTS" data_type: TYPE_INT32 dims: [ 1 ] }}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
dynamic_batching {{ {batching} }}
"""


# A step: (rows, width of each row, the outputs asked for or None for all, the
# requests answered once it is in (by index), how many then wait in the queue).
Step = tuple[int, int, tuple[str, ...] | None, set[int], int]

# scenario: (model kind, steps)
SCENARIOS: dict[str, tuple[str, list[Step]]] = {
    "static_batch_preferred": (
        "preferred",
        [(4, 16, None, {0}, 0), (6, 16, None, {0, 1}, 0)],
    ),
    "static_batch_lt_any_preferred": (
        "no_delay",
        [(1, 16, None, {0}, 0), (2, 16, None, {0, 1}, 0)],
    ),
    "static_batch_not_preferred": ("no_delay", [(3, 16, None, {0}, 0)]),
    "static_batch_gt_max_preferred": ("preferred", [(7, 16, None, {0}, 0)]),
    # 3 pending + 5 > 6: the 3 go; 5 + 1 = 6 then fills a preferred size
    "multi_batch_sum_gt_max_preferred": (
        "preferred",
        [(3, 16, None, set(), 1), (5, 16, None, {0}, 1), (1, 16, None, {0, 1, 2}, 0)],
    ),
    # a smaller preferred size runs at once too; 5 alone fits none and waits
    "multi_batch_gt_max_preferred": (
        "preferred",
        [
            (2, 16, None, set(), 1),
            (2, 16, None, {0, 1}, 0),
            (5, 16, None, {0, 1}, 1),
            (1, 16, None, {0, 1, 2, 3}, 0),
        ],
    ),
    # 1 + 1 + 2 = 4, one request at a time
    "multi_batch_preferred": (
        "preferred",
        [
            (1, 16, None, set(), 1),
            (1, 16, None, set(), 2),
            (2, 16, None, {0, 1, 2}, 0),
        ],
    ),
    # another width sends the pending batch; the new one waits for its own
    "multi_batch_different_shape": (
        "preferred",
        [
            (1, 16, None, set(), 1),
            (1, 8, None, {0}, 1),
            (3, 8, None, {0, 1, 2}, 0),
        ],
    ),
    "multi_batch_preferred_different_shape": (
        "preferred",
        [
            (2, 16, None, set(), 1),
            (2, 8, None, {0}, 1),
            (2, 8, None, {0, 1, 2}, 0),
        ],
    ),
    # no preferred size: 8 rows (max_batch_size) make the batch; 5 + 4 > 8
    "max_batch_only": (
        "max_only",
        [
            (5, 16, None, set(), 1),
            (4, 16, None, {0}, 1),
            (4, 16, None, {0, 1, 2}, 0),
        ],
    ),
    # different requested outputs still batch together
    "multi_different_outputs": (
        "preferred",
        [
            (1, 16, ("OUTPUT0", "ROWS"), set(), 1),
            (1, 16, ("ROWS",), set(), 2),
            (2, 16, ("REQUESTS", "ROWS"), {0, 1, 2}, 0),
        ],
    ),
}


def send(url: str, model: str, rows: int, width: int, wanted: Any) -> Any:
    client = httpclient.InferenceServerClient(url, network_timeout=120)
    tensor = httpclient.InferInput("INPUT0", [rows, width], "FP32")
    tensor.set_data_from_numpy(np.full((rows, width), rows, np.float32))
    outputs = None
    if wanted is not None:
        outputs = [httpclient.InferRequestedOutput(name) for name in wanted]
    try:
        result = client.infer(model, [tensor], outputs=outputs)
    except InferenceServerException as error:
        return ("error", error.message())
    finally:
        client.close()
    answer = {}
    for output in result.get_response()["outputs"]:
        values = result.as_numpy(output["name"])
        answer[output["name"]] = (list(values.shape), values.ravel().tolist()[:1])
    return answer


def play(server: RunningServer, name: str) -> list[Any]:
    """The scenario's steps in order, each sent once the previous one's state
    (answered requests, queue length) is reached: what each request got."""
    _, steps = SCENARIOS[name]
    futures: list[concurrent.futures.Future[Any]] = []
    with concurrent.futures.ThreadPoolExecutor(len(steps)) as pool:
        for rows, width, wanted, answered, queued in steps:
            futures.append(
                pool.submit(send, server.http_url, name, rows, width, wanted)
            )

            def reached(answered: set[int] = answered, queued: int = queued) -> bool:
                done = {i for i, f in enumerate(futures) if f.done()}
                return done == answered and server.pending_requests(name) == queued

            wait_until(
                reached,
                f"{name}: {sorted(answered)} answered, {queued} queued",
                timeout=30,
            )
        return [f.result(timeout=60) for f in futures]


def write_repo(repo: Path) -> None:
    for name, (kind, _) in SCENARIOS.items():
        write_model(repo, name, config(name, BATCHING[kind]), MODEL)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qa_batcher") / "repo"
    write_repo(root)
    return root


@pytest.fixture(scope="module", params=["tritonx", "reference"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[RunningServer]:
    if request.param == "reference":
        if reference_command() is None:
            pytest.skip("TRITONX_REFERENCE_CMD is not set")
        with run_reference([repo]) as running:
            yield running
    else:
        with run_server(repo) as running:
            yield running


# The execution each request ran in: (rows, requests), as Triton 2.51 formed it.
EXPECTED = {
    "static_batch_preferred": [(4, 1), (6, 1)],
    "static_batch_lt_any_preferred": [(1, 1), (2, 1)],
    "static_batch_not_preferred": [(3, 1)],
    "static_batch_gt_max_preferred": [(7, 1)],
    "multi_batch_sum_gt_max_preferred": [(3, 1), (6, 2), (6, 2)],
    "multi_batch_gt_max_preferred": [(4, 2), (4, 2), (6, 2), (6, 2)],
    "multi_batch_preferred": [(4, 3), (4, 3), (4, 3)],
    "multi_batch_different_shape": [(1, 1), (4, 2), (4, 2)],
    "multi_batch_preferred_different_shape": [(2, 1), (4, 2), (4, 2)],
    "max_batch_only": [(5, 1), (8, 2), (8, 2)],
    "multi_different_outputs": [(4, 3), (4, 3), (4, 3)],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_batches_form_as_in_triton(server: RunningServer, name: str) -> None:
    answers = play(server, name)
    steps = SCENARIOS[name][1]
    executions = []
    for (rows, width, wanted, _, _), answer in zip(steps, answers, strict=True):
        assert not isinstance(answer, tuple), answer
        names = list(wanted) if wanted is not None else ["OUTPUT0", "ROWS", "REQUESTS"]
        assert sorted(answer) == sorted(names)
        if "OUTPUT0" in answer:
            assert answer["OUTPUT0"] == ([rows, width], [float(rows)])
        rows_seen = answer["ROWS"][1][0] if "ROWS" in answer else None
        requests_seen = answer["REQUESTS"][1][0] if "REQUESTS" in answer else None
        executions.append((rows_seen, requests_seen))
    expected = [
        (
            rows if "ROWS" in (wanted or ("ROWS",)) else None,
            count if "REQUESTS" in (wanted or ("REQUESTS",)) else None,
        )
        for (rows, count), (_, _, wanted, _, _) in zip(
            EXPECTED[name], steps, strict=True
        )
    ]
    assert executions == expected
