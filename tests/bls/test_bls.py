"""BLS end to end: a Python model calling models of its server through the wire of
a real tritonx server (tests/bls/blsmodels.py holds the models and the probe)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from blsmodels import probe, req
from serverutil import RunningServer

FP32 = "float32"
NOT_STARTED = "Model {0} - Error when running inference: "


def f32(*values: float) -> list[Any]:
    return ["IN", FP32, list(values)]


def i32(value: int) -> list[Any]:
    return ["IN", "int32", [value]]


def outputs(result: dict[str, Any]) -> dict[str, list[Any]]:
    assert "outputs" in result, result
    return {name: values for name, (_shape, values) in result["outputs"].items()}


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    """Polls for a state the test set up (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_exec_returns_the_called_models_outputs(
    bls_server: RunningServer, protocol: str
) -> None:
    url = bls_server.http_url if protocol == "http" else bls_server.grpc_url
    sync, every, one_async = probe(
        url,
        [
            {
                "call": "exec",
                "req": req("add", [f32(1, 2)], requested_output_names=["OUT"]),
            },
            {"call": "exec", "req": req("add", [f32(4)])},
            {
                "call": "async_exec",
                "req": req("add", [f32(5)], requested_output_names=["OUT2"]),
            },
        ],
        protocol,
    )
    assert outputs(sync) == {"OUT": [2.0, 3.0]}
    # No requested outputs: every output of the called model, as in Triton.
    assert set(outputs(every)) == {"OUT", "OUT2", "META"}
    assert outputs(one_async) == {"OUT2": [10.0]}


def test_tensors_of_every_size_keep_their_bytes(bls_server: RunningServer) -> None:
    """Calls in a row with inputs that grow past a reused tensor region, outputs
    too big to come back in it, one past the size a region is kept at (16 MiB), and
    a small one after each, and empty ones: every answer is exact. (In a stub process the calls
    share regions; these sizes take each path of that scheme.)"""

    def add(n: int) -> dict[str, Any]:
        inputs = [["IN", FP32, {"arange": n}]]
        return req("add", inputs, requested_output_names=["OUT", "OUT2"])

    def call(n: int, how: str = "exec") -> dict[str, Any]:
        return {"call": how, "req": add(n), "summary": True}

    def expected(n: int) -> dict[str, float]:  # the exact sums of x + 1 and 2x
        return {"OUT": n * (n - 1) / 2 + n, "OUT2": float(n * (n - 1))}

    def exact(n: int) -> dict[str, list[Any]]:
        return {name: [[n], total] for name, total in expected(n).items()}

    sizes = [4, 0, 200_000, 3, 5_000_000, 5, 40_000]  # 0: nothing to copy
    # async_exec keeps its region until its response, which comes back in it.
    async_sizes = [300_000, 0, 6, 5_000_000, 7]
    together = [2, 70_000, 9, 1_000]  # in flight at once: one region each
    gather = {"gather": [add(n) for n in together], "summary": True}
    steps = [call(n) for n in sizes] + [call(n, "async_exec") for n in async_sizes]
    *results, gathered, last = probe(bls_server.http_url, [*steps, gather, call(6)])
    for n, result in zip([*sizes, *async_sizes], results, strict=True):
        assert result["outputs"] == exact(n), n
    for n, result in zip(together, gathered, strict=True):
        assert result["outputs"] == exact(n), n
    assert last["outputs"] == exact(6)


def test_zero_element_tensors_of_any_rank(bls_server: RunningServer) -> None:
    """A [1, 0] input (Triton's test_zero_length_io): nothing to copy, and in a
    stub process a zero-element view of rank 2 must not be cast byte-wise."""
    empty = [["IN", FP32, [[]]]]
    results = probe(
        bls_server.http_url,
        [
            {"call": how, "req": req("ident2d", empty, requested_output_names=["OUT"])}
            for how in ("exec", "async_exec")
        ],
    )
    for result in results:
        assert result == {"outputs": {"OUT": [[1, 0], [[]]]}}


def test_request_fields_reach_the_called_model(bls_server: RunningServer) -> None:
    meta = ["META"]
    results = probe(
        bls_server.http_url,
        [
            {
                "call": "exec",
                "req": req(
                    "add",
                    [f32(3)],
                    requested_output_names=meta,
                    request_id="r1",
                    correlation_id=7,
                    flags=3,
                    parameters={"a": 1, "b": "x", "c": True},
                ),
            },
            {
                "call": "exec",
                "req": req(
                    "add", [f32(3)], requested_output_names=meta, correlation_id="abc"
                ),
            },
            # Names reserved on the wire are ordinary parameters here (Triton's C API).
            {
                "call": "async_exec",
                "req": req(
                    "add",
                    [f32(3)],
                    requested_output_names=meta,
                    parameters={"timeout": 5, "sequence_id": 3, "triton_x": 1},
                ),
            },
            {
                "call": "exec",
                "req": req(
                    "add", [f32(1)], requested_output_names=["OUT"], model_version=1
                ),
            },
            {
                "call": "exec",
                "req": req(
                    "add", [f32(1)], requested_output_names=["OUT"], model_version=5
                ),
            },
        ],
    )
    import json

    seen = [json.loads(outputs(r)["META"][0]) for r in results[:3]]
    assert seen[0] == {
        "params": {"a": 1, "b": "x", "c": True},
        "request_id": "r1",
        "correlation_id": 7,
        "flags": 3,
    }
    assert seen[1]["correlation_id"] == "abc"
    assert seen[2]["params"] == {"timeout": 5, "sequence_id": 3, "triton_x": 1}
    assert outputs(results[3]) == {"OUT": [2.0]}
    assert results[4]["error"] == NOT_STARTED.format("add") + (
        "Failed for execute the inference request. Model 'add' is not ready."
    )


def test_async_exec_calls_are_in_flight_together(
    bls_server: RunningServer, bls_repo: Path
) -> None:
    """Four async_exec calls to a one-instance model that holds its request: all four
    are submitted before any answer (three wait in its queue), by no extra thread."""
    tags = [101, 102, 103, 104]
    # One call first: a stub starts its one BLS reader thread at its first async
    # call (which call is first depends on the order tests run in).
    steps: list[dict[str, Any]] = [{"call": "async_exec", "req": req("add", [f32(4)])}]
    steps += [{"threads": True}]
    steps += [
        {"start": str(t), "req": req("held", [f32(t)], requested_output_names=["OUT"])}
        for t in tags
    ]
    steps += [{"threads": True}]
    steps += [{"await": str(t)} for t in tags]
    result: list[Any] = []
    caller = threading.Thread(
        target=lambda: result.append(probe(bls_server.grpc_url, steps, "grpc"))
    )
    caller.start()
    try:
        _wait_for(lambda: (bls_repo / "held-101").exists(), "the first call runs")
        _wait_for(
            lambda: bls_server.pending_requests("held") == 3,
            "three calls queued behind it",
        )
    finally:
        for t in tags:
            (bls_repo / f"open-{t}").touch()
        caller.join(120)
    threads_before, *_, threads_during = result[0][1 : len(tags) + 3]
    assert threads_during == threads_before
    assert [outputs(r) for r in result[0][len(tags) + 3 :]] == [
        {"OUT": [float(t)]} for t in tags
    ]


def test_decoupled_responses_by_for_and_async_for(bls_server: RunningServer) -> None:
    three = req("square", [i32(3)], requested_output_names=["OUT"])
    results = probe(
        bls_server.http_url,
        [
            {"call": "exec", "decoupled": True, "req": three},
            {"call": "async_exec", "decoupled": True, "req": three},
            {"call": "async_exec", "decoupled": True, "aiter": True, "req": three},
            {"call": "exec", "decoupled": True, "aiter": True, "req": three},
            {"gather": [three, three], "decoupled": True, "aiter": True},
            {"call": "exec", "decoupled": True, "req": req("square", [i32(0)])},
            {"call": "exec", "decoupled": True, "req": req("square", [i32(-1)])},
            # A model that is not decoupled answers once, FINAL included.
            {
                "call": "exec",
                "decoupled": True,
                "req": req("add", [f32(1)], requested_output_names=["OUT"]),
            },
        ],
    )
    # Every response, then the FINAL one (empty: the model sent FINAL alone).
    streamed = [{"OUT": [0]}, {"OUT": [1]}, {"OUT": [2]}, {}]
    for result in [*results[:4], *results[4]]:
        assert [outputs(r) for r in result["responses"]] == streamed
    assert [outputs(r) for r in results[5]["responses"]] == [{}]
    error, final = results[6]["responses"]
    assert error["error"] == "count must not be negative"
    assert outputs(final) == {}
    assert [outputs(r) for r in results[7]["responses"]] == [{"OUT": [2.0]}]


def test_cancel_a_decoupled_call(bls_server: RunningServer) -> None:
    """ticker sends one response, then waits for cancellation before FINAL."""
    (result,) = probe(
        bls_server.http_url, [{"cancel_after": 1, "req": req("ticker", [i32(0)])}]
    )
    assert [outputs(r) for r in result["responses"]] == [{"OUT": [0]}, {}]


def test_bls_from_a_decoupled_models_own_thread(bls_server: RunningServer) -> None:
    """relay answers from threads it starts, after execute returned: a decoupled
    call streamed back and a plain one (in a stub, its reader serves them)."""
    (result,) = probe(
        bls_server.http_url,
        [{"call": "exec", "decoupled": True, "req": req("relay", [i32(2)])}],
    )
    assert [outputs(r) for r in result["responses"]] == [
        {"OUT": [0]},
        {"OUT": [1]},
        {"OUT": [3]},  # sent with FINAL
    ]


def test_errors_come_back_as_responses(bls_server: RunningServer) -> None:
    bad = NOT_STARTED.format("add")
    steps = [
        {"call": "exec", "req": req("nope", [f32(1)])},
        {"call": "async_exec", "req": req("nope", [f32(1)])},
        {"call": "exec", "decoupled": True, "req": req("nope", [f32(1)])},
        {"call": "exec", "req": req("add", [["X", FP32, [1.0]]])},
        {"call": "exec", "req": req("add", [["IN", "int32", [1]]])},
        {"call": "async_exec", "req": req("add", [])},
        {"call": "exec", "req": req("add", [f32(1)], requested_output_names=["NOPE"])},
        {"call": "exec", "req": req("add", [f32(-1)])},
        {"call": "exec", "req": req("square", [i32(2)])},
        {"call": "exec", "req": req("add", [f32(-2)])},
        {"call": "exec", "req": req("add", [f32(1)], parameters={"f": 1.5})},
    ]
    r = probe(bls_server.http_url, steps)
    not_ready = NOT_STARTED.format("nope") + (
        "Failed for execute the inference request. Model 'nope' is not ready."
    )
    assert r[0] == r[1] == {"error": not_ready, "code": 1}
    assert r[2] == {"responses": [{"error": not_ready, "code": 1}]}
    assert r[3]["error"] == bad + "unexpected inference input 'X' for model 'add'"
    assert r[4]["error"] == bad + (
        "[request id: <id_unknown>] inference input 'IN' data-type is 'INT32', but "
        "model 'add' expects 'FP32'"
    )
    assert r[5]["error"].startswith(
        bad + "[request id: <id_unknown>] expected 1 inputs"
    )
    assert r[6]["error"] == bad + "unexpected inference output 'NOPE' for model 'add'"
    # An error the called model answered with keeps its message and code.
    assert r[7] == {"error": "negative one is refused", "code": 3}
    assert r[8]["error"].startswith(
        NOT_STARTED.format("square") + "Model square is using the decoupled."
    )
    assert r[9]["error"].startswith(
        "Failed to process the request(s) for model 'add_0', message: "
        "TritonModelException: minus two fails the batch"
    )
    # Building a request with a parameter Triton cannot pass on raises, as there.
    assert r[10] == {
        "raised": "TritonModelException",
        "message": "Expect parameters values to have type bool/int/str, found type "
        "<class 'float'>",
    }


def test_timeout_expires_in_the_called_models_queue(
    bls_server: RunningServer, bls_repo: Path
) -> None:
    """held's queue policy allows a request timeout to shorten its 60 s default."""
    steps = [
        {
            "start": "first",
            "req": req("held", [f32(201)], requested_output_names=["OUT"]),
        },
        {
            "call": "async_exec",
            "req": req(
                "held", [f32(202)], requested_output_names=["OUT"], timeout=1000
            ),
        },
        {"touch": "open-201"},
        {"await": "first"},
    ]
    try:
        _, expired, _, first = probe(bls_server.http_url, steps)
    finally:
        (bls_repo / "open-201").touch()
    assert expired == {"error": "Request timeout expired", "code": 4}
    assert outputs(first) == {"OUT": [201.0]}


def test_bls_is_refused_outside_execute(bls_server: RunningServer) -> None:
    import numpy as np
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(bls_server.http_url)
    tensor = httpclient.InferInput("CMD", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b""], dtype=object))
    seen = client.infer("init_bls", [tensor]).as_numpy("RESULT")[0]
    client.close()
    assert seen == b"BLS is only supported during the 'execute' function."


