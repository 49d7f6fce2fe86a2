"""Cancelling a queued request of a sequence cancels the sequence, as Triton 2.51
does (QA L0_request_cancellation scheduler_test.py): every request of it still
queued is answered CANCELLED (and counted as a CANCELED failure), whether the
sequence holds a slot or waits in the backlog for one; one that holds a slot gives
it up once idle. Checked against Triton when the reference is set."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

pytest.importorskip("tritonx._native", reason="core not built")
from grpcutil import wait_for
from serverutil import REFERENCE_CMD_ENV, RunningServer, run_reference, run_server
from testmodels import HELD_MODEL

# HELD_MODEL for batched inputs ([1, 1]: the tag is the one value).
MODEL = HELD_MODEL.replace("int(value[0])", "int(value.flatten()[0])")
assert MODEL != HELD_MODEL

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
sequence_batching {{ {strategy} max_sequence_idle_microseconds: {idle_us} }}
"""
MODELS = {
    "held_direct": "direct { }",
    "held_oldest": "oldest { max_candidate_sequences: 1 }",
    "held_backlog": "direct { }",
}
# Two slots, and no batch before both have a request (a minute's delay otherwise).
FULL_BATCHES = (
    "direct { max_queue_delay_microseconds: 60000000 minimum_slot_utilization: 1.0 }"
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seq_cancel_repo")
    configs = {
        name: CONFIG.format(
            name=name, strategy=strategy, max_batch_size=1, idle_us=60_000_000
        )
        for name, strategy in MODELS.items()
    }
    configs["full_batches"] = CONFIG.format(
        name="full_batches", strategy=FULL_BATCHES, max_batch_size=2, idle_us=200_000
    )
    for name, config in configs.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        (root / name / "1" / "model.py").write_text(MODEL)
    (root / "full_batches" / "open").touch()  # its requests never wait
    return root


def _servers() -> list[str]:
    return ["tritonx"] + (["triton"] if os.environ.get(REFERENCE_CMD_ENV) else [])


@pytest.fixture(scope="module", params=_servers())
def server(repo: Path, request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    context: AbstractContextManager[RunningServer]
    if request.param == "triton":
        context = run_reference([repo])
    else:
        context = run_server(repo, "--allow-http=false", "--allow-metrics=false")
    with context as running:
        yield running


def _send(
    client: grpcclient.InferenceServerClient, model: str, value: int, **seq: Any
) -> tuple[Any, queue.Queue[Any]]:
    answers: queue.Queue[Any] = queue.Queue()
    data = np.array([[value]], dtype=np.float32)
    inp = grpcclient.InferInput("INPUT0", [1, 1], "FP32")
    inp.set_data_from_numpy(data)
    future = client.async_infer(
        model, [inp], lambda result, error: answers.put(error or result), **seq
    )
    return future, answers


def _failures(client: grpcclient.InferenceServerClient, model: str) -> int:
    stats = client.get_inference_statistics(model, as_json=True)
    return int(stats["model_stats"][0]["inference_stats"]["fail"].get("count", 0))


def _run(server: RunningServer, repo: Path, model: str, backlog: bool) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports['grpc']}")
    try:
        failures = _failures(client, model)
        # Sequence 1 takes the only slot; its first request runs until "open".
        # (With the backlog, it also ends its sequence: Triton looks at a backlogged
        # sequence again when it gets a slot, or when its idle time is up.)
        _, first = _send(
            client, model, 1, sequence_id=1, sequence_start=True, sequence_end=backlog
        )
        wait_for(repo / model / "ran-1")
        # Two more requests queue: sequence 1's own, or sequence 2 in the backlog.
        if backlog:
            seqs = [{"sequence_id": 2, "sequence_start": True}, {"sequence_id": 2}]
        else:
            seqs = [{"sequence_id": 1}, {"sequence_id": 1}]
        queued = []
        for i, seq in enumerate(seqs):
            # Two async calls are two RPCs that the server may take in either
            # order; a sequence's requests must arrive in order (a loaded CI box
            # once delivered sequence 2's second request before its START).
            queued.append(_send(client, model, 2 + i, **seq))
            time.sleep(0.5)
        time.sleep(0.5)
        early = [answers.queue[0] for _, answers in queued if not answers.empty()]
        assert not early, [(str(e), getattr(e, "status", lambda: "")()) for e in early]
        queued[0][0].cancel()
        time.sleep(2)  # Triton takes the cancellation in a moment (QA waits 2 s too)
        # Triton answers them when its scheduler next looks at the sequence (after
        # the running request), tritonx at once; either way, none of them runs.
        (repo / model / "open").touch()
        result = first.get(timeout=60)
        assert not isinstance(result, Exception), result
        assert result.as_numpy("OUTPUT0").tolist() == [[1.0]]
        for _, answers in queued:
            error = answers.get(timeout=20)
            if server.reference and not isinstance(error, Exception):
                # Seen once in CI under load: Triton takes a cancellation
                # asynchronously, and there it came after that request's dispatch.
                pytest.skip("Triton 2.51 ran a request of the cancelled sequence")
            assert isinstance(error, Exception), error
            assert "CANCELLED" in str(error.status()), error
        deadline = time.monotonic() + 10
        while _failures(client, model) < failures + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _failures(client, model) == failures + 2
        # Nothing of the cancelled requests ever ran.
        assert not (repo / model / "ran-2").exists()
        assert not (repo / model / "ran-3").exists()
    finally:
        client.close()
        (repo / model / "open").unlink(missing_ok=True)
        for name in ("ran-1", "ran-2", "ran-3"):
            (repo / model / name).unlink(missing_ok=True)


@pytest.mark.parametrize("model", ["held_direct", "held_oldest"])
def test_cancelling_a_queued_request_cancels_its_sequence(
    server: RunningServer, repo: Path, model: str
) -> None:
    _run(server, repo, model, backlog=False)


def test_cancelling_a_backlogged_request_cancels_its_sequence(
    server: RunningServer, repo: Path
) -> None:
    _run(server, repo, "held_backlog", backlog=True)


def test_a_cancelled_sequence_gives_its_slot_up_once_idle(
    server: RunningServer, repo: Path
) -> None:
    """A sequence whose queued request was cancelled keeps its slot until its idle
    time (200 ms) is up; then the slot is free for the next sequence. No batch runs
    until both slots have a request, so only the idle timeout can free the slot.
    (tritonx once left it taken until some other batch of the model ran: here, for
    the minute the batch delay lasts.)"""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports['grpc']}")
    try:
        cancelled, answer = _send(
            client, "full_batches", 1, sequence_id=1, sequence_start=True
        )
        time.sleep(0.5)  # queued in slot 0, waiting for slot 1
        cancelled.cancel()
        answer.get(timeout=20)  # the client's own CANCELLED
        time.sleep(2)  # Triton takes the cancellation in a moment; then 200 ms idle
        _, second = _send(client, "full_batches", 2, sequence_id=2, sequence_start=True)
        time.sleep(0.5)  # a sequence's slot follows arrival order
        _, third = _send(client, "full_batches", 3, sequence_id=3, sequence_start=True)
        for tag, answers in ((2, second), (3, third)):
            result = answers.get(timeout=30)
            assert not isinstance(result, Exception), result
            assert result.as_numpy("OUTPUT0").tolist() == [[float(tag)]]
        assert not (repo / "full_batches" / "ran-1").exists()
    finally:
        client.close()
        for name in ("ran-1", "ran-2", "ran-3"):
            (repo / "full_batches" / name).unlink(missing_ok=True)
