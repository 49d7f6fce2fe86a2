"""Traces of streams, decoupled models and BLS through the wire, as Triton 2.51
writes them: a send pair per response written on a gRPC stream or an SSE stream,
INFER_RESPONSE_COMPLETE once (at the first response), the outputs of every
response of a decoupled model at TENSORS level, and BLS calls given a traced
request's trace() as its children (calls without it are not traced)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serverutil import run_server
from traceutil import (
    build_stream_repo,
    generate_stream,
    grpc_stream,
    http_infer,
    http_infer_bls,
    read_traces,
    summary,
)

CORE = {
    "REQUEST_START": 1,
    "QUEUE_START": 1,
    "COMPUTE_START": 1,
    "COMPUTE_INPUT_END": 1,
    "COMPUTE_OUTPUT_START": 1,
    "COMPUTE_END": 1,
    "REQUEST_END": 1,
}
# repeat's three responses: x, 2x, 3x for x = 0, 1, 2, 3.
REPEATED = [
    ("TENSOR_QUEUE_INPUT", "INPUT0", "0,1,2,3", "4"),
    ("TENSOR_BACKEND_OUTPUT", "OUTPUT0", "0,1,2,3", "4"),
    ("TENSOR_BACKEND_OUTPUT", "OUTPUT0", "0,2,4,6", "4"),
    ("TENSOR_BACKEND_OUTPUT", "OUTPUT0", "0,3,6,9", "4"),
]
ADDED = [
    ("TENSOR_QUEUE_INPUT", "INPUT0", "0,1,2,3", "1,4"),
    ("TENSOR_BACKEND_OUTPUT", "OUTPUT0", "1,2,3,4", "1,4"),
]
TRACE_ALL = (
    "--trace-config=rate=1",
    "--trace-config=level=TIMESTAMPS",
    "--trace-config=level=TENSORS",
)


def sent(protocol: str, pairs: int) -> dict[str, int]:
    return {f"{protocol}_SEND_START": pairs, f"{protocol}_SEND_END": pairs}


def test_stream_responses_each_stamped_with_tensors(tmp_path: Path) -> None:
    repo = build_stream_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"
    with run_server(repo, f"--trace-config=triton,file={out}", *TRACE_ALL) as server:
        grpc_stream(server.grpc_url, [("repeat", "s1", 3), ("add_one", "s2", 1)])
        generate_stream(server.http_url, "repeat", "g1")
    seen = summary(out)
    waited = {"GRPC_WAITREAD_START": 1, "GRPC_WAITREAD_END": 1}
    assert seen[("repeat", "s1", "")] == {
        "stamps": {**CORE, **waited, "INFER_RESPONSE_COMPLETE": 1, **sent("GRPC", 3)},
        "tensors": REPEATED,
    }
    assert seen[("add_one", "s2", "")] == {
        "stamps": {**CORE, **waited, "INFER_RESPONSE_COMPLETE": 1, **sent("GRPC", 1)},
        "tensors": ADDED,
    }
    # Triton writes the SSE stream's send pairs with 0 for times and an
    # INFER_RESPONSE_COMPLETE per response (see test_trace_reference).
    received = {"HTTP_RECV_START": 1, "HTTP_RECV_END": 1}
    assert seen[("repeat", "g1", "")] == {
        "stamps": {**CORE, **received, "INFER_RESPONSE_COMPLETE": 1, **sent("HTTP", 3)},
        "tensors": REPEATED,
    }
    # Each response is written after it was sent by the model, in order.
    (stream,) = [t for t in read_traces(out).values() if t["request_id"] == "s1"]
    stamps = sorted(stream["stamps"], key=lambda s: s[1])
    names = [name for name, _ in stamps]
    assert names[:2] == ["GRPC_WAITREAD_START", "GRPC_WAITREAD_END"]
    sends = [n for n in names if n.startswith("GRPC_SEND")]
    assert sends == ["GRPC_SEND_START", "GRPC_SEND_END"] * 3


@pytest.mark.parametrize(
    ("engine", "mode"),
    [("native", "in-process"), ("python", "in-process"), ("native", "process")],
)
def test_bls_calls_with_the_trace_are_children(
    tmp_path: Path, engine: str, mode: str
) -> None:
    """In process mode the stub names its request's trace by id (through the
    execute ring, and the socket for the decoupled child)."""
    repo = build_stream_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"
    with run_server(
        repo,
        f"--http-engine={engine}",
        f"--backend-config=python,execution-mode={mode}",
        f"--trace-config=triton,file={out}",
        *TRACE_ALL,
    ) as server:
        http_infer_bls(server.http_url)
    seen = summary(out)
    received = {"HTTP_RECV_START": 1, "HTTP_RECV_END": 1}
    assert seen[("bls", "b1", "")]["stamps"] == {
        **CORE,
        **received,
        "INFER_RESPONSE_COMPLETE": 1,
        **sent("HTTP", 1),
    }
    # Children: the core's stamps only, no request id; double was called without
    # trace= and is not traced.
    assert set(seen) == {
        ("bls", "b1", ""),
        ("add_one", "", "bls"),
        ("repeat", "", "bls"),
    }
    assert seen[("add_one", "", "bls")] == {"stamps": CORE, "tensors": ADDED}
    assert seen[("repeat", "", "bls")] == {"stamps": CORE, "tensors": REPEATED}


def test_untraced_requests_spawn_no_traces(tmp_path: Path) -> None:
    """Rate 2: the ensemble's steps and a BLS call of an untraced request are not
    sampled on their own (only frontends sample, as in Triton)."""
    repo = build_stream_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"
    with run_server(
        repo,
        f"--trace-config=triton,file={out}",
        "--trace-config=rate=2",
        "--trace-config=level=TIMESTAMPS",
    ) as server:
        http_infer(server.http_url, "pipeline", "p1")  # not sampled
        http_infer_bls(server.http_url)  # the 2nd request: sampled
    assert {key[:2] for key in summary(out)} == {
        ("bls", "b1"),
        ("add_one", ""),
        ("repeat", ""),
    }