def test_a_model_calling_itself_never_deadlocks(bls_server: RunningServer) -> None:
    """countdown has two instances: one level of self-call has an instance to run
    on; a second level would wait forever (Triton hangs) and is refused instead."""
    results = probe(
        bls_server.http_url,
        [
            {
                "call": "exec",
                "req": req("countdown", [i32(1)], requested_output_names=["OUT"]),
            },
            {
                "call": "exec",
                "req": req("countdown", [i32(2)], requested_output_names=["OUT"]),
            },
            {
                "call": "exec",
                "req": req("countdown", [i32(1)], requested_output_names=["OUT"]),
            },
        ],
    )
    assert outputs(results[0]) == {"OUT": [1]}
    assert results[1] == {
        "error": NOT_STARTED.format("countdown")
        + "the request would never run: every instance of model 'countdown' is "
        "executing a request that waits for it",
        "code": 4,
    }
    assert outputs(results[2]) == {"OUT": [1]}


def test_statistics_count_bls_requests_on_the_called_model(
    bls_server: RunningServer,
) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(bls_server.http_url)

    def add_stats() -> tuple[int, int]:
        stats = client.get_inference_statistics("add")["model_stats"][0]
        return int(stats["inference_count"]), int(
            stats["inference_stats"]["success"]["count"]
        )

    before = add_stats()
    probe(
        bls_server.http_url,
        [
            {
                "call": "exec",
                "req": req("add", [f32(1)], requested_output_names=["OUT"]),
            },
            {"gather": [req("add", [f32(1)], requested_output_names=["OUT"])] * 3},
        ],
    )
    after = add_stats()
    client.close()
    assert (after[0] - before[0], after[1] - before[1]) == (4, 4)


