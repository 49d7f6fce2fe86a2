"""The sequence batcher end to end: real servers, tritonclient over HTTP, gRPC and
the gRPC stream; control inputs as the model sees them, implicit state, backlog,
idle timeout, Triton's errors, and a differential run against the real Triton."""

from __future__ import annotations

import http.client
import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, reference_command, run_reference, run_server
from tritonclient.utils import InferenceServerException

from .conftest import write_sequence_model

UNKNOWN = (
    "inference request for sequence {id} to model '{model}' must specify the START "
    "flag on the first request of the sequence"
)
NO_ID = (
    "inference request to model '{model}' must specify a non-zero or non-empty "
    "correlation ID"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("seqrepo")
    write_sequence_model(repo, "seq_direct")
    write_sequence_model(
        repo,
        "seq_oldest",
        strategy="oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2 ] }",
        instances=2,
    )
    write_sequence_model(repo, "seq_one", max_batch_size=0)
    write_sequence_model(repo, "seq_init", initial=100)
    write_sequence_model(repo, "seq_idle", max_batch_size=0, idle_us=300_000)
    with run_server(repo) as running:
        yield running


class Client:
    """One protocol's way of sending one sequence step and reading the result."""

    def __init__(self, server: RunningServer, protocol: str) -> None:
        self.protocol = protocol
        self.results: queue.Queue[Any] = queue.Queue()
        if protocol == "http":
            self.http = httpclient.InferenceServerClient(
                f"127.0.0.1:{server.ports['http']}"
            )
        else:
            self.grpc = grpcclient.InferenceServerClient(
                f"127.0.0.1:{server.ports['grpc']}"
            )
            if protocol == "stream":
                self.grpc.start_stream(
                    callback=lambda result, error: self.results.put(error or result)
                )

    def step(
        self,
        model: str,
        value: int,
        seq: int | str,
        start: bool = False,
        end: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        data = np.array([[value]], dtype=np.int32)
        if model in ("seq_one", "seq_idle"):
            data = data.reshape(1)
        kwargs = {"sequence_id": seq, "sequence_start": start, "sequence_end": end}
        if self.protocol == "http":
            inp = httpclient.InferInput("INPUT", list(data.shape), "INT32")
            inp.set_data_from_numpy(data)
            result = self.http.infer(model, [inp], **kwargs)
        else:
            inp = grpcclient.InferInput("INPUT", list(data.shape), "INT32")
            inp.set_data_from_numpy(data)
            if self.protocol == "grpc":
                result = self.grpc.infer(model, [inp], **kwargs)
            else:
                self.grpc.async_stream_infer(model, [inp], **kwargs)
                result = self.results.get(timeout=60)
                if isinstance(result, Exception):
                    raise result
        return result.as_numpy("OUTPUT"), result.as_numpy("CONTROLS")

    def close(self) -> None:
        if self.protocol == "http":
            self.http.close()
        else:
            if self.protocol == "stream":
                self.grpc.stop_stream()
            self.grpc.close()


@pytest.mark.parametrize("model", ["seq_direct", "seq_oldest"])
@pytest.mark.parametrize("protocol", ["http", "grpc", "stream"])
def test_interleaved_sequences_keep_state(
    server: RunningServer, protocol: str, model: str
) -> None:
    client = Client(server, protocol)
    try:
        a, b = 1000 + len(protocol), 2000 + len(model)
        out, ctrl = client.step(model, 1, a, start=True)
        assert out.tolist() == [[1]]
        assert ctrl.tolist() == [[1, 0, 1, a]]  # START, not END, READY, CORRID
        out, ctrl = client.step(model, 10, b, start=True)
        assert (out.tolist(), ctrl.tolist()) == ([[10]], [[1, 0, 1, b]])
        out, ctrl = client.step(model, 2, a)
        assert (out.tolist(), ctrl.tolist()) == ([[3]], [[0, 0, 1, a]])
        out, _ = client.step(model, 20, b)
        assert out.tolist() == [[30]]
        out, ctrl = client.step(model, 3, a, end=True)
        assert (out.tolist(), ctrl.tolist()) == ([[6]], [[0, 1, 1, a]])
        # The state starts over at START.
        out, _ = client.step(model, 5, a, start=True)
        assert out.tolist() == [[5]]
        out, _ = client.step(model, 30, b, end=True)
        assert out.tolist() == [[60]]
        out, _ = client.step(model, 1, a, end=True)
        assert out.tolist() == [[6]]
    finally:
        client.close()


@pytest.mark.parametrize("model", ["seq_direct", "seq_oldest"])
def test_pipelined_stream_steps_run_in_order(server: RunningServer, model: str) -> None:
    # Two sequences' steps sent on one stream without waiting for answers: they
    # reach the sequence batcher in the order sent (as Triton enqueues a stream's
    # requests in read order), so every step sees the state of the one before, and
    # the answers (a non-decoupled model) come back in that order too.
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports['grpc']}")
    client.start_stream(callback=lambda result, error: answers.put(error or result))
    steps = 60
    try:
        for i in range(steps):
            for seq, value in ((7001, 1), (7002, 10)):
                data = np.array([[value]], dtype=np.int32)
                inp = grpcclient.InferInput("INPUT", [1, 1], "INT32")
                inp.set_data_from_numpy(data)
                client.async_stream_infer(
                    model,
                    [inp],
                    request_id=f"{seq}-{i}",
                    sequence_id=seq,
                    sequence_start=i == 0,
                    sequence_end=i == steps - 1,
                )
        got = [answers.get(timeout=60) for _ in range(2 * steps)]
    finally:
        client.stop_stream()
        client.close()
    assert not [g for g in got if isinstance(g, Exception)]
    assert [g.get_response().id for g in got] == [
        f"{seq}-{i}" for i in range(steps) for seq in (7001, 7002)
    ]
    sums = [int(g.as_numpy("OUTPUT")[0][0]) for g in got]
    assert sums == [v * (i + 1) for i in range(steps) for v in (1, 10)]


def test_initial_state_from_data_file(server: RunningServer) -> None:
    client = Client(server, "grpc")
    try:
        assert client.step("seq_init", 1, 61, start=True)[0].tolist() == [[101]]
        assert client.step("seq_init", 2, 61)[0].tolist() == [[103]]
        # START again: back to the initial state.
        assert client.step("seq_init", 5, 61, start=True)[0].tolist() == [[105]]
        assert client.step("seq_init", 1, 61, end=True)[0].tolist() == [[106]]
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_errors_have_tritons_messages(server: RunningServer, protocol: str) -> None:
    client = Client(server, protocol)
    try:
        with pytest.raises(InferenceServerException) as info:
            client.step("seq_direct", 1, 0)
        assert NO_ID.format(model="seq_direct") in str(info.value)
        with pytest.raises(InferenceServerException) as info:
            client.step("seq_direct", 1, 987654)
        assert UNKNOWN.format(id=987654, model="seq_direct") in str(info.value)
        # After END the id is unknown again.
        client.step("seq_direct", 1, 555, start=True, end=True)
        with pytest.raises(InferenceServerException) as info:
            client.step("seq_direct", 1, 555)
        assert UNKNOWN.format(id=555, model="seq_direct") in str(info.value)
    finally:
        client.close()


def test_string_id_on_uint64_corrid(server: RunningServer) -> None:
    # Triton hands a numeric CORRID the leading bytes of the string's serialized
    # form: uint32 length 3, then "abc", read as a little-endian uint64.
    client = Client(server, "grpc")
    try:
        _, ctrl = client.step("seq_direct", 1, "abc", start=True, end=True)
        assert ctrl.tolist() == [
            [1, 1, 1, int.from_bytes(b"\x03\0\0\0abc\0", "little")]
        ]
    finally:
        client.close()


def _run_sequence(server: RunningServer, model: str, seq: int, out: dict) -> None:
    client = Client(server, "grpc")
    try:
        totals = []
        for step in range(4):
            value, _ = client.step(
                model, seq + step, seq, start=step == 0, end=step == 3
            )
            totals.append(int(value.reshape(-1)[0]))
        out[seq] = totals
    except Exception as err:  # reported by the test
        out[seq] = err
    finally:
        client.close()


@pytest.mark.parametrize("model", ["seq_one", "seq_oldest"])
def test_more_sequences_than_slots_all_complete(
    server: RunningServer, model: str
) -> None:
    # seq_one has a single slot; seq_oldest 2 instances x 4 candidates.
    results: dict[int, Any] = {}
    ids = [7000 + 100 * i for i in range(10 if model == "seq_oldest" else 3)]
    threads = [
        threading.Thread(target=_run_sequence, args=(server, model, s, results))
        for s in ids
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s in ids:
        expected = list(np.cumsum([s, s + 1, s + 2, s + 3]))
        assert results[s] == expected, results[s]


def test_idle_sequence_frees_its_slot(server: RunningServer) -> None:
    client = Client(server, "grpc")
    try:
        client.step("seq_idle", 1, 41, start=True)
        # The only slot is held by 41: 42 waits in the backlog until 41 is idle
        # past max_sequence_idle (300 ms) and ends.
        out, _ = client.step("seq_idle", 5, 42, start=True, end=True)
        assert out.tolist() == [5]
        with pytest.raises(InferenceServerException) as info:
            client.step("seq_idle", 1, 41)
        assert UNKNOWN.format(id=41, model="seq_idle") in str(info.value)
    finally:
        client.close()


def test_statistics_count_requests_not_null_slots(server: RunningServer) -> None:
    client = Client(server, "grpc")
    try:
        before = client.grpc.get_inference_statistics("seq_direct", as_json=True)
        # Two sequences at once: the one in slot 1 runs with a null request in
        # slot 0 once the other has ended.
        client.step("seq_direct", 1, 31, start=True)
        client.step("seq_direct", 1, 32, start=True)
        client.step("seq_direct", 1, 31, end=True)
        client.step("seq_direct", 1, 32, end=True)
        after = client.grpc.get_inference_statistics("seq_direct", as_json=True)

        def count(stats: dict) -> int:
            return int(stats["model_stats"][0].get("inference_count", 0))

        assert count(after) - count(before) == 4
    finally:
        client.close()


# --- differential: the same repository and requests on the real Triton -------------


def _post(port: int, model: str, value: int, params: dict[str, Any]) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = {
            "inputs": [
                {"name": "INPUT", "datatype": "INT32", "shape": [1, 1], "data": [value]}
            ],
            "parameters": params,
        }
        conn.request("POST", f"/v2/models/{model}/infer", json.dumps(body))
        response = conn.getresponse()
        doc = json.loads(response.read())
        # Output order is not what this test compares.
        doc.get("outputs", []).sort(key=lambda output: output["name"])
        return response.status, doc
    finally:
        conn.close()


SCRIPT: list[tuple[int, dict[str, Any]]] = [
    (1, {"sequence_id": 11, "sequence_start": True}),
    (10, {"sequence_id": 22, "sequence_start": True}),
    (2, {"sequence_id": 11}),
    (3, {"sequence_id": 11, "sequence_end": True}),
    (20, {"sequence_id": 22, "sequence_end": True}),
    (1, {}),
    (1, {"sequence_id": 0}),
    (1, {"sequence_id": 99}),
    (4, {"sequence_id": "abc", "sequence_start": True, "sequence_end": True}),
    (1, {"sequence_id": 5, "sequence_start": True}),
    (2, {"sequence_id": 5, "sequence_start": True}),
    (3, {"sequence_id": 5, "sequence_end": True}),
    (3, {"sequence_id": 5, "sequence_end": True}),
]


def _replay(port: int) -> list[tuple]:
    return [_post(port, "seq_plain", v, p) for v, p in SCRIPT]


@pytest.mark.skipif(reference_command() is None, reason="TRITONX_REFERENCE_CMD unset")
def test_same_answers_as_triton(tmp_path: Path) -> None:
    # Stateless: Triton 2.51's python backend does not carry implicit state.
    write_sequence_model(tmp_path, "seq_plain", state=False)
    with run_server(tmp_path) as ours:
        mine = _replay(ours.ports["http"])
    with run_reference([tmp_path]) as reference:
        theirs = _replay(reference.ports["http"])
    assert mine == theirs