def test_sequence_model_gets_correlation_id_and_flags(
    bls_server: RunningServer,
) -> None:
    """seq sums IN over a sequence (implicit state); START=1, END=2 as in pb_utils."""

    def step(corr: int, flags: int, value: int) -> dict[str, Any]:
        return {
            "call": "exec",
            "req": req(
                "seq",
                [["IN", "int32", [[value]]]],
                requested_output_names=["OUT", "CORR"],
                correlation_id=corr,
                flags=flags,
            ),
        }

    results = probe(
        bls_server.http_url,
        [
            step(42, 1, 5),
            step(43, 3, 100),
            step(42, 0, 3),
            step(42, 2, 1),
            step(42, 0, 1),
        ],
    )
    got = [outputs(r) if "outputs" in r else r for r in results]
    assert got[:4] == [
        {"OUT": [[5]], "CORR": [[42]]},
        {"OUT": [[100]], "CORR": [[43]]},
        {"OUT": [[8]], "CORR": [[42]]},
        {"OUT": [[9]], "CORR": [[42]]},
    ]
    # The sequence ended: without START the sequence batcher refuses it.
    assert "error" in got[4]


def test_bls_to_an_ensemble(bls_server: RunningServer) -> None:
    sync, one_async = probe(
        bls_server.http_url,
        [
            {
                "call": "exec",
                "req": req("ens_add", [f32(1, 2)], requested_output_names=["OUT"]),
            },
            {"call": "async_exec", "req": req("ens_add", [f32(7)])},
        ],
    )
    assert outputs(sync) == {"OUT": [2.0, 3.0]}
    assert outputs(one_async) == {"OUT": [8.0]}
